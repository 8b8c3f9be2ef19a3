// The CPU reference interpreter: every op, primitive and fused, computed in f64 and rounded to each
// node's dtype after every op (f32 via Math.fround, bf16/f16 round-to-nearest-even), with f64
// accumulation for reductions and matmul. It is the oracle of every compiler and kernel test.
//
// Fused ops are evaluated with exactly the roundings of the primitive expansion the builder writes,
// so a pass that fuses must leave the interpreter's output bit-identical.

import { type CollectiveNode, collectiveOrder, combineCollective, isCollectiveNode } from "./collectives.js";
import { type DType, decodeE2m1, decodeE8m0, isFloat, MXFP4_BLOCK, roundTo } from "./dtype.js";
import type { Graph } from "./graph.js";
import { entryResults, findEntry } from "./graph.js";
import { type HostTensor, stridesOf } from "./host-tensor.js";
import { type Node, type NodeOf, topoOrder } from "./node.js";
import type { BinaryFn, CompareFn, FusedInstr, Op, ReduceFn, UnaryFn } from "./ops.js";
import { type SymbolValues, bindShape, evalDim, evalShape, formatShape, numElements } from "./shape.js";

export interface InterpretContext {
  readonly symbols: SymbolValues;
  readonly inputs: Readonly<Record<string, HostTensor>>;
  readonly params: Readonly<Record<string, HostTensor>>;
  /** Model state before the call; a state not given reads as zeros (its initial value). */
  readonly states?: Readonly<Record<string, HostTensor>>;
}

type Evaluator<K extends Op> = (n: NodeOf<K>, ins: readonly HostTensor[], ctx: InterpretContext, outShape: number[]) => Float64Array;

// ---- scalar semantics (shared by primitive ops and FusedElementwise bodies) ----------------------

export function applyUnary(fn: UnaryFn, x: number): number {
  switch (fn) {
    case "exp": return Math.exp(x);
    case "log": return Math.log(x);
    case "sqrt": return Math.sqrt(x);
    case "rsqrt": return 1 / Math.sqrt(x);
    case "sigmoid": return 1 / (1 + Math.exp(-x));
    case "tanh": return Math.tanh(x);
    case "neg": return -x;
    case "abs": return Math.abs(x);
    case "sin": return Math.sin(x);
    case "cos": return Math.cos(x);
  }
}

export function applyBinary(fn: BinaryFn, a: number, b: number, dtype: DType): number {
  switch (fn) {
    case "add": return a + b;
    case "sub": return a - b;
    case "mul": return a * b;
    case "div": return isFloat(dtype) ? a / b : b === 0 ? 0 : Math.trunc(a / b);
    case "min": return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b);
    case "max": return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
    case "pow": return a ** b;
  }
}

export function applyCompare(fn: CompareFn, a: number, b: number): number {
  switch (fn) {
    case "eq": return a === b ? 1 : 0;
    case "ne": return a !== b ? 1 : 0;
    case "lt": return a < b ? 1 : 0;
    case "le": return a <= b ? 1 : 0;
    case "gt": return a > b ? 1 : 0;
    case "ge": return a >= b ? 1 : 0;
  }
}

function clampValue(x: number, lo: number, hi: number): number {
  return applyBinary("min", applyBinary("max", x, lo, "f32"), hi, "f32");
}

// ---- index helpers -------------------------------------------------------------------------------

/** For each element of `outShape`, the flat index of the element of `inShape` it broadcasts from. */
function broadcastIndexMap(inShape: readonly number[], outShape: readonly number[]): Int32Array | undefined {
  if (inShape.length === outShape.length && inShape.every((d, i) => d === outShape[i])) return undefined;
  const n = numElements(outShape);
  const map = new Int32Array(n);
  const off = outShape.length - inShape.length;
  const inStrides = stridesOf(inShape);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let flat = 0; flat < n; flat++) {
    let src = 0;
    for (let a = 0; a < inShape.length; a++) if (inShape[a] !== 1) src += idx[a + off]! * inStrides[a]!;
    map[flat] = src;
    for (let a = outShape.length - 1; a >= 0; a--) {
      if (++idx[a]! < outShape[a]!) break;
      idx[a] = 0;
    }
  }
  return map;
}

/** Splits a shape around `axis` into (outer, size, inner) element counts. */
function around(shape: readonly number[], axis: number): [number, number, number] {
  return [numElements(shape.slice(0, axis)), shape[axis]!, numElements(shape.slice(axis + 1))];
}

function roundAll(dtype: DType, v: Float64Array): Float64Array {
  for (let i = 0; i < v.length; i++) v[i] = roundTo(dtype, v[i]!);
  return v;
}

/** Batched matmul in f64 with rounding of the result: a [B, M, K] · b [Bb, K, N] (or [Bb, N, K]); Bb is B or 1. */
function matmulCore(a: Float64Array, b: Float64Array, batch: number, m: number, k: number, n: number, bShared: boolean, transposeB: boolean, dtype: DType): Float64Array {
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    const aOff = bi * m * k;
    const bOff = bShared ? 0 : bi * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        if (transposeB) for (let p = 0; p < k; p++) acc += a[aOff + i * k + p]! * b[bOff + j * k + p]!;
        else for (let p = 0; p < k; p++) acc += a[aOff + i * k + p]! * b[bOff + p * n + j]!;
        out[bi * m * n + i * n + j] = roundTo(dtype, acc);
      }
    }
  }
  return out;
}

