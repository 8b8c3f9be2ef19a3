// Backends of the engine: what runs one `step` (src/engine/contract.ts) of a paged decoder, holding its weights and
// its KV pools. Two of them behind one interface, so every scheduling test runs in CI:
//   planBackend        — a compiled plan on a GPU (PlanExecutor): the pools live in the arena, the step runs as a
//                        CUDA graph per bucket and sizes, tokens are sampled on the device, the host waits by polling
//                        so the event loop keeps serving other work while the GPU computes
//   interpreterBackend — the CPU reference interpreter over the fused graph (pagedAttention reads the pools directly),
//                        the pools as host tensors
//   interpreterRanksBackend — N simulated ranks of a sharded model (src/passes/shard.ts) on the interpreter, in this
//                        process: every rank's graph with its own slices and pools, collectives combined between them
// (rank-group.ts runs ranks as processes: one per GPU, or fake CPU ranks that test the protocol.)

import type { Graph } from "../ir/graph.js";
import { type HostTensor, zerosTensor } from "../ir/host-tensor.js";
import { interpretRanks, interpretStep } from "../ir/interpret.js";
import { evalShape } from "../ir/shape.js";
import type { RankSet, SplitOutput } from "../passes/shard.js";
import type { PlanExecutor } from "../../runtime/executor.js";
import { STEP_ENTRY, STEP_NAMES, type StepInputs, stepInputsAsHost } from "./contract.js";

/** One step's results: a token per sampling row (−1: that row's logits hold NaN or +inf), and logits on demand. */
export interface StepOutputs {
  readonly tokens: Int32Array;
  /** Device time of the step, ms (copies in, kernels, copies out), where the backend runs on a GPU. */
  readonly deviceMs?: number;
  /** The logits of sampling row `row` (read from the device only when asked: log-probabilities). */
  logits(row: number): Float64Array;
}

export interface StepOptions {
  /** Sampling rows whose logits the caller will read (a backend of several processes fetches them with the step). */
  readonly logitRows?: readonly number[];
  /**
   * Token ids fed back (StepPlan.feedback; only for a backend that `feedsBackTokens`): the step's token i is sample
   * row feedback[i] of the step before it, which may still be running. Its ids input holds placeholders there.
   */
  readonly feedback?: readonly number[];
}

export interface StepBackend {
  readonly device: "cuda" | "cpu";
  /** Ranks that run each step (1 unless the model is sharded). */
  readonly ranks?: number;
  /**
   * Takes StepOptions.feedback: a step may be started while the one before runs, its token ids taken from that
   * step's samples where they are (the GPU: queued behind it, no round trip through the host).
   */
  readonly feedsBackTokens?: boolean;
  /**
   * Runs one step on the step entry's inputs. The inputs are the caller's again once the promise settles (the engine
   * reuses their arrays for the next step): read or copy them before.
   */
  step(inputs: StepInputs, options?: StepOptions): Promise<StepOutputs>;
  /** Frees the device (a process group: waits until its ranks have exited). */
  dispose(): void | Promise<void>;
}

/** Row `row` of a vocabulary-split output from each rank's slice (rank r's values of its ranges, in order). */
export function joinSplitRow(split: SplitOutput, rankRows: readonly ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(split.size);
  split.parts.forEach((part, r) => {
    const row = rankRows[r]!;
    let at = 0;
    for (const [s, e] of part) for (let j = s; j < e; j++) out[j] = row[at++]!;
  });
  return out;
}

/**
 * Steps of at most this many tokens replay CUDA graphs (decode steps of up to 512 sequences: few shapes, repeated
 * every step); larger ones, with prefill chunks, launch kernel by kernel: they run for tens of milliseconds, so the
 * launches overlap the GPU's work, and their token and sequence counts vary too much for a graph cache.
 */
export const GRAPH_MAX_STEP_TOKENS = 512;

/**
 * Steps of at most this many tokens launch with programmatic dependent launch (ExecutorOptions.programmaticUpTo).
 * Measured on an H200 (`tsgc bench`, bench/NOTES.md): gpt-oss-20b 2.946 → 2.781 ms at batch 1 and faster up to 128,
 * but 16.46 → 17.51 ms at 256 and a slower 2048-token prefill; gpt-oss-120b faster up to 64, slower at 128.
 */
export const PDL_MAX_STEP_TOKENS = 64;

