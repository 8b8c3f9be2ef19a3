// The IR's operations: one discriminated union on `op`, each op's attributes, and the per-op type rule.
//
// Every per-op table in tsgc is a mapped type over `Op`, so adding an op here without handling it in
// the type rules, the verifier, the printer, the JSON schema and the interpreter is a compile error.
//
// Conventions
// - Elementwise ops need operands of identical shape; the builder inserts `broadcast` where numpy
//   would broadcast implicitly. Explicit broadcasts keep kernels and fusion patterns simple.
// - An op with two results (topk, residual RMSNorm) is two sibling nodes that differ only in the
//   `result` attribute; the scheduler launches siblings as one kernel.
// - Positions drive attention masks: a key j is visible to query i when
//   kpos[j] >= 0 && kpos[j] <= qpos[i] && (window == 0 || qpos[i] - kpos[j] < window).
//   Empty cache slots carry position -1. This one rule covers prefill, decode, ring-buffer sliding
//   caches and paged layouts. A query that sees no key gets 0 from sinkAttention with sinks (the sink
//   takes all the mass) and NaN without (0/0), as the primitive expansion does.
// - Edge semantics (interpreter and kernels agree): integer division truncates toward zero and by
//   zero gives 0; float→int casts truncate; a cast to bool is (x != 0), so NaN is true; min/max
//   propagate NaN; topk ranks NaN highest.
// - Collectives (allReduce, allGather, reduceScatter) exist only in the graphs of a rank set (the sharding pass,
//   src/passes/shard.ts, makes them): every rank of the set runs its own graph and each collective combines the
//   ranks' operands. `seq` numbers a set's collectives; every rank reaches them in that order.

import { type DType, isFloat, isInteger, isNumeric, MXFP4_BLOCK } from "./dtype.js";
import {
  type Dim,
  type Shape,
  canonicalDim,
  constantDifference,
  dimAdd,
  dimsEqual,
  formatShape,
  isStaticDim,
  normalizeAxis,
  sameElementCount,
  shapesEqual,
} from "./shape.js";

export type UnaryFn = "exp" | "log" | "sqrt" | "rsqrt" | "sigmoid" | "tanh" | "neg" | "abs" | "sin" | "cos";
export type BinaryFn = "add" | "sub" | "mul" | "div" | "min" | "max" | "pow";
export type CompareFn = "eq" | "ne" | "lt" | "le" | "gt" | "ge";
export type TernaryFn = "where" | "clamp";
export type ReduceFn = "sum" | "max" | "min" | "mean";