function dequantRows(blocks: Float64Array, scales: Float64Array, rows: number, nb: number, dtype: DType): Float64Array {
  const half = MXFP4_BLOCK / 2;
  const out = new Float64Array(rows * nb * MXFP4_BLOCK);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const scale = decodeE8m0(scales[r * nb + b]!);
      for (let j = 0; j < half; j++) {
        const byte = blocks[(r * nb + b) * half + j]!;
        const base = (r * nb + b) * MXFP4_BLOCK + 2 * j;
        out[base] = roundTo(dtype, decodeE2m1(byte & 0xf) * scale);
        out[base + 1] = roundTo(dtype, decodeE2m1(byte >> 4) * scale);
      }
    }
  }
  return out;
}

/** Indices of the k largest values of v[off .. off+len), descending; NaN ranks highest, ties to the lower index. */
function topkIndices(v: Float64Array, off: number, len: number, k: number): number[] {
  const key = (i: number) => (Number.isNaN(v[off + i]!) ? Infinity : v[off + i]!);
  const isNan = (i: number) => Number.isNaN(v[off + i]!);
  const order = Array.from({ length: len }, (_, i) => i);
  order.sort((x, y) => {
    if (isNan(x) !== isNan(y)) return isNan(x) ? -1 : 1;
    const d = key(y) - key(x);
    return d !== 0 && !Number.isNaN(d) ? d : x - y;
  });
  return order.slice(0, k);
}

/** Softmax of a short vector with the roundings of the builder's softmax in `dtype`. */
function roundedSoftmax(values: readonly number[], dtype: DType): number[] {
  let m = -Infinity;
  for (const v of values) m = applyBinary("max", m, v, dtype);
  const e = values.map((v) => roundTo(dtype, Math.exp(roundTo(dtype, v - m))));
  let s = 0;
  for (const x of e) s += x;
  const sum = roundTo(dtype, s);
  return e.map((x) => roundTo(dtype, x / sum));
}

// ---- per-op evaluators ---------------------------------------------------------------------------

/** matmul(a, b) rounded to `dtype`, plus bias [N], rounded again (fusedLinear, a groupedLinear layer). */
function linearWithBias(a: HostTensor, b: HostTensor, bias: HostTensor, transposeB: boolean, dtype: DType): Float64Array {
  const ar = a.shape.length;
  const br = b.shape.length;
  const [m, k] = [a.shape[ar - 2]!, a.shape[ar - 1]!];
  const cols = transposeB ? b.shape[br - 2]! : b.shape[br - 1]!;
  const out = matmulCore(a.data, b.data, numElements(a.shape.slice(0, -2)), m, k, cols, br === 2, transposeB, dtype);
  for (let i = 0; i < out.length; i++) out[i] = roundTo(dtype, out[i]! + bias.data[i % cols]!);
  return out;
}

