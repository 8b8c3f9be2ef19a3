// Backends of the engine: what runs one `step` (src/engine/contract.ts) of a paged decoder, holding its weights and
// its KV pools. Two of them behind one interface, so every scheduling test runs in CI:
//   planBackend        — a compiled plan on a GPU (PlanExecutor): the pools live in the arena, the step runs as a
//                        CUDA graph per bucket and sizes, tokens are sampled on the device, the host waits by polling
//                        so the event loop keeps serving other work while the GPU computes
//   interpreterBackend — the CPU reference interpreter over the fused graph (pagedAttention reads the pools directly),
//                        the pools as host tensors

import type { Graph } from "../ir/graph.js";
import { type HostTensor, zerosTensor } from "../ir/host-tensor.js";
import { interpretStep } from "../ir/interpret.js";
import { evalShape } from "../ir/shape.js";
import type { PlanExecutor } from "../../runtime/executor.js";
import { STEP_ENTRY, STEP_NAMES } from "./contract.js";

/** One step's results: a token per sampling row (−1: that row's logits hold NaN or +inf), and logits on demand. */
export interface StepOutputs {
  readonly tokens: Int32Array;
  /** The logits of sampling row `row` (read from the device only when asked: log-probabilities). */
  logits(row: number): Float64Array;
}

export interface StepBackend {
  readonly device: "cuda" | "cpu";
  /** Runs one step on the step entry's inputs. */
  step(inputs: Readonly<Record<string, HostTensor>>): Promise<StepOutputs>;
  dispose(): void;
}

/** A compiled plan loaded on a GPU, its weights and pools in place. */
export function planBackend(exec: PlanExecutor): StepBackend {
  exec.replayAsGraph(STEP_ENTRY);
  return {
    device: "cuda",
    async step(inputs) {
      await exec.runAsync(STEP_ENTRY, inputs);
      const tokens = exec.readOutput(STEP_NAMES.tokens).data;
      return {
        tokens: Int32Array.from(tokens),
        logits: (row) => exec.readOutput(STEP_NAMES.logits, row, 1).data,
      };
    },
    dispose: () => exec.dispose(),
  };
}

/**
 * The reference interpreter over `fused` (the step graph after the pipeline, so attention reads the pools in place),
 * with its pools sized by `loadSymbols` (e.g. { fullSlots: 4096, slidingSlots: 1024 }) and zeroed.
 */
export function interpreterBackend(fused: Graph, params: Readonly<Record<string, HostTensor>>, loadSymbols: Readonly<Record<string, number>>): StepBackend {
  let states: Record<string, HostTensor> = {};
  for (const st of fused.states) states[st.name] = zerosTensor(st.dtype, evalShape(st.shape, { ...fused.symbols, ...loadSymbols }));
  return {
    device: "cpu",
    async step(inputs) {
      const { outputs, updates } = interpretStep(fused, STEP_ENTRY, inputs, params, states);
      states = { ...states, ...updates };
      const logits = outputs[STEP_NAMES.logits]!;
      const vocab = logits.shape[1]!;
      return {
        tokens: Int32Array.from(outputs[STEP_NAMES.tokens]!.data),
        logits: (row) => logits.data.slice(row * vocab, (row + 1) * vocab),
      };
    },
    dispose: () => {
      states = {};
    },
  };
}