export const UNARY_FNS: readonly UnaryFn[] = ["exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "neg", "abs", "sin", "cos"];
export const BINARY_FNS: readonly BinaryFn[] = ["add", "sub", "mul", "div", "min", "max", "pow"];
export const COMPARE_FNS: readonly CompareFn[] = ["eq", "ne", "lt", "le", "gt", "ge"];
export const TERNARY_FNS: readonly TernaryFn[] = ["where", "clamp"];
export const REDUCE_FNS: readonly ReduceFn[] = ["sum", "max", "min", "mean"];

/** One instruction of a FusedElementwise body; operands name earlier instructions by index. */
export type FusedInstr =
  | { readonly op: "input"; readonly index: number }
  | { readonly op: "constant"; readonly value: number; readonly dtype: DType }
  | { readonly op: "unary"; readonly fn: UnaryFn; readonly a: number }
  | { readonly op: "binary"; readonly fn: BinaryFn; readonly a: number; readonly b: number }
  | { readonly op: "compare"; readonly fn: CompareFn; readonly a: number; readonly b: number }
  | { readonly op: "ternary"; readonly fn: TernaryFn; readonly a: number; readonly b: number; readonly c: number }
  | { readonly op: "cast"; readonly to: DType; readonly a: number };

/** Attributes of each op. The keys of this interface are the op names. */
export interface OpAttrs {
  // leaves
  /** A named input of an entry point. */
  input: { readonly name: string; readonly dtype: DType; readonly shape: Shape };
  /** A named model parameter (weight), shared by all entry points. */
  param: { readonly name: string; readonly dtype: DType; readonly shape: Shape };
  /**
   * A named piece of model state (the KV cache): shared by all entry points, starts zeroed and keeps its
   * value between entry calls. Every read in a call sees the value from before the call; an entry changes
   * it only through its `updates` (the value it holds after the call).
   */
  state: { readonly name: string; readonly dtype: DType; readonly shape: Shape };
  /** A tensor filled with one value. */
  constant: { readonly value: number; readonly dtype: DType; readonly shape: Shape };
  /** A small static tensor given element by element (row-major). */
  literal: { readonly data: readonly number[]; readonly dtype: DType; readonly shape: readonly number[] };
  /** Each element is its index along `axis`. */
  iota: { readonly axis: number; readonly dtype: DType; readonly shape: Shape };
  // elementwise
  unary: { readonly fn: UnaryFn };
  binary: { readonly fn: BinaryFn };
  /** where(cond, a, b) picks a where cond is true; clamp(x, lo, hi) = min(max(x, lo), hi). */
  ternary: { readonly fn: TernaryFn };
  compare: { readonly fn: CompareFn };
  cast: { readonly to: DType };
  // reductions
  reduce: { readonly fn: ReduceFn; readonly axis: number; readonly keepDims: boolean };
  // contraction: a [..., M, K] · b [..., K, N] (b [..., N, K] when transposeB); b may be rank 2 (shared over a's batch)
  matmul: { readonly transposeB: boolean };
  // data movement
  reshape: { readonly shape: Shape };
  transpose: { readonly perm: readonly number[] };
  /** Elements start, start+step, … < end along axis. A symbolic end needs start 0, step 1, and a static dim or dim − end constant. */
  slice: { readonly axis: number; readonly start: number; readonly end: Dim; readonly step: number };
  concat: { readonly axis: number };
  /** gather(x, idx): x.shape[:axis] ++ idx.shape ++ x.shape[axis+1:]; an index out of range reads 0. */
  gather: { readonly axis: number };
  /** scatter(x, idx [n], updates): x with the slices idx[i] along axis replaced; out-of-range indices are skipped. */
  scatter: { readonly axis: number };
  /** Numpy-style broadcast (right-aligned; size-1 or equal dims). */
  broadcast: { readonly shape: Shape };
  /** k largest along the last axis, descending, ties to the lower index; `result` picks values or i32 indices. */
  topk: { readonly k: number; readonly result: "values" | "indices" };
  /**
   * One token per row of logits [R, V], with per-row temperature f32 [R], topK i32 [R], topP f32 [R] and a
   * uniform draw f32 [R] in [0, 1) → i32 [R]. A row holding NaN or +inf gives −1. Temperature ≤ 0: the arg-max
   * (ties to the lower id). Otherwise, in f32: w = exp((logit − max) / temperature); keep the topK largest w
   * (0 or ≥ V: all; ties to the lower id), then the fewest of those, largest first, whose w reach topP of their
   * sum (topP ≥ 1: all); the draw picks the first kept token, in id order, whose running sum of kept w exceeds
   * uniform · (sum of kept w).
   * With a sixth input ids i32 [R, V] (candidates: the vocabulary-parallel form the sharding pass makes), column j
   * of row r holds the logit of token ids[r, j] (distinct in a row; −1 marks an unused column): the row is the
   * sample over those tokens alone, taken in id order (ties and the draw go by token id), and the result is a token id.
   */
  sample: Record<string, never>;
  /** blocks fp4e2m1x2 [..., nb, 16] and scales e8m0 [..., nb] → [..., nb·32]. */
  dequantMxfp4: { readonly dtype: DType };
  // fused ops: produced only by passes
  /** out = cast(w · s · rsqrt(mean(s²) + eps)) in f32, s = x (+ residual); `result: "sum"` yields s itself. */
  fusedRmsNorm: { readonly eps: number; readonly hasResidual: boolean; readonly result: "normed" | "sum" };
  /**
   * q [..., T, H, D], k and v [..., R, KVH, D], qpos [..., T], kpos [..., S] (, sinks [H]) → [..., T, H, D].
   * The keys are the first S of the R rows (R = S, or static R ≥ S: a KV cache read in place).
   */
  sinkAttention: { readonly scale: number; readonly window: number; readonly hasSinks: boolean };
  /**
   * Attention of a ragged token batch over a paged KV cache (the engine's step; src/engine/contract.ts):
   * q [T, H, D], the step's own keys and values k, v [T, KVH, D], the pools kPool, vPool [P, KVH, D],
   * positions i32 [T], tokenSeqs i32 [T] (each token's sequence), contextLens i32 [S] (positions already in the
   * pool per sequence), blockTable i32 [S, MB] (physical block of each logical block, −1 none) (, sinks [H])
   * → [T, H, D]. Token t of sequence s at position p sees, in this order, pool keys at positions j < contextLens[s]
   * (row blockTable[s, ⌊j / blockSize⌋]·blockSize + j mod blockSize; a row outside the pool reads as zeros), then
   * the step's tokens t' of s (key position positions[t']), each under the position rule with qpos p; computed
   * exactly as sinkAttention over those keys. An optional input after blockTable, seqRanges i32 [S, 2], must be
   * seqTokenRanges(tokenSeqs, contextLens): kernels scan only that range of tokens (the fusion adds it).
   */
  pagedAttention: { readonly scale: number; readonly window: number; readonly blockSize: number; readonly hasSinks: boolean };
  /**
   * tokenSeqs i32 [T], contextLens i32 [S] (for S) → i32 [S, 2]: the first and last token index of each
   * sequence (T and −1 for a sequence without tokens). Computed once per step and shared by every
   * pagedAttention launch (its optional last input before the sinks), which then scans only that range.
   */
  seqTokenRanges: Record<string, never>;
  /**
   * idx i32 [N] → i32 [N]: idx with every element that a later element repeats, or that is negative, replaced
   * by −1. scatter(x, uniqueIndices(idx), u) writes exactly what scatter(x, idx, u) writes, and each row at most
   * once, so its kernel needs no owner table.
   */
  uniqueIndices: Record<string, never>;
  /**
   * Router + top-k + softmax + clamped-SwiGLU experts + weighted sum. x [T, D], router W [E, D], b [E];
   * dense: gate_up W [E, D, 2I], b [E, 2I], down W [E, I, D], b [E, D];
   * mxfp4: gate_up blocks [E, 2I, D/32, 16], scales [E, 2I, D/32], b; down blocks [E, D, I/32, 16], scales [E, D, I/32], b.
   */
  moeExperts: {
    readonly topK: number;
    readonly limit: number;
    readonly alpha: number;
    readonly weightFormat: "dense" | "mxfp4";
    /**
     * Expert parallelism: the expert weights hold experts firstExpert … firstExpert + E_local − 1 of the router's E
     * (E_local = their leading dim). Routing still picks the top-k of all E; picks outside the local experts add
     * nothing, so summing every rank's output gives the whole MoE. Absent: all E experts are local.
     */
    readonly firstExpert?: number;
  };
  /** x [..., M, K] · dequantMxfp4(blocks [N, K/32, 16], scales [N, K/32])ᵀ → [..., M, N]. */
  mxfp4Matmul: Record<string, never>;
  /**
   * A linear layer: matmul(x, w, transposeB) + bias[N], the product rounded to x's dtype before the
   * bias (same dtype) is added and the sum rounded again, exactly as the two primitives compute it.
   */
  fusedLinear: { readonly transposeB: boolean };
  /**
   * Several linear layers of one input, one kernel: inputs x [..., M, K], then w_i [N_i, K] and bias_i [N_i]
   * for each layer i; this node is layer `result`'s output [..., M, N_result], computed exactly as
   * fusedLinear{transposeB}(x, w_result, bias_result). Its siblings (the same inputs, other `result`)
   * are the other layers, launched together.
   */
  groupedLinear: { readonly result: number };
  /**
   * Half-split rotary embedding: x [..., T, H, D], cos and sin [..., T, 1, D/2] in x's dtype; for i < D/2,
   * out[i] = x[i]·cos[i] − x[i+D/2]·sin[i] and out[i+D/2] = x[i+D/2]·cos[i] + x[i]·sin[i], each product
   * and sum rounded to x's dtype (as the builder's `rope` computes it).
   */
  fusedRope: Record<string, never>;
  /** One kernel for a chain of elementwise instructions; inputs broadcast (numpy rules) to `shape`. */
  fusedElementwise: { readonly body: readonly FusedInstr[]; readonly shape: Shape };
  // collectives: across the `ranks` graphs of a rank set; `seq` is the collective's place in the set's order
  /** x → the sum over ranks of x (f64, in rank order, rounded once to x's dtype); every rank gets it. */
  allReduce: { readonly ranks: number; readonly seq: number };
  /** x [...] → [ranks, ...]: every rank's x, stacked in rank order; every rank gets it. */
  allGather: { readonly ranks: number; readonly seq: number };
  /** x [ranks, ...] → [...]: rank r gets the sum over ranks of their block r (as allReduce sums). */
  reduceScatter: { readonly ranks: number; readonly seq: number };
}

export type Op = keyof OpAttrs;

export const PRIMITIVE_OPS = [
  "input", "param", "state", "constant", "literal", "iota", "unary", "binary", "ternary", "compare", "cast", "reduce",
  "matmul", "reshape", "transpose", "slice", "concat", "gather", "scatter", "broadcast", "topk", "sample", "dequantMxfp4",
] as const satisfies readonly Op[];
export const FUSED_OPS = ["fusedRmsNorm", "sinkAttention", "pagedAttention", "seqTokenRanges", "uniqueIndices", "moeExperts", "mxfp4Matmul", "fusedLinear", "groupedLinear", "fusedRope", "fusedElementwise"] as const satisfies readonly Op[];
export const COLLECTIVE_OPS = ["allReduce", "allGather", "reduceScatter"] as const satisfies readonly Op[];
export type CollectiveOp = (typeof COLLECTIVE_OPS)[number];
export const ALL_OPS: readonly Op[] = [...PRIMITIVE_OPS, ...FUSED_OPS, ...COLLECTIVE_OPS];

/** Whether an op is a collective (it needs the other ranks of its rank set to compute). */
export function isCollective(op: Op): op is CollectiveOp {
  return (COLLECTIVE_OPS as readonly string[]).includes(op);
}

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

/** A shape or dtype rule was violated; the node factory adds op, operand shapes and call site. */
export class TypeRuleError extends Error {}

function fail(msg: string): never {
  throw new TypeRuleError(msg);
}

function expectArity(n: readonly TensorType[], counts: readonly number[]): void {
  if (!counts.includes(n.length)) fail(`expects ${counts.join(" or ")} operands, got ${n.length}`);
}

function axisOf(axis: number, rank: number): number {
  const a = normalizeAxis(axis, rank);
  if (a === undefined) fail(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

function sameShapes(ts: readonly TensorType[]): Shape {
  const first = ts[0]!;
  for (const t of ts.slice(1)) {
    if (!shapesEqual(first.shape, t.shape)) fail(`operand shapes differ (broadcast explicitly)`);
  }
  return first.shape.map(canonicalDim);
}

function sameDtypes(ts: readonly TensorType[]): DType {
  const d = ts[0]!.dtype;
  for (const t of ts.slice(1)) if (t.dtype !== d) fail(`operand dtypes differ (${ts.map((x) => x.dtype).join(", ")}); cast explicitly`);
  return d;
}

function requireNumeric(t: TensorType, what: string): void {
  if (!isNumeric(t.dtype)) fail(`${what} must be numeric, got ${t.dtype}`);
}
function requireFloat(t: TensorType, what: string): void {
  if (!isFloat(t.dtype)) fail(`${what} must be a float type, got ${t.dtype}`);
}
function requireInteger(t: TensorType, what: string): void {
  if (!isInteger(t.dtype)) fail(`${what} must be an integer type, got ${t.dtype}`);
}
function requireRank(t: TensorType, rank: number, what: string): void {
  if (t.shape.length !== rank) fail(`${what} must have rank ${rank}, got ${formatShape(t.shape)}`);
}
function requireDim(a: Dim, b: Dim, what: string): void {
  if (!dimsEqual(a, b)) fail(`${what}: ${a} vs ${b}`);
}
function validShape(shape: Shape, what: string): Shape {
  for (const d of shape) {
    if (typeof d === "number" && (!Number.isInteger(d) || d < 0)) fail(`${what} has an invalid dim ${d}`);
  }
  return shape.map(canonicalDim);
}

/** Result type of a broadcast of `from` to `to`, or an error. */
export function broadcastable(from: Shape, to: Shape): boolean {
  if (from.length > to.length) return false;
  const off = to.length - from.length;
  return from.every((d, i) => d === 1 || dimsEqual(d, to[i + off]!));
}

/** Numpy broadcast of several shapes; undefined when incompatible. */
export function broadcastShapes(shapes: readonly Shape[]): Shape | undefined {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim = 1;
    for (const s of shapes) {
      const d = s[i - (rank - s.length)];
      if (d === undefined || d === 1) continue;
      if (dim === 1) dim = d;
      else if (!dimsEqual(dim, d)) return undefined;
    }
    out.push(canonicalDim(dim));
  }
  return out;
}

type TypeRule<K extends Op> = (attrs: OpAttrs[K], inputs: readonly TensorType[]) => TensorType;

/** Shape and dtype inference for every op; throws TypeRuleError on invalid operands or attributes. */
export const TYPE_RULES: { readonly [K in Op]: TypeRule<K> } = {
  input: (a, ins) => (expectArity(ins, [0]), { dtype: a.dtype, shape: validShape(a.shape, "input shape") }),
  param: (a, ins) => (expectArity(ins, [0]), { dtype: a.dtype, shape: validShape(a.shape, "param shape") }),
  state: (a, ins) => (expectArity(ins, [0]), { dtype: a.dtype, shape: validShape(a.shape, "state shape") }),
  constant: (a, ins) => (expectArity(ins, [0]), { dtype: a.dtype, shape: validShape(a.shape, "constant shape") }),
  literal: (a, ins) => {
    expectArity(ins, [0]);
    const n = a.shape.reduce((p, d) => p * d, 1);
    if (a.data.length !== n) fail(`literal of shape ${formatShape(a.shape)} needs ${n} values, got ${a.data.length}`);
    return { dtype: a.dtype, shape: validShape(a.shape, "literal shape") };
  },
  iota: (a, ins) => {
    expectArity(ins, [0]);
    axisOf(a.axis, a.shape.length);
    if (!isNumeric(a.dtype)) fail(`iota dtype must be numeric, got ${a.dtype}`);
    return { dtype: a.dtype, shape: validShape(a.shape, "iota shape") };
  },
  unary: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    if (a.fn === "neg" || a.fn === "abs") requireNumeric(x, "operand");
    else requireFloat(x, `operand of ${a.fn}`);
    return { dtype: x.dtype, shape: x.shape };
  },
  binary: (_a, ins) => {
    expectArity(ins, [2]);
    ins.forEach((t, i) => requireNumeric(t, `operand ${i}`));
    return { dtype: sameDtypes(ins), shape: sameShapes(ins) };
  },
  ternary: (a, ins) => {
    expectArity(ins, [3]);
    const shape = sameShapes(ins);
    if (a.fn === "where") {
      if (ins[0]!.dtype !== "bool") fail(`where's condition must be bool, got ${ins[0]!.dtype}`);
      return { dtype: sameDtypes(ins.slice(1)), shape };
    }
    ins.forEach((t, i) => requireNumeric(t, `operand ${i}`));
    return { dtype: sameDtypes(ins), shape };
  },
  compare: (_a, ins) => {
    expectArity(ins, [2]);
    sameDtypes(ins);
    return { dtype: "bool", shape: sameShapes(ins) };
  },
  cast: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    if (x.dtype === "fp4e2m1x2" || x.dtype === "e8m0" || a.to === "fp4e2m1x2" || a.to === "e8m0") {
      fail(`cannot cast ${x.dtype} to ${a.to}: MX storage types are read only by dequantMxfp4`);
    }
    return { dtype: a.to, shape: x.shape };
  },
  reduce: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    requireNumeric(x, "operand");
    if (a.fn === "mean") requireFloat(x, "operand of mean");
    const axis = axisOf(a.axis, x.shape.length);
    const shape = a.keepDims ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_, i) => i !== axis);
    return { dtype: x.dtype, shape };
  },
  matmul: (a, ins) => {
    expectArity(ins, [2]);
    const [x, w] = [ins[0]!, ins[1]!];
    requireNumeric(x, "lhs");
    if (x.dtype !== w.dtype) fail(`operand dtypes differ (${x.dtype}, ${w.dtype}); cast explicitly`);
    if (x.shape.length < 2 || w.shape.length < 2) fail(`operands must have rank >= 2`);
    const m = x.shape[x.shape.length - 2]!;
    const k = x.shape[x.shape.length - 1]!;
    const wr = w.shape.length;
    const [wk, n] = a.transposeB ? [w.shape[wr - 1]!, w.shape[wr - 2]!] : [w.shape[wr - 2]!, w.shape[wr - 1]!];
    requireDim(k, wk, "contraction dims differ");
    const batch = x.shape.slice(0, -2);
    if (wr > 2 && !shapesEqual(batch, w.shape.slice(0, -2))) {
      fail(`batch dims differ: ${formatShape(batch)} vs ${formatShape(w.shape.slice(0, -2))}`);
    }
    return { dtype: x.dtype, shape: [...batch, m, n].map(canonicalDim) };
  },
  reshape: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    const shape = validShape(a.shape, "target shape");
    if (!sameElementCount(x.shape, shape)) fail(`cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    return { dtype: x.dtype, shape };
  },
  transpose: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    const r = x.shape.length;
    const seen = new Set(a.perm);
    if (a.perm.length !== r || seen.size !== r || a.perm.some((p) => !Number.isInteger(p) || p < 0 || p >= r)) {
      fail(`perm [${a.perm.join(", ")}] is not a permutation of rank ${r}`);
    }
    return { dtype: x.dtype, shape: a.perm.map((p) => x.shape[p]!) };
  },
  slice: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    const axis = axisOf(a.axis, x.shape.length);
    const size = x.shape[axis]!;
    if (!Number.isInteger(a.step) || a.step < 1) fail(`step must be a positive integer, got ${a.step}`);
    let len: Dim;
    if (isStaticDim(a.end)) {
      // A static window of a symbolic axis is legal; the interpreter and kernels check it against the actual size.
      if (isStaticDim(size) && a.end > size) fail(`end ${a.end} exceeds dim ${size}`);
      if (!Number.isInteger(a.start) || a.start < 0 || a.start > a.end) fail(`bad range [${a.start}, ${a.end})`);
      len = Math.ceil((a.end - a.start) / a.step);
    } else {
      if (a.start !== 0 || a.step !== 1) fail(`a symbolic end (${a.end}) needs start 0 and step 1`);
      // a static dim takes any symbolic end (the verifier checks its bound, the interpreter and kernels its value)
      const spare = isStaticDim(size) ? 0 : constantDifference(size, a.end);
      if (spare === undefined || spare < 0) fail(`symbolic end ${a.end} must be the dim ${size} minus a constant`);
      len = canonicalDim(a.end);
    }
    return { dtype: x.dtype, shape: x.shape.map((d, i) => (i === axis ? len : d)) };
  },
  concat: (a, ins) => {
    if (ins.length < 1) fail(`expects at least 1 operand`);
    const first = ins[0]!;
    const axis = axisOf(a.axis, first.shape.length);
    sameDtypes(ins);
    let total: Dim = 0;
    for (const t of ins) {
      if (t.shape.length !== first.shape.length) fail(`operand ranks differ`);
      t.shape.forEach((d, i) => {
        if (i !== axis && !dimsEqual(d, first.shape[i]!)) fail(`operands differ in dim ${i} (${first.shape[i]} vs ${d})`);
      });
      total = dimAdd(total, t.shape[axis]!);
    }
    return { dtype: first.dtype, shape: first.shape.map((d, i) => (i === axis ? total : d)) };
  },
  gather: (a, ins) => {
    expectArity(ins, [2]);
    const [x, idx] = [ins[0]!, ins[1]!];
    requireInteger(idx, "indices");
    const axis = axisOf(a.axis, x.shape.length);
    return { dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)] };
  },
  scatter: (a, ins) => {
    expectArity(ins, [3]);
    const [x, idx, upd] = [ins[0]!, ins[1]!, ins[2]!];
    requireInteger(idx, "indices");
    requireRank(idx, 1, "indices");
    const axis = axisOf(a.axis, x.shape.length);
    if (upd.dtype !== x.dtype) fail(`updates dtype ${upd.dtype} differs from ${x.dtype}`);
    const expected = x.shape.map((d, i) => (i === axis ? idx.shape[0]! : d));
    if (!shapesEqual(upd.shape, expected)) fail(`updates must have shape ${formatShape(expected)}`);
    return { dtype: x.dtype, shape: x.shape };
  },
  broadcast: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    const shape = validShape(a.shape, "target shape");
    if (!broadcastable(x.shape, shape)) fail(`cannot broadcast ${formatShape(x.shape)} to ${formatShape(shape)}`);
    return { dtype: x.dtype, shape };
  },
  topk: (a, ins) => {
    expectArity(ins, [1]);
    const x = ins[0]!;
    requireNumeric(x, "operand");
    if (x.shape.length < 1) fail(`operand must have rank >= 1`);
    const last = x.shape[x.shape.length - 1]!;
    if (!Number.isInteger(a.k) || a.k < 1 || (isStaticDim(last) && a.k > last)) fail(`k = ${a.k} is out of range for a last dim of ${last}`);
    return { dtype: a.result === "values" ? x.dtype : "i32", shape: [...x.shape.slice(0, -1), a.k] };
  },
  sample: (_a, ins) => {
    expectArity(ins, [5, 6]);
    const [logits, temperature, topK, topP, uniform] = ins as [TensorType, TensorType, TensorType, TensorType, TensorType];
    requireFloat(logits, "logits");
    requireRank(logits, 2, "logits");
    const rows = logits.shape[0]!;
    for (const [t, what, dtype] of [[temperature, "temperature", "f32"], [topK, "topK", "i32"], [topP, "topP", "f32"], [uniform, "uniform", "f32"]] as const) {
      if (t.dtype !== dtype || !shapesEqual(t.shape, [rows])) fail(`${what} must be ${dtype}[${rows}], got ${t.dtype}${formatShape(t.shape)}`);
    }
    const ids = ins[5];
    if (ids && (ids.dtype !== "i32" || !shapesEqual(ids.shape, logits.shape))) fail(`ids must be i32${formatShape(logits.shape)}, got ${ids.dtype}${formatShape(ids.shape)}`);
    return { dtype: "i32", shape: [rows] };
  },
  dequantMxfp4: (a, ins) => {
    expectArity(ins, [2]);
    const [blocks, scales] = [ins[0]!, ins[1]!];
    if (blocks.dtype !== "fp4e2m1x2") fail(`blocks must be fp4e2m1x2, got ${blocks.dtype}`);
    if (scales.dtype !== "e8m0") fail(`scales must be e8m0, got ${scales.dtype}`);
    const r = blocks.shape.length;
    if (r < 2 || blocks.shape[r - 1] !== MXFP4_BLOCK / 2) fail(`blocks must be [..., nb, ${MXFP4_BLOCK / 2}], got ${formatShape(blocks.shape)}`);
    if (!shapesEqual(scales.shape, blocks.shape.slice(0, -1))) fail(`scales must be ${formatShape(blocks.shape.slice(0, -1))}, got ${formatShape(scales.shape)}`);
    requireFloat({ dtype: a.dtype, shape: [] }, "dequantized dtype");
    const nb = blocks.shape[r - 2]!;
    if (!isStaticDim(nb)) fail(`block count must be static, got ${nb}`);
    return { dtype: a.dtype, shape: [...blocks.shape.slice(0, -2), nb * MXFP4_BLOCK] };
  },
  fusedRmsNorm: (a, ins) => {
    expectArity(ins, a.hasResidual ? [3] : [2]);
    const x = ins[0]!;
    const w = ins[ins.length - 1]!;
    requireFloat(x, "x");
    requireFloat(w, "weight");
    if (a.hasResidual && !(shapesEqual(ins[1]!.shape, x.shape) && ins[1]!.dtype === x.dtype)) fail(`residual must match x`);
    requireRank(w, 1, "weight");
    requireDim(w.shape[0]!, x.shape[x.shape.length - 1]!, "weight length differs from the normalized dim");
    if (!a.hasResidual && a.result === "sum") fail(`result "sum" needs a residual`);
    if (!(a.eps > 0)) fail(`eps must be positive, got ${a.eps}`);
    return { dtype: x.dtype, shape: x.shape };
  },
  sinkAttention: (a, ins) => {
    expectArity(ins, a.hasSinks ? [6] : [5]);
    const [q, k, v, qpos, kpos] = [ins[0]!, ins[1]!, ins[2]!, ins[3]!, ins[4]!];
    requireFloat(q, "q");
    if (k.dtype !== q.dtype || v.dtype !== q.dtype) fail(`q, k and v must share a dtype`);
    const r = q.shape.length;
    if (r < 3 || k.shape.length !== r || v.shape.length !== r) fail(`q, k, v must be [..., T|S, heads, headDim] of equal rank`);
    const batch = q.shape.slice(0, -3);
    if (!shapesEqual(k.shape.slice(0, -3), batch) || !shapesEqual(v.shape, k.shape)) fail(`k and v must be [...batch, S, kvHeads, headDim]`);
    const [, h, d] = q.shape.slice(-3);
    const [s, kvh, kd] = k.shape.slice(-3);
    requireDim(d!, kd!, "head dims differ");
    if (!isStaticDim(h!) || !isStaticDim(kvh!) || h % kvh !== 0) fail(`query heads (${h}) must be a static multiple of kv heads (${kvh})`);
    requireInteger(qpos, "qpos");
    requireInteger(kpos, "kpos");
    if (!shapesEqual(qpos.shape, q.shape.slice(0, -2))) fail(`qpos must be ${formatShape(q.shape.slice(0, -2))}`);
    // kpos names the keys: all R rows of k, or (R static) its first S rows
    const keys = kpos.shape[kpos.shape.length - 1];
    if (!shapesEqual(kpos.shape.slice(0, -1), batch) || keys === undefined || kpos.shape.length !== batch.length + 1) fail(`kpos must be ${formatShape([...batch, s!])}`);
    if (!dimsEqual(keys!, s!) && !(isStaticDim(s!) && (!isStaticDim(keys!) || keys <= s))) fail(`kpos must be ${formatShape([...batch, s!])} (or fewer keys than k's static ${s} rows)`);
    if (a.hasSinks) {
      const sinks = ins[5]!;
      requireFloat(sinks, "sinks");
      if (!shapesEqual(sinks.shape, [h])) fail(`sinks must be [${h}]`);
    }
    if (!Number.isInteger(a.window) || a.window < 0) fail(`window must be a non-negative integer`);
    return { dtype: q.dtype, shape: q.shape };
  },
  seqTokenRanges: (_a, ins) => {
    expectArity(ins, [2]);
    const [tokenSeqs, contextLens] = [ins[0]!, ins[1]!];
    requireInteger(tokenSeqs, "tokenSeqs");
    requireRank(tokenSeqs, 1, "tokenSeqs");
    requireRank(contextLens, 1, "contextLens");
    return { dtype: "i32", shape: [contextLens.shape[0]!, 2] };
  },
  uniqueIndices: (_a, ins) => {
    expectArity(ins, [1]);
    const idx = ins[0]!;
    if (idx.dtype !== "i32") fail(`indices must be i32, got ${idx.dtype}`);
    requireRank(idx, 1, "indices");
    return { dtype: "i32", shape: idx.shape };
  },
  pagedAttention: (a, ins) => {
    // optional trailing inputs: seqTokenRanges(tokenSeqs, contextLens) [S, 2], then sinks
    const hasRanges = ins.length === (a.hasSinks ? 11 : 10);
    expectArity(ins, a.hasSinks ? [10, 11] : [9, 10]);
    const [q, k, v, kPool, vPool, positions, tokenSeqs, contextLens, blockTable] = ins as [TensorType, TensorType, TensorType, TensorType, TensorType, TensorType, TensorType, TensorType, TensorType];
    requireFloat(q, "q");
    for (const [t, what] of [[k, "k"], [v, "v"], [kPool, "kPool"], [vPool, "vPool"]] as const) {
      if (t.dtype !== q.dtype) fail(`${what} must share q's dtype ${q.dtype}, got ${t.dtype}`);
      requireRank(t, 3, what);
    }
    requireRank(q, 3, "q");
    const [tokens, h, d] = q.shape as [Dim, Dim, Dim];
    const [kt, kvh, kd] = k.shape as [Dim, Dim, Dim];
    requireDim(kt, tokens, "k and q have different token counts");
    if (!shapesEqual(v.shape, k.shape)) fail(`v must match k ${formatShape(k.shape)}`);
    requireDim(kd, d, "head dims differ");
    if (!isStaticDim(h) || !isStaticDim(kvh) || h % kvh !== 0) fail(`query heads (${h}) must be a static multiple of kv heads (${kvh})`);
    if (!shapesEqual(kPool.shape.slice(1), [kvh, d]) || !shapesEqual(vPool.shape, kPool.shape)) fail(`kPool and vPool must be [rows, ${kvh}, ${d}]`);
    for (const [t, what] of [[positions, "positions"], [tokenSeqs, "tokenSeqs"], [contextLens, "contextLens"], [blockTable, "blockTable"]] as const) {
      if (t.dtype !== "i32") fail(`${what} must be i32, got ${t.dtype}`);
    }
    if (!shapesEqual(positions.shape, [tokens]) || !shapesEqual(tokenSeqs.shape, [tokens])) fail(`positions and tokenSeqs must be [${tokens}]`);
    requireRank(contextLens, 1, "contextLens");
    requireRank(blockTable, 2, "blockTable");
    requireDim(blockTable.shape[0]!, contextLens.shape[0]!, "blockTable and contextLens have different sequence counts");
    if (!isStaticDim(blockTable.shape[1]!)) fail(`blockTable's width (blocks per sequence) must be static`);
    if (hasRanges && !(ins[9]!.dtype === "i32" && shapesEqual(ins[9]!.shape, [contextLens.shape[0]!, 2]))) fail(`seqRanges must be i32 [${contextLens.shape[0]}, 2]`);
    if (a.hasSinks) {
      const sinks = ins[ins.length - 1]!;
      requireFloat(sinks, "sinks");
      if (!shapesEqual(sinks.shape, [h])) fail(`sinks must be [${h}]`);
    }
    if (!Number.isInteger(a.window) || a.window < 0) fail(`window must be a non-negative integer`);
    if (!Number.isInteger(a.blockSize) || a.blockSize < 1) fail(`blockSize must be a positive integer`);
    return { dtype: q.dtype, shape: q.shape };
  },
  moeExperts: (a, ins) => {
    const dense = a.weightFormat === "dense";
    expectArity(ins, dense ? [7] : [9]);
    const x = ins[0]!;
    requireFloat(x, "x");
    requireRank(x, 2, "x");
    const [rw, rb] = [ins[1]!, ins[2]!];
    requireRank(rw, 2, "router weight");
    const e = rw.shape[0]!;
    const dm = x.shape[1]!;
    requireDim(rw.shape[1]!, dm, "router weight width differs from hidden");
    if (!shapesEqual(rb.shape, [e])) fail(`router bias must be [${e}]`);
    if (!isStaticDim(e) || !Number.isInteger(a.topK) || a.topK < 1 || a.topK > e) fail(`topK ${a.topK} out of range for ${e} experts`);
    // the expert weights hold the local experts: all E, or (expert parallelism) E_local of them from firstExpert on
    const local = ins[3]!.shape[0]!;
    const first = a.firstExpert ?? 0;
    if (!isStaticDim(local) || !Number.isInteger(first) || first < 0 || first + local > e || (a.firstExpert === undefined && local !== e)) {
      fail(`expert weights hold ${local} experts${a.firstExpert !== undefined ? ` from expert ${first}` : ""}, which the router's ${e} experts do not cover`);
    }
    let inter: Dim;
    if (dense) {
      const [gw, gb, dw, db] = [ins[3]!, ins[4]!, ins[5]!, ins[6]!];
      requireRank(gw, 3, "gate_up weight");
      const twoI = gw.shape[2]!;
      if (!isStaticDim(twoI) || twoI % 2 !== 0) fail(`gate_up width must be even`);
      inter = twoI / 2;
      if (!shapesEqual(gw.shape, [local, dm, twoI])) fail(`gate_up weight must be [${local}, ${dm}, ${twoI}]`);
      if (!shapesEqual(gb.shape, [local, twoI])) fail(`gate_up bias must be [${local}, ${twoI}]`);
      if (!shapesEqual(dw.shape, [local, inter, dm])) fail(`down weight must be [${local}, ${inter}, ${dm}]`);
      if (!shapesEqual(db.shape, [local, dm])) fail(`down bias must be [${local}, ${dm}]`);
    } else {
      const [gBlk, gSc, gb, dBlk, dSc, db] = ins.slice(3) as [TensorType, TensorType, TensorType, TensorType, TensorType, TensorType];
      if (!isStaticDim(dm) || dm % MXFP4_BLOCK !== 0) fail(`hidden ${dm} must be a static multiple of ${MXFP4_BLOCK}`);
      const twoI = gBlk.shape[1]!;
      if (!isStaticDim(twoI) || twoI % 2 !== 0 || (twoI / 2) % MXFP4_BLOCK !== 0) fail(`intermediate must be a static multiple of ${MXFP4_BLOCK}`);
      inter = twoI / 2;
      const check = (t: TensorType, dtype: DType, shape: Shape, what: string) => {
        if (t.dtype !== dtype || !shapesEqual(t.shape, shape)) fail(`${what} must be ${dtype}${formatShape(shape)}, got ${t.dtype}${formatShape(t.shape)}`);
      };
      check(gBlk, "fp4e2m1x2", [local, twoI, dm / MXFP4_BLOCK, 16], "gate_up blocks");
      check(gSc, "e8m0", [local, twoI, dm / MXFP4_BLOCK], "gate_up scales");
      check(dBlk, "fp4e2m1x2", [local, dm, inter / MXFP4_BLOCK, 16], "down blocks");
      check(dSc, "e8m0", [local, dm, inter / MXFP4_BLOCK], "down scales");
      if (!shapesEqual(gb.shape, [local, twoI])) fail(`gate_up bias must be [${local}, ${twoI}]`);
      if (!shapesEqual(db.shape, [local, dm])) fail(`down bias must be [${local}, ${dm}]`);
    }
    return { dtype: x.dtype, shape: x.shape };
  },
  mxfp4Matmul: (_a, ins) => {
    expectArity(ins, [3]);
    const [x, blocks, scales] = [ins[0]!, ins[1]!, ins[2]!];
    requireFloat(x, "x");
    if (blocks.dtype !== "fp4e2m1x2" || scales.dtype !== "e8m0") fail(`blocks/scales must be fp4e2m1x2/e8m0`);
    requireRank(blocks, 3, "blocks");
    if (blocks.shape[2] !== 16) fail(`blocks must be [N, K/32, 16]`);
    if (!shapesEqual(scales.shape, blocks.shape.slice(0, 2))) fail(`scales must be ${formatShape(blocks.shape.slice(0, 2))}`);
    if (x.shape.length < 2) fail(`x must have rank >= 2`);
    const nb = blocks.shape[1]!;
    if (!isStaticDim(nb)) fail(`block count must be static`);
    requireDim(x.shape[x.shape.length - 1]!, nb * MXFP4_BLOCK, "contraction dims differ");
    return { dtype: x.dtype, shape: [...x.shape.slice(0, -1), blocks.shape[0]!] };
  },
  fusedLinear: (a, ins) => {
    expectArity(ins, [3]);
    const product = TYPE_RULES.matmul({ transposeB: a.transposeB }, ins.slice(0, 2));
    const bias = ins[2]!;
    requireFloat(product, "x");
    if (bias.dtype !== product.dtype) fail(`bias must be ${product.dtype}, got ${bias.dtype}`);
    const n = product.shape[product.shape.length - 1]!;
    if (!shapesEqual(bias.shape, [n])) fail(`bias must be [${n}], got ${formatShape(bias.shape)}`);
    return product;
  },
  groupedLinear: (a, ins) => {
    if (ins.length < 3 || ins.length % 2 !== 1) fail(`needs x then a (weight, bias) pair per layer, got ${ins.length} operands`);
    const layers = (ins.length - 1) / 2;
    if (!Number.isInteger(a.result) || a.result < 0 || a.result >= layers) fail(`result ${a.result} is not one of its ${layers} layers`);
    const types = Array.from({ length: layers }, (_, i) => TYPE_RULES.fusedLinear({ transposeB: true }, [ins[0]!, ins[1 + 2 * i]!, ins[2 + 2 * i]!]));
    for (let i = 0; i < layers; i++) if (ins[1 + 2 * i]!.shape.length !== 2) fail(`weight ${i} must be [N, K], got ${formatShape(ins[1 + 2 * i]!.shape)}`);
    return types[a.result]!;
  },
  fusedRope: (_a, ins) => {
    expectArity(ins, [3]);
    const [x, cos, sin] = [ins[0]!, ins[1]!, ins[2]!];
    requireFloat(x, "x");
    if (x.shape.length < 3) fail(`x must be [..., T, H, D]`);
    const d = x.shape[x.shape.length - 1]!;
    if (!isStaticDim(d) || d % 2 !== 0) fail(`head dim must be static and even, got ${d}`);
    const expected = [...x.shape.slice(0, -2), 1, d / 2];
    for (const [name, t] of [["cos", cos], ["sin", sin]] as const) {
      if (t.dtype !== x.dtype) fail(`${name} must be ${x.dtype}, got ${t.dtype}`);
      if (!shapesEqual(t.shape, expected)) fail(`${name} must be ${formatShape(expected)}, got ${formatShape(t.shape)}`);
    }
    return { dtype: x.dtype, shape: x.shape };
  },
  fusedElementwise: (a, ins) => {
    const shape = validShape(a.shape, "output shape");
    ins.forEach((t, i) => {
      if (!broadcastable(t.shape, shape)) fail(`input ${i} ${formatShape(t.shape)} does not broadcast to ${formatShape(shape)}`);
    });
    const types = fusedBodyTypes(a.body, ins.map((t) => t.dtype));
    const last = types[types.length - 1];
    if (last === undefined) fail(`empty body`);
    return { dtype: last, shape };
  },
  allReduce: (a, ins) => {
    expectArity(ins, [1]);
    collectiveAttrs(a);
    requireNumeric(ins[0]!, "operand");
    return { dtype: ins[0]!.dtype, shape: ins[0]!.shape };
  },
  allGather: (a, ins) => {
    expectArity(ins, [1]);
    collectiveAttrs(a);
    if (!isNumeric(ins[0]!.dtype) && ins[0]!.dtype !== "bool") fail(`operand must be numeric or bool, got ${ins[0]!.dtype}`);
    return { dtype: ins[0]!.dtype, shape: [a.ranks, ...ins[0]!.shape] };
  },
  reduceScatter: (a, ins) => {
    expectArity(ins, [1]);
    collectiveAttrs(a);
    const x = ins[0]!;
    requireNumeric(x, "operand");
    if (x.shape.length < 1 || x.shape[0] !== a.ranks) fail(`operand must be [${a.ranks}, ...] (a block per rank), got ${formatShape(x.shape)}`);
    return { dtype: x.dtype, shape: x.shape.slice(1) };
  },
};

