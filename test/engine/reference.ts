// Oracles for the engine's tests: the step entry run on the reference interpreter with a whole sequence as one
// fresh chunk (nothing cached, nothing written), so its logits owe nothing to the paged KV cache, chunking or batching.
import type { GenerationStream, GenerationSummary } from "../../src/engine/api.js";
import type { Graph } from "../../src/ir/graph.js";
import { type HostTensor, hostTensor, zerosTensor } from "../../src/ir/host-tensor.js";
import { interpretStep } from "../../src/ir/interpret.js";
import { evalShape } from "../../src/ir/shape.js";
import { blockTableInput, kvSlotsInput, type PagedDecoderLayout, poolSlotsSymbol, STEP_ENTRY, STEP_NAMES } from "../../src/engine/contract.js";

/** Pools of one block per group, as load-time symbol values: enough for steps that read and write no pool. */
export const oneBlockPools = (layout: PagedDecoderLayout) => Object.fromEntries(layout.groups.map((g) => [poolSlotsSymbol(g.name), layout.blockSize]));

/** Logits [ids.length, vocab] of every position of `ids`, recomputed from scratch (no KV cache read or written). */
export function recomputeLogits(graph: Graph, layout: PagedDecoderLayout, params: Readonly<Record<string, HostTensor>>, ids: readonly number[]): HostTensor {
  const loadSymbols = oneBlockPools(layout);
  const states = Object.fromEntries(graph.states.map((st) => [st.name, zerosTensor(st.dtype, evalShape(st.shape, { ...graph.symbols, ...loadSymbols }))]));
  return interpretStep(graph, STEP_ENTRY, freshStepInputs(layout, ids), params, states).outputs[STEP_NAMES.logits]!;
}

/** Step inputs of one fresh sequence `ids` (positions from 0) that reads and writes no pool, greedy logits for every row. */
export function freshStepInputs(layout: PagedDecoderLayout, ids: readonly number[]): Record<string, HostTensor> {
  const n = ids.length;
  const none = (len: number) => hostTensor("i32", [len], new Array<number>(len).fill(-1));
  const inputs: Record<string, HostTensor> = {
    [STEP_NAMES.ids]: hostTensor("i32", [n], ids),
    [STEP_NAMES.positions]: hostTensor("i32", [n], ids.map((_, i) => i)),
    [STEP_NAMES.tokenSeqs]: hostTensor("i32", [n], new Array<number>(n).fill(0)),
    [STEP_NAMES.contextLens]: hostTensor("i32", [1], [0]),
    [STEP_NAMES.logitRows]: hostTensor("i32", [n], ids.map((_, i) => i)),
    [STEP_NAMES.temperature]: hostTensor("f32", [n], new Array<number>(n).fill(0)),
    [STEP_NAMES.topK]: hostTensor("i32", [n], new Array<number>(n).fill(0)),
    [STEP_NAMES.topP]: hostTensor("f32", [n], new Array<number>(n).fill(1)),
    [STEP_NAMES.uniform]: hostTensor("f32", [n], new Array<number>(n).fill(0)),
  };
  for (const g of layout.groups) {
    inputs[blockTableInput(g.name)] = hostTensor("i32", [1, layout.maxBlocksPerSeq], new Array<number>(layout.maxBlocksPerSeq).fill(-1));
    inputs[kvSlotsInput(g.name)] = none(n);
  }
  return inputs;
}

/** Greedy tokens after `prompt` by full recomputation: each token the arg-max (ties to the lower id) of the last row. */
export function recomputeGreedy(graph: Graph, layout: PagedDecoderLayout, params: Readonly<Record<string, HostTensor>>, prompt: readonly number[], count: number): number[] {
  const ids = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const logits = recomputeLogits(graph, layout, params, ids);
    const vocab = logits.shape[1]!;
    const last = logits.data.subarray((ids.length - 1) * vocab, ids.length * vocab);
    let best = 0;
    for (let j = 1; j < vocab; j++) if (last[j]! > last[best]!) best = j;
    out.push(best);
    ids.push(best);
  }
  return out;
}

/** max |a − b| / max |b|. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let ref = 0;
  for (let j = 0; j < b.length; j++) {
    err = Math.max(err, Math.abs(a[j]! - b[j]!));
    ref = Math.max(ref, Math.abs(b[j]!));
  }
  return err / ref;
}

/** Reads a stream to its end: its tokens, texts and logits (when asked for), and its summary. */
export async function drain(s: GenerationStream): Promise<{ tokens: number[]; texts: string[]; logits: Float64Array[]; summary: GenerationSummary }> {
  const tokens: number[] = [];
  const texts: string[] = [];
  const logits: Float64Array[] = [];
  for await (const o of s) {
    tokens.push(o.token);
    texts.push(o.text);
    if (o.logits) logits.push(o.logits);
  }
  return { tokens, texts, logits, summary: await s.done };
}