const EVALUATORS: { readonly [K in Op]: Evaluator<K> } = {
  input: (n, _ins, ctx) => {
    const t = ctx.inputs[n.attrs.name];
    if (!t) throw new Error(`input ${n.attrs.name} was not provided`);
    return t.data;
  },
  param: (n, _ins, ctx, shape) => {
    const t = ctx.params[n.attrs.name];
    if (!t) throw new Error(`parameter ${n.attrs.name} was not provided`);
    if (t.dtype !== n.attrs.dtype || formatShape(t.shape) !== formatShape(shape)) {
      throw new Error(`parameter ${n.attrs.name} is ${t.dtype}${formatShape(t.shape)}, the model declares ${n.attrs.dtype}${formatShape(shape)}`);
    }
    return t.data;
  },
  state: (n, _ins, ctx, shape) => {
    const t = ctx.states?.[n.attrs.name];
    if (!t) return new Float64Array(numElements(shape));
    if (t.dtype !== n.attrs.dtype || formatShape(t.shape) !== formatShape(shape)) {
      throw new Error(`state ${n.attrs.name} is ${t.dtype}${formatShape(t.shape)}, the model declares ${n.attrs.dtype}${formatShape(shape)}`);
    }
    return t.data;
  },
  constant: (n, _ins, _ctx, shape) => new Float64Array(numElements(shape)).fill(roundTo(n.dtype, n.attrs.value)),
  literal: (n) => Float64Array.from(n.attrs.data, (v) => roundTo(n.dtype, v)),
  iota: (n, _ins, _ctx, shape) => {
    const [outer, size, inner] = around(shape, n.attrs.axis);
    const out = new Float64Array(outer * size * inner);
    for (let o = 0; o < outer; o++) for (let i = 0; i < size; i++) out.fill(roundTo(n.dtype, i), (o * size + i) * inner, (o * size + i + 1) * inner);
    return out;
  },
  unary: (n, [x]) => roundAll(n.dtype, x!.data.map((v) => applyUnary(n.attrs.fn, v))),
  binary: (n, [a, b]) => roundAll(n.dtype, a!.data.map((v, i) => applyBinary(n.attrs.fn, v, b!.data[i]!, n.dtype))),
  ternary: (n, [a, b, c]) =>
    roundAll(n.dtype, n.attrs.fn === "where" ? a!.data.map((v, i) => (v !== 0 ? b!.data[i]! : c!.data[i]!)) : a!.data.map((v, i) => clampValue(v, b!.data[i]!, c!.data[i]!))),
  compare: (n, [a, b]) => a!.data.map((v, i) => applyCompare(n.attrs.fn, v, b!.data[i]!)),
  cast: (n, [x]) => roundAll(n.dtype, Float64Array.from(x!.data)),
  reduce: (n, [x]) => reduceAxis(n.attrs.fn, x!, n.attrs.axis, n.dtype),
  matmul: (n, [a, b]) => {
    const ar = a!.shape.length;
    const br = b!.shape.length;
    const [m, k] = [a!.shape[ar - 2]!, a!.shape[ar - 1]!];
    const nn = n.attrs.transposeB ? b!.shape[br - 2]! : b!.shape[br - 1]!;
    return matmulCore(a!.data, b!.data, numElements(a!.shape.slice(0, -2)), m, k, nn, br === 2, n.attrs.transposeB, n.dtype);
  },
  reshape: (_n, [x]) => x!.data,
  transpose: (n, [x], _ctx, shape) => {
    const perm = n.attrs.perm;
    const inStrides = stridesOf(x!.shape);
    const out = new Float64Array(numElements(shape));
    const idx = new Array<number>(shape.length).fill(0);
    for (let flat = 0; flat < out.length; flat++) {
      let src = 0;
      for (let a = 0; a < shape.length; a++) src += idx[a]! * inStrides[perm[a]!]!;
      out[flat] = x!.data[src]!;
      for (let a = shape.length - 1; a >= 0; a--) {
        if (++idx[a]! < shape[a]!) break;
        idx[a] = 0;
      }
    }
    return out;
  },
  slice: (n, [x], ctx, shape) => {
    const axis = n.attrs.axis;
    const [outer, size, inner] = around(x!.shape, axis);
    const end = evalDim(n.attrs.end, ctx.symbols);
    if (end > size) throw new Error(`slice end ${end} exceeds dim ${size} of ${formatShape(x!.shape)}`);
    const len = shape[axis]!;
    const out = new Float64Array(outer * len * inner);
    for (let o = 0; o < outer; o++)
      for (let i = 0; i < len; i++) {
        const src = (o * size + n.attrs.start + i * n.attrs.step) * inner;
        out.set(x!.data.subarray(src, src + inner), (o * len + i) * inner);
      }
    return out;
  },
  concat: (n, ins, _ctx, shape) => {
    const axis = n.attrs.axis;
    const [outer, total, inner] = around(shape, axis);
    const out = new Float64Array(outer * total * inner);
    let at = 0;
    for (const t of ins) {
      const size = t.shape[axis]!;
      for (let o = 0; o < outer; o++) out.set(t.data.subarray(o * size * inner, (o + 1) * size * inner), (o * total + at) * inner);
      at += size;
    }
    return out;
  },
  gather: (n, [x, idx]) => {
    const [outer, size, inner] = around(x!.shape, n.attrs.axis);
    const count = idx!.data.length;
    const out = new Float64Array(outer * count * inner);
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < count; j++) {
        const i = idx!.data[j]!;
        if (i >= 0 && i < size) out.set(x!.data.subarray((o * size + i) * inner, (o * size + i + 1) * inner), (o * count + j) * inner);
      }
    return out;
  },
  scatter: (n, [x, idx, upd]) => {
    const [outer, size, inner] = around(x!.shape, n.attrs.axis);
    const count = idx!.data.length;
    const out = Float64Array.from(x!.data);
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < count; j++) {
        const i = idx!.data[j]!;
        if (i >= 0 && i < size) out.set(upd!.data.subarray((o * count + j) * inner, (o * count + j + 1) * inner), (o * size + i) * inner);
      }
    return out;
  },
  broadcast: (_n, [x], _ctx, shape) => {
    const map = broadcastIndexMap(x!.shape, shape);
    return map ? Float64Array.from(map, (i) => x!.data[i]!) : x!.data;
  },
  sample: (_n, [logits, temperature, topK, topP, uniform, ids]) => {
    const [rows, vocab] = logits!.shape as [number, number];
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const row = logits!.data.subarray(r * vocab, (r + 1) * vocab);
      const [t, k, p, u] = [temperature!.data[r]!, topK!.data[r]!, topP!.data[r]!, uniform!.data[r]!];
      out[r] = ids ? sampleCandidates(row, ids.data.subarray(r * vocab, (r + 1) * vocab), t, k, p, u) : sampleRow(row, t, k, p, u);
    }
    return out;
  },
  topk: (n, [x], _ctx, shape) => {
    const len = x!.shape[x!.shape.length - 1]!;
    const rows = x!.data.length / Math.max(len, 1);
    const k = n.attrs.k;
    const out = new Float64Array(numElements(shape));
    for (let r = 0; r < rows; r++) {
      const picked = topkIndices(x!.data, r * len, len, k);
      picked.forEach((i, j) => (out[r * k + j] = n.attrs.result === "values" ? x!.data[r * len + i]! : i));
    }
    return out;
  },
  dequantMxfp4: (n, [blocks, scales]) => {
    const nb = blocks!.shape[blocks!.shape.length - 2]!;
    return dequantRows(blocks!.data, scales!.data, scales!.data.length / nb, nb, n.dtype);
  },
  fusedRmsNorm: (n, ins) => {
    const x = ins[0]!;
    const w = ins[ins.length - 1]!;
    const dt = n.dtype;
    const s = n.attrs.hasResidual ? roundAll(dt, x.data.map((v, i) => v + ins[1]!.data[i]!)) : x.data;
    if (n.attrs.result === "sum") return s;
    const d = x.shape[x.shape.length - 1]!;
    const rows = s.length / Math.max(d, 1);
    const eps = Math.fround(n.attrs.eps);
    const out = new Float64Array(s.length);
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let j = 0; j < d; j++) acc += Math.fround(s[r * d + j]! * s[r * d + j]!);
      const inv = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(acc / d) + eps)));
      for (let j = 0; j < d; j++) out[r * d + j] = roundTo(dt, Math.fround(w.data[j]! * Math.fround(s[r * d + j]! * inv)));
    }
    return out;
  },
  sinkAttention: (n, ins) => sinkAttention(n, ins),
  pagedAttention: (n, ins) => pagedAttention(n, ins),
  seqTokenRanges: (_n, [tokenSeqs, contextLens]) => {
    const seqs = contextLens!.shape[0]!;
    const tokens = tokenSeqs!.data.length;
    const out = new Float64Array(2 * seqs);
    for (let s = 0; s < seqs; s++) [out[2 * s], out[2 * s + 1]] = [tokens, -1];
    tokenSeqs!.data.forEach((s, t) => {
      if (s < 0 || s >= seqs) return;
      out[2 * s] = Math.min(out[2 * s]!, t);
      out[2 * s + 1] = Math.max(out[2 * s + 1]!, t);
    });
    return out;
  },
  uniqueIndices: (_n, [idx]) => {
    const out = Float64Array.from(idx!.data);
    const later = new Set<number>();
    for (let j = out.length - 1; j >= 0; j--) {
      const i = out[j]!;
      if (i < 0 || later.has(i)) out[j] = -1;
      later.add(i);
    }
    return out;
  },
  moeExperts: (n, ins) => moeExperts(n, ins),
  mxfp4Matmul: (n, [x, blocks, scales]) => {
    const [rowsN, nb] = [blocks!.shape[0]!, blocks!.shape[1]!];
    const w = dequantRows(blocks!.data, scales!.data, rowsN, nb, n.dtype);
    const k = nb * MXFP4_BLOCK;
    return matmulCore(x!.data, w, x!.data.length / k, 1, k, rowsN, true, true, n.dtype);
  },
  fusedLinear: (n, [a, b, bias]) => linearWithBias(a!, b!, bias!, n.attrs.transposeB, n.dtype),
  groupedLinear: (n, ins) => linearWithBias(ins[0]!, ins[1 + 2 * n.attrs.result]!, ins[2 + 2 * n.attrs.result]!, true, n.dtype),
  fusedRope: (n, [x, cos, sin]) => {
    const d = x!.shape[x!.shape.length - 1]!;
    const h = x!.shape[x!.shape.length - 2]!;
    const half = d / 2;
    const rows = x!.data.length / d; // (..., T, H) rows; cos/sin are per (..., T)
    const dt = n.dtype;
    const out = new Float64Array(x!.data.length);
    for (let r = 0; r < rows; r++) {
      const cs = Math.floor(r / h) * half;
      for (let i = 0; i < half; i++) {
        const a = x!.data[r * d + i]!;
        const b = x!.data[r * d + half + i]!;
        const c = cos!.data[cs + i]!;
        const s = sin!.data[cs + i]!;
        out[r * d + i] = roundTo(dt, roundTo(dt, a * c) - roundTo(dt, b * s));
        out[r * d + half + i] = roundTo(dt, roundTo(dt, b * c) + roundTo(dt, a * s));
      }
    }
    return out;
  },
  allReduce: (n) => collectiveAlone(n),
  allGather: (n) => collectiveAlone(n),
  reduceScatter: (n) => collectiveAlone(n),
  fusedElementwise: (n, ins, _ctx, shape) => {
    const size = numElements(shape);
    const maps = ins.map((t) => broadcastIndexMap(t.shape, shape));
    const body = n.attrs.body;
    const types = bodyDtypes(body, ins.map((t) => t.dtype));
    const regs = new Float64Array(body.length);
    const out = new Float64Array(size);
    for (let e = 0; e < size; e++) {
      for (let i = 0; i < body.length; i++) regs[i] = roundTo(types[i]!, evalInstr(body[i]!, regs, ins, maps, e, types));
      out[e] = regs[body.length - 1]!;
    }
    return out;
  },
};