function collectiveAttrs(a: { readonly ranks: number; readonly seq: number }): void {
  if (!Number.isInteger(a.ranks) || a.ranks < 1) fail(`ranks must be a positive integer, got ${a.ranks}`);
  if (!Number.isInteger(a.seq) || a.seq < 0) fail(`seq must be a non-negative integer, got ${a.seq}`);
}

/** The dtype of each instruction of a fused body, checking operand references and types. */
export function fusedBodyTypes(body: readonly FusedInstr[], inputDtypes: readonly DType[]): DType[] {
  const types: DType[] = [];
  const ref = (i: number, at: number): DType => {
    if (!Number.isInteger(i) || i < 0 || i >= at) fail(`instruction ${at} refers to ${i}, which is not an earlier instruction`);
    return types[i]!;
  };
  body.forEach((ins, at) => {
    const scalar = (dtype: DType): TensorType => ({ dtype, shape: [] });
    switch (ins.op) {
      case "input": {
        const d = inputDtypes[ins.index];
        if (d === undefined) fail(`instruction ${at} reads input ${ins.index}, but there are ${inputDtypes.length}`);
        types.push(d);
        return;
      }
      case "constant":
        types.push(ins.dtype);
        return;
      case "unary":
        types.push(TYPE_RULES.unary({ fn: ins.fn }, [scalar(ref(ins.a, at))]).dtype);
        return;
      case "binary":
        types.push(TYPE_RULES.binary({ fn: ins.fn }, [scalar(ref(ins.a, at)), scalar(ref(ins.b, at))]).dtype);
        return;
      case "compare":
        types.push(TYPE_RULES.compare({ fn: ins.fn }, [scalar(ref(ins.a, at)), scalar(ref(ins.b, at))]).dtype);
        return;
      case "ternary":
        types.push(TYPE_RULES.ternary({ fn: ins.fn }, [scalar(ref(ins.a, at)), scalar(ref(ins.b, at)), scalar(ref(ins.c, at))]).dtype);
        return;
      case "cast":
        types.push(TYPE_RULES.cast({ to: ins.to }, [scalar(ref(ins.a, at))]).dtype);
        return;
    }
  });
  return types;
}
