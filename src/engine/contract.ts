// The paged-decoder contract: the one entry point, its inputs, symbols and KV pool states that a model
// exposes and the engine binds. Declared once here; models/gpt-oss builds its graph from these names and
// the engine fills them (src/engine/step-inputs.ts), so neither spells a name the other could miss.
//
// One `step` call runs a ragged batch of tokens: decode tokens of many sequences and prefill chunks of
// others, together. Each token carries its sequence (an index into this step's sequence list) and its
// position. The KV cache is a pool of fixed-size blocks per KV group (a group is a set of layers with one
// attention kind: gpt-oss has "full" and "sliding"), and every sequence has a block table per group.
//
//   inputs (T = tokens, S = seqs, R = rows, MB = maxBlocksPerSeq)
//     ids             i32[T]      token ids
//     positions       i32[T]      position of each token in its sequence
//     token_seqs      i32[T]      index of the token's sequence in this step, 0 ≤ · < S; a sequence's tokens are
//                                 contiguous and in position order, sequences in step order
//     context_lens    i32[S]      tokens of each sequence already in the pool before this step (its first new
//                                 token's position)
//     logit_rows      i32[R]      token indices whose logits the step returns (the last token of each sequence
//                                 that samples), in sampling order
//     block_tables.G  i32[S, MB]  physical block of each logical block j (positions j·B … j·B + B − 1) in group G's
//                                 pool; −1 where none (a sliding group frees blocks no future query can see)
//     kv_slots.G      i32[T]      pool row (block · B + offset) where the token's keys and values are written in
//                                 group G; −1 writes nothing
//     sample_temperature f32[R], sample_top_k i32[R], sample_top_p f32[R], sample_uniform f32[R]
//                     per sampling row: its sampling settings and this step's uniform draw in [0, 1)
//   outputs
//     tokens          i32[R]      the token sampled for each row on the device (the `sample` op: greedy at
//                                 temperature 0; −1 when the row's logits hold NaN or +inf)
//     logits          [R, vocab]  (read back only for rows that ask for log-probabilities)
//   states: per layer of group G, `layers.N.k_cache` / `layers.N.v_cache` [GSlots, kvHeads, headDim]: the pool's
//     rows, block b holding rows b·B … b·B + B − 1. The symbol `${G}Slots` (poolSlotsSymbol) is a load-time
//     symbol: the pool size is chosen when the plan is loaded (from the memory left after weights), a multiple of B.
//
// Semantics: token t (sequence s, position p) attends to the keys of s at positions j ≤ p (and p − j < window on
// a windowed group): positions j < context_lens[s] are read from the pool through s's block table, the step's
// own tokens of s from this step's keys. Every read of the pool happens before this step's keys and values are
// written to it.

import { type HostTensor } from "../ir/host-tensor.js";
import type { InputTensor } from "../../runtime/staging.js";

/**
 * A step input as the engine hands it to a backend: the executor's InputTensor, i32 values in an Int32Array, f32 in
 * a Float32Array (a HostTensor, whose values are f64, is one too). Typed arrays, so that a step's block tables go to
 * the device as they are, with no f64 round trip per element. A backend may read an input until its step's promise
 * settles, not after: the engine reuses the arrays for the next step.
 */
export type StepTensor = InputTensor;

/** The step entry's inputs by name (STEP_NAMES, blockTableInput, kvSlotsInput). */
export type StepInputs = Readonly<Record<string, StepTensor>>;

/** A step input as a HostTensor (f64 values), for the backends that compute on host tensors (the interpreter, CPU ranks). */
export function stepTensorAsHost(t: StepTensor): HostTensor {
  return t.data instanceof Float64Array ? { dtype: t.dtype, shape: t.shape, data: t.data } : { dtype: t.dtype, shape: [...t.shape], data: Float64Array.from(t.data) };
}

/** Every step input as a HostTensor (typed arrays are copied, so the result outlives the step the engine reuses them for). */
export function stepInputsAsHost(inputs: StepInputs): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(inputs)) out[name] = stepTensorAsHost(t);
  return out;
}

/** Name of the paged decoder's entry point. */
export const STEP_ENTRY = "step";

/** Names of the step entry's inputs and output. */
export const STEP_NAMES = {
  ids: "ids",
  positions: "positions",
  tokenSeqs: "token_seqs",
  contextLens: "context_lens",
  logitRows: "logit_rows",
  temperature: "sample_temperature",
  topK: "sample_top_k",
  topP: "sample_top_p",
  uniform: "sample_uniform",
  tokens: "tokens",
  logits: "logits",
} as const;

/** Symbols of the step entry: T, S, R above. */
export const STEP_SYMBOLS = { tokens: "tokens", seqs: "seqs", rows: "rows" } as const;

export const blockTableInput = (group: string): string => `block_tables.${group}`;
export const kvSlotsInput = (group: string): string => `kv_slots.${group}`;
/** The load-time symbol holding group G's pool size in rows (blocks · blockSize). */
export const poolSlotsSymbol = (group: string): string => `${group}Slots`;

/** One KV group: layers sharing an attention kind, a pool of blocks and one block table per sequence. */
export interface KvGroup {
  /** `full`, `sliding`, …: used in input and symbol names. */
  readonly name: string;
  /** Keys a query sees on this group's layers, itself included; undefined for full causal attention. */
  readonly window?: number;
  /** Decoder layers of this group. */
  readonly layers: readonly number[];
  /** Bytes one block takes in the pool across all the group's layers (keys and values). */
  readonly bytesPerBlock: number;
}

/** What the engine needs to know about a paged decoder beyond its graph. */
export interface PagedDecoderLayout {
  /** Tokens per KV block. */
  readonly blockSize: number;
  /** Block-table width: ceil(maxContext / blockSize). */
  readonly maxBlocksPerSeq: number;
  /** Most tokens (prompt and output) one sequence holds. */
  readonly maxContext: number;
  /** Most tokens one step runs (the `tokens` bound). */
  readonly maxTokensPerStep: number;
  /** Most sequences one step runs (the `seqs` bound). */
  readonly maxSeqsPerStep: number;
  readonly groups: readonly KvGroup[];
  readonly vocabSize: number;
}