function collectiveAlone(n: CollectiveNode): never {
  throw new Error(`${n.op} #${n.attrs.seq} combines the ranks of a rank set; run the set's graphs together (interpretRanks)`);
}

function bodyDtypes(body: readonly FusedInstr[], inputs: readonly DType[]): DType[] {
  const t: DType[] = [];
  for (const ins of body) {
    switch (ins.op) {
      case "input": t.push(inputs[ins.index]!); break;
      case "constant": t.push(ins.dtype); break;
      case "compare": t.push("bool"); break;
      case "cast": t.push(ins.to); break;
      case "ternary": t.push(t[ins.fn === "where" ? ins.b : ins.a]!); break;
      default: t.push(t[ins.a]!);
    }
  }
  return t;
}

function evalInstr(ins: FusedInstr, regs: Float64Array, inputs: readonly HostTensor[], maps: readonly (Int32Array | undefined)[], e: number, types: readonly DType[]): number {
  switch (ins.op) {
    case "input": {
      const map = maps[ins.index];
      return inputs[ins.index]!.data[map ? map[e]! : e]!;
    }
    case "constant": return ins.value;
    case "unary": return applyUnary(ins.fn, regs[ins.a]!);
    case "binary": return applyBinary(ins.fn, regs[ins.a]!, regs[ins.b]!, types[ins.a]!);
    case "compare": return applyCompare(ins.fn, regs[ins.a]!, regs[ins.b]!);
    case "ternary": return ins.fn === "where" ? (regs[ins.a] !== 0 ? regs[ins.b]! : regs[ins.c]!) : clampValue(regs[ins.a]!, regs[ins.b]!, regs[ins.c]!);
    case "cast": return regs[ins.a]!;
  }
}

