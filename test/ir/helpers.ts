// Shared helpers of the interpreter tests: running a one-entry model, comparing results, and the
// independent f64 references (bf16 rounding, MX decoding, attention, MoE) the tests check against.
// Nothing here calls the interpreter's or the builder's arithmetic to compute an expectation.

import { assert } from "vitest";
import { type ModelBuilder, type Tensor, defineModel } from "../../src/ir/builder.js";
import type { DType } from "../../src/ir/dtype.js";
import { type HostTensor, randomTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import type { Shape } from "../../src/ir/shape.js";

/** The sizes a variable dim takes in every test. */
export const SIZES = [1, 3, 50] as const;

/** A fresh deterministic generator per test: seeded from the test's label and size. */
export function rngFor(label: string, n = 0): () => number {
  let h = 0x811c9dc5;
  for (const ch of `${label}#${n}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return seededRandom(h >>> 0);
}

export function rand(dtype: DType, shape: readonly number[], r: () => number, lo = -1, hi = 1): HostTensor {
  return randomTensor(dtype, shape, r, lo, hi);
}

export interface RunOptions {
  /** Declared (possibly symbolic) shapes of inputs; an input without one is declared with its actual shape. */
  readonly shapes?: Readonly<Record<string, Shape>>;
  /** Symbol bounds; default { n: 64, s: 64, m: 64 }. */
  readonly bounds?: Readonly<Record<string, number>>;
  readonly params?: Readonly<Record<string, HostTensor>>;
}

/**
 * Defines a model with one entry `main` whose inputs are `inputs` and whose outputs are what `body`
 * returns, runs it through `interpret` and returns the outputs by name.
 */
export function runModel<I extends string, O extends string>(
  inputs: Readonly<Record<I, HostTensor>>,
  body: (b: ModelBuilder, x: Readonly<Record<I, Tensor>>) => Readonly<Record<O, Tensor>>,
  opts: RunOptions = {},
): Record<O, HostTensor> {
  const graph = defineModel("test", (b) => {
    for (const [name, max] of Object.entries(opts.bounds ?? { n: 64, s: 64, m: 64 })) b.sym(name, max);
    b.entry("main", (e) => {
      const x = {} as Record<I, Tensor>;
      for (const name of Object.keys(inputs) as I[]) x[name] = e.input(name, inputs[name].dtype, opts.shapes?.[name] ?? inputs[name].shape);
      const outs = body(b, x);
      for (const name of Object.keys(outs) as O[]) e.output(name, outs[name]);
    });
  });
  return interpret(graph, "main", inputs, opts.params ?? {}) as Record<O, HostTensor>;
}

// ---- comparisons -------------------------------------------------------------------------------

/** Element-for-element identity (Object.is: NaN equals NaN, +0 differs from −0 unless `zeroSign` is false). */
export function expectIdentical(actual: ArrayLike<number>, expected: ArrayLike<number>, what = "value", zeroSign = true): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Object.is(a, e) || (!zeroSign && a === 0 && e === 0)) continue;
    assert.fail(`${what}[${i}]: got ${a}, expected ${e}`);
  }
}

/** |actual − expected| <= tol(i, expected) for every element (NaN only matches NaN). */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: (e: number, i: number) => number, what = "value"): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (Number.isNaN(e) ? Number.isNaN(a) : a === e || Math.abs(a - e) <= tol(e, i)) continue;
    assert.fail(`${what}[${i}]: got ${a}, expected ${e} (tolerance ${tol(e, i)})`);
  }
}

/** Every value is one the dtype can hold. */
export function expectRepresentable(dtype: "f32" | "bf16", data: ArrayLike<number>): void {
  const round = dtype === "f32" ? Math.fround : bf16;
  for (let i = 0; i < data.length; i++) if (!Object.is(round(data[i]!), data[i]!)) assert.fail(`[${i}] = ${data[i]} is not a ${dtype} value`);
}

// ---- independent rounding and MX decoding ----------------------------------------------------------

/**
 * Nearest bf16 value of x (after rounding x to f32), ties to an even last mantissa bit, computed
 * arithmetically (not from the bit pattern): bf16 keeps 8 significant bits above 2^−126 and steps of
 * 2^−133 below it; magnitudes that round to 2^128 or more become infinite.
 */
export function bf16(x: number): number {
  const v = Math.fround(x);
  if (!Number.isFinite(v) || v === 0) return v;
  const a = Math.abs(v);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const q = a / ulp;
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const out = r * ulp;
  return Math.sign(v) * (out >= 2 ** 128 ? Infinity : out);
}

/** The value a float element of `dtype` holds after storing x. */
export function roundFloat(dtype: DType, x: number): number {
  if (dtype === "f32") return Math.fround(x);
  if (dtype === "bf16") return bf16(x);
  throw new Error(`no test rounding for ${dtype}`);
}

/** E2M1 from its bits (OCP MX v1.0): sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0; exponent 0 is subnormal (m · 0.5). */
export function e2m1(code: number): number {
  const sign = code & 8 ? -1 : 1;
  const e = (code >> 1) & 3;
  const m = code & 1;
  return sign * (e === 0 ? m * 0.5 : 2 ** (e - 1) * (1 + m / 2));
}

/** E8M0: 2^(code − 127); 255 is NaN. */
export function e8m0(code: number): number {
  return code === 255 ? NaN : 2 ** (code - 127);
}

/** Dequantized rows [rows, nb·32] of blocks [rows, nb, 16] (low nibble = even element) and scales [rows, nb], in f64. */
export function decodeMxfp4(blocks: ArrayLike<number>, scales: ArrayLike<number>, rows: number, nb: number): Float64Array {
  const out = new Float64Array(rows * nb * 32);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < nb; b++)
      for (let j = 0; j < 16; j++) {
        const byte = blocks[(r * nb + b) * 16 + j]!;
        const s = e8m0(scales[r * nb + b]!);
        out[r * nb * 32 + b * 32 + 2 * j] = e2m1(byte % 16) * s;
        out[r * nb * 32 + b * 32 + 2 * j + 1] = e2m1(Math.floor(byte / 16)) * s;
      }
  return out;
}

// ---- f64 references of the gpt-oss building blocks ------------------------------------------------

/** RMSNorm over the last dim d: w · x / sqrt(mean(x²) + eps), in f64. */
export function refRmsNorm(x: ArrayLike<number>, w: ArrayLike<number>, d: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j]! ** 2;
    const denom = Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) out[r * d + j] = (w[j]! * x[r * d + j]!) / denom;
  }
  return out;
}

/** gpt-oss clamped SwiGLU of one (gate, up) pair. */
export function refSwiglu(gate: number, up: number, limit: number, alpha: number): number {
  const g = Math.min(gate, limit);
  const u = Math.max(Math.min(up, limit), -limit);
  return (u + 1) * g * (1 / (1 + Math.exp(-alpha * g)));
}

/** The k largest of `row`, descending; NaN ranks highest, ties go to the lower index (selection, O(k·n)). */
export function refTopk(row: ArrayLike<number>, k: number): number[] {
  const beats = (i: number, j: number): boolean => {
    const [a, b] = [row[i]!, row[j]!];
    if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && (!Number.isNaN(b) || i < j);
    return a > b || (a === b && i < j);
  };
  const picked: number[] = [];
  for (let p = 0; p < k; p++) {
    let best = -1;
    for (let i = 0; i < row.length; i++) if (!picked.includes(i) && (best < 0 || beats(i, best))) best = i;
    picked.push(best);
  }
  return picked;
}

export interface AttentionDims {
  readonly batch: number;
  readonly t: number;
  readonly h: number;
  readonly s: number;
  readonly kvh: number;
  readonly d: number;
}

/**
 * Attention in f64: head h reads kv head floor(h / (H/KVH)); key j is visible to query i when
 * kpos[j] >= 0 && kpos[j] <= qpos[i] && (window == 0 || qpos[i] − kpos[j] < window); softmax over the
 * visible scaled scores plus, with sinks, the column exp(sink_h) in the denominator only.
 * Returns the output [batch, t, h, d] and the sink's share of each row [batch, t, h].
 */
export function refAttention(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, qpos: ArrayLike<number>, kpos: ArrayLike<number>,
  dims: AttentionDims, scale: number, window: number, sinks?: ArrayLike<number>,
): { out: Float64Array; sinkShare: Float64Array } {
  const { batch, t, h, s, kvh, d } = dims;
  const out = new Float64Array(batch * t * h * d);
  const sinkShare = new Float64Array(batch * t * h);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < t; i++)
      for (let head = 0; head < h; head++) {
        const kvHead = Math.floor(head / (h / kvh));
        const qp = qpos[b * t + i]!;
        const scores: number[] = [];
        for (let j = 0; j < s; j++) {
          const kp = kpos[b * s + j]!;
          if (!(kp >= 0 && kp <= qp && (window === 0 || qp - kp < window))) {
            scores.push(-Infinity);
            continue;
          }
          let dot = 0;
          for (let c = 0; c < d; c++) dot += q[((b * t + i) * h + head) * d + c]! * k[((b * s + j) * kvh + kvHead) * d + c]!;
          scores.push(dot * scale);
        }
        const sink = sinks ? sinks[head]! : -Infinity;
        const m = Math.max(sink, ...scores);
        let denom = Math.exp(sink - m);
        for (const sc of scores) denom += Math.exp(sc - m);
        sinkShare[(b * t + i) * h + head] = Math.exp(sink - m) / denom;
        for (let j = 0; j < s; j++) {
          const p = Math.exp(scores[j]! - m) / denom;
          if (p === 0) continue;
          for (let c = 0; c < d; c++) {
            const at = ((b * t + i) * h + head) * d + c;
            out[at] = out[at]! + p * v[((b * s + j) * kvh + kvHead) * d + c]!;
          }
        }
      }
  return { out, sinkShare };
}

export interface MoeReference {
  readonly x: ArrayLike<number>; // [T, D]
  readonly routerW: ArrayLike<number>; // [E, D]
  readonly routerB: ArrayLike<number>; // [E]
  /** gate_up weight of expert e from input i to output o (2I outputs), and the down weight (I inputs → D outputs). */
  readonly gateUp: (e: number, i: number, o: number) => number;
  readonly gateUpB: ArrayLike<number>; // [E, 2I]
  readonly down: (e: number, i: number, o: number) => number;
  readonly downB: ArrayLike<number>; // [E, D]
  readonly tokens: number;
  readonly hidden: number;
  readonly experts: number;
  readonly inter: number;
  readonly topK: number;
  readonly limit: number;
  readonly alpha: number;
  /**
   * Rounding of the router logits before routing. Routing is discrete: where two logits are within a
   * rounding of each other, the f64 choice may differ from the one the graph's dtype makes, so the
   * reference routes on logits rounded to the graph's dtype (documented: linear's result has x's dtype)
   * and computes everything else in f64.
   */
  readonly roundLogit: (x: number) => number;
}

/** gpt-oss MoE in f64: router (linear + bias) → top-k → softmax over the k → clamped-SwiGLU experts → weighted sum. */
export function refMoe(m: MoeReference): Float64Array {
  const { tokens, hidden: dm, experts, inter, topK } = m;
  const out = new Float64Array(tokens * dm);
  for (let t = 0; t < tokens; t++) {
    const logits: number[] = [];
    for (let e = 0; e < experts; e++) {
      let acc = 0;
      for (let i = 0; i < dm; i++) acc += m.x[t * dm + i]! * m.routerW[e * dm + i]!;
      logits.push(m.roundLogit(m.roundLogit(acc) + m.roundLogit(m.routerB[e]!)));
    }
    const picked = refTopk(logits, topK);
    const top = Math.max(...picked.map((e) => logits[e]!));
    const ex = picked.map((e) => Math.exp(logits[e]! - top));
    const z = ex.reduce((a, b) => a + b, 0);
    picked.forEach((e, slot) => {
      const weight = ex[slot]! / z;
      const h = new Float64Array(inter);
      for (let c = 0; c < inter; c++) {
        let gate = m.gateUpB[e * 2 * inter + 2 * c]!;
        let up = m.gateUpB[e * 2 * inter + 2 * c + 1]!;
        for (let i = 0; i < dm; i++) {
          gate += m.x[t * dm + i]! * m.gateUp(e, i, 2 * c);
          up += m.x[t * dm + i]! * m.gateUp(e, i, 2 * c + 1);
        }
        h[c] = refSwiglu(gate, up, m.limit, m.alpha);
      }
      for (let o = 0; o < dm; o++) {
        let y = m.downB[e * dm + o]!;
        for (let c = 0; c < inter; c++) y += h[c]! * m.down(e, c, o);
        out[t * dm + o] = out[t * dm + o]! + weight * y;
      }
    });
  }
  return out;
}

/** Largest |value| of an array (for tolerances relative to a tensor's scale). */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
