// Host-side tensors: what the CPU interpreter computes on and what tests and loaders exchange.
// Values are kept as f64 but always hold exactly what their dtype can represent (see roundTo).

import { type DType, bf16Bits, bf16FromBits, dtypeBytes, f16Bits, f16FromBits, roundTo } from "./dtype.js";
import { formatShape, numElements } from "./shape.js";

export interface HostTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** A host tensor of `dtype` whose values are rounded to what that dtype holds. */
export function hostTensor(dtype: DType, shape: readonly number[], values: ArrayLike<number>): HostTensor {
  const n = numElements(shape);
  if (values.length !== n) throw new Error(`a ${dtype}${formatShape(shape)} tensor needs ${n} values, got ${values.length}`);
  // values already held in the dtype (the engine's per-step i32 block tables): nothing to round, copy them whole
  if ((dtype === "i32" && values instanceof Int32Array) || (dtype === "f32" && values instanceof Float32Array)) return { dtype, shape: [...shape], data: Float64Array.from(values) };
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = roundTo(dtype, values[i]!);
  return { dtype, shape: [...shape], data };
}

export function zerosTensor(dtype: DType, shape: readonly number[]): HostTensor {
  return { dtype, shape: [...shape], data: new Float64Array(numElements(shape)) };
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** A small deterministic PRNG (mulberry32) so tests and random weights are reproducible from a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform random values in [lo, hi) rounded to dtype (integers: lo..hi-1). */
export function randomTensor(dtype: DType, shape: readonly number[], rand: () => number, lo = -1, hi = 1): HostTensor {
  const n = numElements(shape);
  const v = new Float64Array(n);
  const integral = dtype === "i32" || dtype === "i64" || dtype === "u8" || dtype === "bool" || dtype === "fp4e2m1x2" || dtype === "e8m0";
  for (let i = 0; i < n; i++) v[i] = integral ? Math.floor(lo + rand() * (hi - lo)) : lo + rand() * (hi - lo);
  return hostTensor(dtype, shape, v);
}

// ---- raw bytes (device buffers, safetensors) -------------------------------------------------

/** The little-endian bytes of a tensor in its dtype's storage format (bf16/f16 as bit patterns). */
export function tensorToBytes(t: HostTensor): Uint8Array {
  const n = t.data.length;
  // i32 and f32 convert whole through a typed array (the same ToInt32 / round-to-f32 as the DataView path), so a
  // step's block tables are not encoded element by element; the typed arrays are little-endian as the DataView is
  // on every platform Node runs CUDA on
  if (t.dtype === "i32") return new Uint8Array(Int32Array.from(t.data).buffer);
  if (t.dtype === "f32") return new Uint8Array(Float32Array.from(t.data).buffer);
  const bytes = new Uint8Array(n * dtypeBytes(t.dtype));
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < n; i++) {
    const v = t.data[i]!;
    switch (t.dtype) {
      case "bf16": view.setUint16(2 * i, bf16Bits(v), true); break;
      case "f16": view.setUint16(2 * i, f16Bits(v), true); break;
      case "i64": view.setBigInt64(8 * i, BigInt(v), true); break;
      case "u8": case "bool": case "fp4e2m1x2": case "e8m0": bytes[i] = v; break;
    }
  }
  return bytes;
}

/** A tensor read back from its storage bytes. */
export function tensorFromBytes(dtype: DType, shape: readonly number[], bytes: Uint8Array): HostTensor {
  const n = numElements(shape);
  const size = dtypeBytes(dtype);
  if (bytes.byteLength !== n * size) throw new Error(`a ${dtype}${formatShape(shape)} tensor is ${n * size} bytes, got ${bytes.byteLength}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case "f32": data[i] = view.getFloat32(4 * i, true); break;
      case "bf16": data[i] = bf16FromBits(view.getUint16(2 * i, true)); break;
      case "f16": data[i] = f16FromBits(view.getUint16(2 * i, true)); break;
      case "i32": data[i] = view.getInt32(4 * i, true); break;
      case "i64": data[i] = Number(view.getBigInt64(8 * i, true)); break;
      case "u8": case "bool": case "fp4e2m1x2": case "e8m0": data[i] = bytes[i]!; break;
    }
  }
  return { dtype, shape: [...shape], data };
}

/** The part of `t` in `ranges` along each listed axis (ranges ascending; other axes whole): a rank's slice of a weight. */
export function sliceTensor(t: HostTensor, axes: readonly { readonly axis: number; readonly ranges: readonly (readonly [number, number])[] }[]): HostTensor {
  let cur = t;
  for (const { axis, ranges } of axes) {
    const shape = cur.shape;
    const outer = numElements(shape.slice(0, axis));
    const size = shape[axis]!;
    const inner = numElements(shape.slice(axis + 1));
    const kept = ranges.reduce((n, [s, e]) => n + (e - s), 0);
    const data = new Float64Array(outer * kept * inner);
    let at = 0;
    for (let o = 0; o < outer; o++) {
      for (const [s, e] of ranges) {
        if (s < 0 || e > size || s > e) throw new RangeError(`slice [${s}, ${e}) of axis ${axis} is outside ${formatShape(shape)}`);
        data.set(cur.data.subarray((o * size + s) * inner, (o * size + e) * inner), at);
        at += (e - s) * inner;
      }
    }
    cur = { dtype: cur.dtype, shape: shape.map((d, i) => (i === axis ? kept : d)), data };
  }
  return cur;
}