function reduceAxis(fn: ReduceFn, x: HostTensor, axis: number, dtype: DType): Float64Array {
  const [outer, size, inner] = around(x.shape, axis);
  const out = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = fn === "max" ? -Infinity : fn === "min" ? Infinity : 0;
      for (let j = 0; j < size; j++) {
        const v = x.data[(o * size + j) * inner + i]!;
        if (fn === "max") acc = applyBinary("max", acc, v, dtype);
        else if (fn === "min") acc = applyBinary("min", acc, v, dtype);
        else acc += v;
      }
      out[o * inner + i] = roundTo(dtype, fn === "mean" ? acc / size : acc);
    }
  return out;
}

/** Sink attention with the roundings of the builder's `attention` expansion (f32 scores and softmax). */
function sinkAttention(n: NodeOf<"sinkAttention">, ins: readonly HostTensor[]): Float64Array {
  const [q, k, v, qpos, kpos] = ins as [HostTensor, HostTensor, HostTensor, HostTensor, HostTensor];
  const sinks = n.attrs.hasSinks ? ins[5]! : undefined;
  const r = q.shape.length;
  const [t, h, d] = q.shape.slice(r - 3) as [number, number, number];
  const kvh = k.shape[r - 2]!;
  const rows = k.shape[r - 3]!; // rows of k and v per batch entry; the keys are the first s of them
  const s = kpos.shape[kpos.shape.length - 1]!;
  if (s > rows) throw new Error(`kpos has ${s} keys but k and v hold ${rows} rows`);
  const batch = numElements(q.shape.slice(0, r - 3));
  const g = h / kvh;
  const scale = Math.fround(n.attrs.scale);
  const out = new Float64Array(q.data.length);
  const scores = new Float64Array(s + 1);
  for (let bi = 0; bi < batch; bi++)
    for (let head = 0; head < h; head++) {
      const kvHead = Math.floor(head / g);
      for (let i = 0; i < t; i++) {
        const qp = qpos.data[bi * t + i]!;
        const qOff = ((bi * t + i) * h + head) * d;
        for (let j = 0; j < s; j++) {
          const kp = kpos.data[bi * s + j]!;
          const visible = kp >= 0 && kp <= qp && (n.attrs.window === 0 || qp - kp < n.attrs.window);
          if (!visible) {
            scores[j] = -Infinity;
            continue;
          }
          const kOff = ((bi * rows + j) * kvh + kvHead) * d;
          let acc = 0;
          for (let c = 0; c < d; c++) acc += q.data[qOff + c]! * k.data[kOff + c]!;
          scores[j] = Math.fround(Math.fround(acc) * scale);
        }
        sinkSoftmaxTimesValues(scores, s, sinks?.data[head], d, n.dtype, out, qOff, (j, c) => v.data[((bi * rows + j) * kvh + kvHead) * d + c]!);
      }
    }
  return out;
}

/**
 * The tail both attention ops share, for one query row and head: scores[0 .. s) (already scaled, −inf where
 * hidden) and the sink logit as one more column → softmax in f32 → Σ_j p_j · value(j, c) → out[qOff + c],
 * rounded to the op's dtype. `scores` needs room for s + 1 entries.
 */
function sinkSoftmaxTimesValues(
  scores: Float64Array, s: number, sink: number | undefined, d: number, dtype: DType, out: Float64Array, qOff: number, value: (j: number, c: number) => number,
): void {
  const cols = sink !== undefined ? s + 1 : s;
  if (sink !== undefined) scores[s] = Math.fround(sink);
  let m = -Infinity;
  for (let j = 0; j < cols; j++) m = applyBinary("max", m, scores[j]!, "f32");
  let sum = 0;
  for (let j = 0; j < cols; j++) {
    scores[j] = Math.fround(Math.exp(Math.fround(scores[j]! - m)));
    sum += scores[j]!;
  }
  const denom = Math.fround(sum);
  for (let c = 0; c < d; c++) {
    let acc = 0;
    for (let j = 0; j < s; j++) acc += Math.fround(scores[j]! / denom) * value(j, c);
    out[qOff + c] = roundTo(dtype, Math.fround(acc));
  }
}

/**
 * pagedAttention: sinkAttention over each token's keys gathered from the pool and the step, with the same
 * roundings and the same key order (pool positions ascending, then the step's tokens in order). Keys the
 * position rule hides are left out: in sinkAttention they add exactly 0 to every sum.
 */