/** A compiled plan loaded on a GPU, its weights and pools in place. */
export function planBackend(exec: PlanExecutor): StepBackend {
  exec.replayAsGraph(STEP_ENTRY, { tokens: GRAPH_MAX_STEP_TOKENS });
  return {
    device: "cuda",
    feedsBackTokens: true,
    async step(inputs, options = {}) {
      // the tokens come back with the step (an async copy on its stream into pinned memory); logits only on demand
      const feedback = options.feedback ? { input: STEP_NAMES.ids, from: STEP_NAMES.tokens, rows: options.feedback } : undefined;
      const run = await exec.runAsync(STEP_ENTRY, inputs, [STEP_NAMES.tokens], feedback ? { feedback } : {});
      return {
        tokens: Int32Array.from(run.read(STEP_NAMES.tokens).data),
        deviceMs: run.deviceMs,
        logits: (row) => run.read(STEP_NAMES.logits, row, 1).data,
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
  /** The last step's samples: a step is computed when it is called, so the one before has always finished. */
  let lastTokens = new Int32Array(0);
  return {
    device: "cpu",
    feedsBackTokens: true,
    async step(inputs, options = {}) {
      const { outputs, updates } = interpretStep(fused, STEP_ENTRY, stepInputsAsHost(withFedBackIds(inputs, options.feedback, lastTokens)), params, states);
      states = { ...states, ...updates };
      const logits = outputs[STEP_NAMES.logits]!;
      const vocab = logits.shape[1]!;
      lastTokens = Int32Array.from(outputs[STEP_NAMES.tokens]!.data);
      return {
        tokens: lastTokens,
        logits: (row) => logits.data.slice(row * vocab, (row + 1) * vocab),
      };
    },
    dispose: () => {
      states = {};
    },
  };
}

/** `inputs` with the token ids StepOptions.feedback names taken from `before` (the last step's samples). */
export function withFedBackIds(inputs: StepInputs, feedback: readonly number[] | undefined, before: Int32Array): StepInputs {
  if (feedback === undefined) return inputs;
  const ids = inputs[STEP_NAMES.ids]!;
  if (feedback.length !== ids.data.length) throw new Error(`${feedback.length} token ids fed back for a step of ${ids.data.length} tokens`);
  const data = Int32Array.from(feedback, (row) => {
    if (!(row >= 0 && row < before.length)) throw new Error(`token id fed back from row ${row}, but the step before sampled ${before.length}`);
    return before[row]!;
  });
  return { ...inputs, [STEP_NAMES.ids]: { dtype: ids.dtype, shape: ids.shape, data } };
}

/**
 * N simulated ranks of a sharded model on the reference interpreter: rank r runs `set.ranks[r]` with `params[r]` (its
 * slices) and its own pools; every collective is combined across the ranks (interpretRanks). Tokens are rank 0's
 * (every rank samples the same), a row's logits are joined from every rank's vocabulary slice.
 */
export function interpreterRanksBackend(set: RankSet, params: readonly Readonly<Record<string, HostTensor>>[], loadSymbols: Readonly<Record<string, number>>): StepBackend {
  let states = set.ranks.map((g) => {
    const st: Record<string, HostTensor> = {};
    for (const decl of g.states) st[decl.name] = zerosTensor(decl.dtype, evalShape(decl.shape, { ...g.symbols, ...loadSymbols }));
    return st;
  });
  const split = set.splitOutputs[STEP_ENTRY]?.[STEP_NAMES.logits];
  return {
    device: "cpu",
    ranks: set.ranks.length,
    async step(inputs) {
      const results = interpretRanks(set.ranks, STEP_ENTRY, stepInputsAsHost(inputs), params, states);
      states = states.map((st, r) => ({ ...st, ...results[r]!.updates }));
      const tokens = Int32Array.from(results[0]!.outputs[STEP_NAMES.tokens]!.data);
      results.forEach((res, r) => {
        const mine = res.outputs[STEP_NAMES.tokens]!.data;
        if (mine.some((t, i) => t !== tokens[i])) throw new Error(`rank ${r} sampled other tokens than rank 0 (${Array.from(mine).join(",")} vs ${tokens.join(",")})`);
      });
      const logits = results.map((res) => res.outputs[STEP_NAMES.logits]!);
      const row = (t: HostTensor, i: number) => t.data.subarray(i * t.shape[1]!, (i + 1) * t.shape[1]!);
      return {
        tokens,
        logits: (i) => (split ? joinSplitRow(split, logits.map((t) => row(t, i))) : Float64Array.from(row(logits[0]!, i))),
      };
    },
    dispose: () => {
      states = [];
    },
  };
}