function pagedAttention(n: NodeOf<"pagedAttention">, ins: readonly HostTensor[]): Float64Array {
  const [q, k, v, kPool, vPool, positions, tokenSeqs, contextLens, blockTable] = ins as HostTensor[] as [
    HostTensor, HostTensor, HostTensor, HostTensor, HostTensor, HostTensor, HostTensor, HostTensor, HostTensor,
  ];
  const sinks = n.attrs.hasSinks ? ins[ins.length - 1]! : undefined;
  const [tokens, h, d] = q.shape as [number, number, number];
  const kvh = k.shape[1]!;
  const poolRows = kPool.shape[0]!;
  const [seqs, width] = blockTable.shape as [number, number];
  const { blockSize, window } = n.attrs;
  const g = h / kvh;
  const scale = Math.fround(n.attrs.scale);
  const out = new Float64Array(q.data.length);
  const zeros = new Float64Array(d);
  for (let t = 0; t < tokens; t++) {
    const seq = tokenSeqs.data[t]!;
    const qp = positions.data[t]!;
    const visible = (kp: number) => kp >= 0 && kp <= qp && (window === 0 || qp - kp < window);
    // this token's visible keys: [k data, v data, offset] in key order
    const keys: [Float64Array, Float64Array, number][] = [];
    if (seq >= 0 && seq < seqs) {
      const cached = contextLens.data[seq]!;
      for (let j = 0; j < Math.min(cached, width * blockSize); j++) {
        if (!visible(j)) continue;
        const lb = Math.floor(j / blockSize);
        const block = lb < width ? blockTable.data[seq * width + lb]! : -1;
        const row = block * blockSize + (j % blockSize);
        keys.push(row >= 0 && row < poolRows && block >= 0 ? [kPool.data, vPool.data, row * kvh] : [zeros, zeros, -1]);
      }
    }
    for (let u = 0; u < tokens; u++) if (tokenSeqs.data[u] === seq && visible(positions.data[u]!)) keys.push([k.data, v.data, u * kvh]);
    const scores = new Float64Array(keys.length + 1);
    for (let head = 0; head < h; head++) {
      const kvHead = Math.floor(head / g);
      const qOff = (t * h + head) * d;
      const at = (rowBase: number) => (rowBase < 0 ? 0 : (rowBase + kvHead) * d);
      keys.forEach(([kd], j) => {
        const off = at(keys[j]![2]);
        let acc = 0;
        for (let c = 0; c < d; c++) acc += q.data[qOff + c]! * kd[off + c]!;
        scores[j] = Math.fround(Math.fround(acc) * scale);
      });
      sinkSoftmaxTimesValues(scores, keys.length, sinks?.data[head], d, n.dtype, out, qOff, (j, c) => keys[j]![1][at(keys[j]![2]) + c]!);
    }
  }
  return out;
}

/** The `sample` op on one row (ops.ts states the rule; weights and sums in f32 as the kernel keeps them). */
export function sampleRow(logits: ArrayLike<number>, temperature: number, topK: number, topP: number, uniform: number): number {
  const vocab = logits.length;
  let best = 0;
  for (let i = 0; i < vocab; i++) {
    const l = logits[i]!;
    if (Number.isNaN(l) || l === Infinity) return -1;
    if (l > logits[best]!) best = i;
  }
  if (!(temperature > 0)) return best;
  const max = logits[best]!;
  const t = Math.fround(temperature);
  const w = new Float64Array(vocab);
  for (let i = 0; i < vocab; i++) w[i] = Math.fround(Math.exp(Math.fround(Math.fround(logits[i]! - max) / t)));
  // the kept set, largest weights first (ties to the lower id)
  let order = Array.from({ length: vocab }, (_, i) => i);
  order.sort((a, b) => w[b]! - w[a]! || a - b);
  if (topK > 0 && topK < vocab) order = order.slice(0, topK);
  if (topP < 1) {
    let total = 0;
    for (const i of order) total = Math.fround(total + w[i]!);
    const target = Math.fround(Math.fround(topP) * total);
    let mass = 0;
    let kept = order.length;
    for (let j = 0; j < order.length; j++) {
      mass = Math.fround(mass + w[order[j]!]!);
      if (mass >= target) {
        kept = j + 1;
        break;
      }
    }
    order = order.slice(0, kept);
  }
  const keep = order.sort((a, b) => a - b);
  let sum = 0;
  for (const i of keep) sum = Math.fround(sum + w[i]!);
  const r = Math.fround(Math.fround(uniform) * sum);
  let run = 0;
  for (const i of keep) {
    run = Math.fround(run + w[i]!);
    if (run > r) return i;
  }
  return keep[keep.length - 1]!;
}

/**
 * `sample` over candidate columns: row[j] is the logit of token ids[j] (−1: an unused column). The candidates, in
 * id order, are sampled as a vocabulary of their own (sampleRow); the pick is mapped back to its token id.
 */
export function sampleCandidates(row: ArrayLike<number>, ids: ArrayLike<number>, temperature: number, topK: number, topP: number, uniform: number): number {
  const cols: number[] = [];
  for (let j = 0; j < row.length; j++) if (ids[j]! >= 0) cols.push(j);
  if (cols.length === 0) return -1;
  cols.sort((a, b) => ids[a]! - ids[b]!);
  const picked = sampleRow(cols.map((j) => row[j]!), temperature, topK, topP, uniform);
  return picked < 0 ? -1 : ids[cols[picked]!]!;
}

/** MoE with the roundings of the builder's `moe` expansion in x's dtype; with firstExpert, only the local experts add. */
function moeExperts(n: NodeOf<"moeExperts">, ins: readonly HostTensor[]): Float64Array {
  const dt = n.dtype;
  const x = ins[0]!;
  const [rw, rb] = [ins[1]!, ins[2]!];
  const [tokens, dm] = x.shape as [number, number];
  const e = ins[3]!.shape[0]!; // local experts (all of the router's, unless expert-parallel)
  const first = n.attrs.firstExpert ?? 0;
  const routed = rw.shape[0]!;
  const { topK, limit, alpha } = n.attrs;
  // expert weights as dense [E, in, out] row-major matrices, or dequantized [E, out, in]
  let gate: { w: Float64Array; transposed: boolean }, down: { w: Float64Array; transposed: boolean };
  let gateBias: HostTensor, downBias: HostTensor, twoI: number;
  if (n.attrs.weightFormat === "dense") {
    [gateBias, downBias] = [ins[4]!, ins[6]!];
    twoI = ins[3]!.shape[2]!;
    gate = { w: ins[3]!.data, transposed: false };
    down = { w: ins[5]!.data, transposed: false };
  } else {
    const [gBlk, gSc, gb, dBlk, dSc, db] = ins.slice(3) as HostTensor[];
    [gateBias, downBias] = [gb!, db!];
    twoI = gBlk!.shape[1]!;
    gate = { w: dequantRows(gBlk!.data, gSc!.data, e * twoI, dm / MXFP4_BLOCK, dt), transposed: true };
    down = { w: dequantRows(dBlk!.data, dSc!.data, e * dm, twoI / 2 / MXFP4_BLOCK, dt), transposed: true };
  }
  const inter = twoI / 2;
  const weightAt = (m: { w: Float64Array; transposed: boolean }, ex: number, rows: number, cols: number, i: number, o: number) =>
    m.transposed ? m.w[(ex * cols + o) * rows + i]! : m.w[(ex * rows + i) * cols + o]!;
  const out = new Float64Array(tokens * dm);
  const lim = roundTo(dt, limit);
  const negLim = roundTo(dt, -limit);
  const alphaR = roundTo(dt, alpha);
  const one = roundTo(dt, 1);
  for (let tk = 0; tk < tokens; tk++) {
    const xo = tk * dm;
    const logits = new Float64Array(routed);
    for (let ex = 0; ex < routed; ex++) {
      let acc = 0;
      for (let c = 0; c < dm; c++) acc += x.data[xo + c]! * rw.data[ex * dm + c]!;
      logits[ex] = roundTo(dt, roundTo(dt, acc) + roundTo(dt, rb.data[ex]!));
    }
    const picked = topkIndices(logits, 0, routed, topK);
    const weights = roundedSoftmax(picked.map((i) => logits[i]!), dt);
    const contributions: Float64Array[] = [];
    picked.forEach((global, j) => {
      const ex = global - first;
      if (ex < 0 || ex >= e) return; // another rank's expert
      const h = new Float64Array(inter);
      for (let c = 0; c < inter; c++) {
        const col = (o: number) => {
          let acc = 0;
          for (let i = 0; i < dm; i++) acc += x.data[xo + i]! * weightAt(gate, ex, dm, twoI, i, o);
          return roundTo(dt, roundTo(dt, acc) + roundTo(dt, gateBias.data[ex * twoI + o]!));
        };
        const g = roundTo(dt, applyBinary("min", col(2 * c), lim, dt));
        const u = roundTo(dt, clampValue(col(2 * c + 1), negLim, lim));
        const glu = roundTo(dt, g * roundTo(dt, applyUnary("sigmoid", roundTo(dt, g * alphaR))));
        h[c] = roundTo(dt, roundTo(dt, u + one) * glu);
      }
      const wj = roundTo(dt, weights[j]!);
      const y = new Float64Array(dm);
      for (let o = 0; o < dm; o++) {
        let acc = 0;
        for (let i = 0; i < inter; i++) acc += h[i]! * weightAt(down, ex, inter, dm, i, o);
        y[o] = roundTo(dt, roundTo(dt, roundTo(dt, acc) + roundTo(dt, downBias.data[ex * dm + o]!)) * wj);
      }
      contributions.push(y);
    });
    for (let o = 0; o < dm; o++) {
      let acc = 0;
      for (const y of contributions) acc += y[o]!;
      out[xo + o] = roundTo(dt, acc);
    }
  }
  return out;
}

// ---- driver --------------------------------------------------------------------------------------

/** A collective reached by one rank's evaluation: its node and this rank's operand; the evaluation resumes with its result. */
export interface CollectiveRequest {
  readonly node: CollectiveNode;
  readonly operand: HostTensor;
}

/**
 * Evaluates nodes given symbol values, inputs and params, yielding at every collective (in `seq` order) for the
 * rank set's result; returns the values of `roots`. `evaluateNodes` runs it alone, `interpretRanks` for a whole set.
 */
export function* evaluateSteps(roots: readonly Node[], ctx: InterpretContext, after?: (n: Node) => readonly Node[]): Generator<CollectiveRequest, HostTensor[], HostTensor> {
  const order = topoOrder(roots, collectiveOrder(roots, after));
  const remainingUses = new Map<Node, number>();
  for (const n of order) for (const i of n.inputs) remainingUses.set(i, (remainingUses.get(i) ?? 0) + 1);
  for (const r of roots) remainingUses.set(r, (remainingUses.get(r) ?? 0) + 1);
  const values = new Map<Node, HostTensor>();
  for (const n of order) {
    const ins = n.inputs.map((i) => values.get(i)!);
    const shape = evalShape(n.shape, ctx.symbols);
    let data: Float64Array;
    if (isCollectiveNode(n)) {
      const result = yield { node: n, operand: ins[0]! };
      if (result.dtype !== n.dtype || formatShape(result.shape) !== formatShape(shape)) throw new Error(`${n.op} #${n.attrs.seq} produced ${result.dtype}${formatShape(result.shape)} for ${n.dtype}${formatShape(shape)}`);
      data = result.data;
    } else {
      try {
        data = (EVALUATORS[n.op] as Evaluator<Op>)(n as NodeOf<Op>, ins, ctx, shape);
      } catch (err) {
        const where = n.site ? ` (built at ${n.site.file}:${n.site.line})` : "";
        throw new Error(`interpreting ${n.op}${where}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (data.length !== numElements(shape)) throw new Error(`interpreter bug: ${n.op} produced ${data.length} values for ${formatShape(shape)}`);
    values.set(n, { dtype: n.dtype, shape, data });
    // free what no later node reads: whole models run through here
    for (const i of n.inputs) {
      const left = remainingUses.get(i)! - 1;
      remainingUses.set(i, left);
      if (left === 0) values.delete(i);
    }
  }
  return roots.map((r) => values.get(r)!);
}

/** Evaluates nodes given symbol values, inputs and params; returns the values of `roots` (a collective is an error). */
export function evaluateNodes(roots: readonly Node[], ctx: InterpretContext): HostTensor[] {
  const run = evaluateSteps(roots, ctx);
  const step = run.next();
  if (!step.done) collectiveAlone(step.value.node);
  return step.value;
}

/** Binds symbol values from the actual shapes of an entry point's inputs. */
export function bindSymbols(graph: Graph, entryName: string, inputs: Readonly<Record<string, HostTensor>>): Record<string, number> {
  const entry = findEntry(graph, entryName);
  const values: Record<string, number> = {};
  for (const decl of entry.inputs) {
    const t = inputs[decl.name];
    if (!t) throw new Error(`entry ${entryName}: input ${decl.name} (${decl.dtype}${formatShape(decl.shape)}) was not provided`);
    if (t.dtype !== decl.dtype) throw new Error(`entry ${entryName}: input ${decl.name} is ${t.dtype}, expected ${decl.dtype}`);
    const err = bindShape(decl.shape, t.shape, values);
    if (err) throw new Error(`entry ${entryName}: input ${decl.name} ${formatShape(t.shape)}: ${err}`);
  }
  for (const [name, v] of Object.entries(values)) {
    const bound = graph.symbols[name];
    if (bound !== undefined && v > bound) throw new Error(`entry ${entryName}: symbol ${name} = ${v} exceeds its bound ${bound}`);
  }
  return values;
}

/** Runs one entry point of a graph on the CPU; returns its outputs by name (state updates are dropped). */
export function interpret(
  graph: Graph,
  entryName: string,
  inputs: Readonly<Record<string, HostTensor>>,
  params: Readonly<Record<string, HostTensor>>,
  states: Readonly<Record<string, HostTensor>> = {},
): Record<string, HostTensor> {
  return interpretStep(graph, entryName, inputs, params, states).outputs;
}

/** Runs one entry point of a graph on the CPU: its outputs, and the new values of the state it updates. */
export function interpretStep(
  graph: Graph,
  entryName: string,
  inputs: Readonly<Record<string, HostTensor>>,
  params: Readonly<Record<string, HostTensor>>,
  states: Readonly<Record<string, HostTensor>>,
): StepResult {
  const run = stepRun(graph, entryName, inputs, params, states);
  const step = run.next();
  if (!step.done) collectiveAlone(step.value.node);
  return step.value;
}

export interface StepResult {
  readonly outputs: Record<string, HostTensor>;
  readonly updates: Record<string, HostTensor>;
}

/**
 * One entry call of one rank's graph as a resumable evaluation: it yields at each collective (the rank's operand)
 * and resumes with the rank set's result. The fake CPU ranks of a process group drive it across processes.
 */
export function* stepRun(
  graph: Graph,
  entryName: string,
  inputs: Readonly<Record<string, HostTensor>>,
  params: Readonly<Record<string, HostTensor>>,
  states: Readonly<Record<string, HostTensor>>,
): Generator<CollectiveRequest, StepResult, HostTensor> {
  const entry = findEntry(graph, entryName);
  const symbols = bindSymbols(graph, entryName, inputs);
  // load-time symbols (state sized when loaded, a KV pool) take their values from the states given
  for (const decl of graph.states) {
    const t = states[decl.name];
    if (!t || !decl.shape.some((d) => typeof d === "string")) continue;
    const err = bindShape(decl.shape, t.shape, symbols);
    if (err) throw new Error(`state ${decl.name} ${formatShape(t.shape)}: ${err}`);
  }
  const results = yield* evaluateSteps(entryResults(entry), { symbols, inputs, params, states });
  const outputs: Record<string, HostTensor> = {};
  const updates: Record<string, HostTensor> = {};
  entry.outputs.forEach((o, i) => (outputs[o.name] = results[i]!));
  entry.updates.forEach((u, i) => (updates[u.name] = results[entry.outputs.length + i]!));
  return { outputs, updates };
}

/**
 * Runs one entry point of every graph of a rank set together (simulated ranks): rank r's graph on its own params and
 * states, every rank on the same entry inputs, each collective combined across the ranks when all of them reach it.
 */
export function interpretRanks(
  graphs: readonly Graph[],
  entryName: string,
  inputs: Readonly<Record<string, HostTensor>>,
  params: readonly Readonly<Record<string, HostTensor>>[],
  states: readonly Readonly<Record<string, HostTensor>>[] = [],
): StepResult[] {
  if (params.length !== graphs.length) throw new Error(`interpretRanks: ${graphs.length} rank graphs but ${params.length} parameter sets`);
  const runs = graphs.map((g, r) => stepRun(g, entryName, inputs, params[r]!, states[r] ?? {}));
  let resume: (HostTensor | undefined)[] = graphs.map(() => undefined);
  for (;;) {
    const steps = runs.map((run, r) => (resume[r] === undefined ? run.next() : run.next(resume[r]!)));
    const finished = steps.filter((s) => s.done).length;
    if (finished === steps.length) return steps.map((s) => s.value as StepResult);
    const waiting = steps.map((s, r) => (s.done ? `rank ${r} finished` : `rank ${r} at ${s.value.node.op} #${s.value.node.attrs.seq}`));
    if (finished > 0) throw new Error(`the ranks disagree on their collectives: ${waiting.join(", ")}`);
    const requests = steps.map((s) => s.value as CollectiveRequest);
    const head = requests[0]!.node;
    if (requests.some((q) => q.node.op !== head.op || q.node.attrs.seq !== head.attrs.seq)) throw new Error(`the ranks disagree on their collectives: ${waiting.join(", ")}`);
    resume = combineCollective(head, requests.map((q) => q.operand));
  }
}
