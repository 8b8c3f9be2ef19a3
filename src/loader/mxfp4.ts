// MXFP4 quantization (OCP Microscaling Formats v1.0, FP4 E2M1 elements with an E8M0 scale per 32 values), in the
// layout of the gpt-oss checkpoints:
//
//   values [..., K]  ──▶  blocks [..., K/32, 16] u8   byte j of a block = element 2j (low nibble) | element 2j+1 (high)
//                         scales [..., K/32]     u8   E8M0: the block's values are E2M1 · 2^(scale − 127)
//
// Conversion follows the spec's algorithm (section 6.3): the shared exponent is floor(log2(max|v|)) − emax_elem
// with emax_elem = 2 for E2M1 (largest value 6 = 1.5·2²), clamped to the E8M0 range; each value divided by
// 2^exponent is rounded to nearest-even E2M1, saturating at ±6. An all-zero block gets the smallest scale (code 0).
// E2M1 has no NaN or Inf, so a block holding any NaN or ±Inf gets the NaN scale (code 255) and decodes to all NaN,
// as the spec's reference implementation (microxcaling) does.
import { MXFP4_BLOCK, decodeE2m1, decodeE8m0, f32Bits } from "../ir/dtype.js";

/** Bytes per block of 32 E2M1 values. */
export const MXFP4_BLOCK_BYTES = MXFP4_BLOCK / 2;
/** E8M0 code of NaN. */
export const E8M0_NAN = 255;
/** Exponent of the largest E2M1 value (6 = 1.5·2²). */
const E2M1_EMAX = 2;
const E8M0_BIAS = 127;

export interface Mxfp4Tensor {
  readonly blocks: Uint8Array;
  readonly scales: Uint8Array;
}

/** Shapes of the blocks and scales tensors that hold values of `shape` (last axis a multiple of 32). */
export function mxfp4Shapes(shape: readonly number[]): { readonly blocks: number[]; readonly scales: number[] } {
  const k = shape[shape.length - 1];
  if (shape.length === 0 || k === undefined) throw new RangeError("MXFP4 needs at least one axis");
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new RangeError(`invalid shape [${shape.join(", ")}]`);
  if (k % MXFP4_BLOCK !== 0) {
    throw new RangeError(`MXFP4 blocks run along the last axis, whose size (${k}) must be a multiple of ${MXFP4_BLOCK}`);
  }
  const lead = shape.slice(0, -1);
  return { blocks: [...lead, k / MXFP4_BLOCK, MXFP4_BLOCK_BYTES], scales: [...lead, k / MXFP4_BLOCK] };
}

/** floor(log2(|x|)) of a finite, non-zero f32 value, exactly (from its bits, subnormals included). */
function floorLog2F32(x: number): number {
  const bits = f32Bits(x);
  const exponent = (bits >>> 23) & 0xff;
  if (exponent !== 0) return exponent - 127;
  const mantissa = bits & 0x7fffff; // subnormal: mantissa · 2^-149
  return 31 - Math.clz32(mantissa) - 149;
}

/** The E8M0 code the spec assigns to a block whose largest magnitude is `maxAbs` (finite, ≥ 0). */
export function mxfp4ScaleCode(maxAbs: number): number {
  if (maxAbs === 0) return 0;
  const exponent = floorLog2F32(maxAbs) - E2M1_EMAX;
  // f32 magnitudes stay below 2^128, so the exponent is at most 125: only the lower clamp can act.
  return Math.min(Math.max(exponent + E8M0_BIAS, 0), 254);
}

/**
 * E2M1 code of `x` (already divided by the block scale): round to nearest, ties to even, saturating at ±6.
 * Negative inputs (−0 and values that round to zero included) keep their sign bit.
 */
export function encodeE2m1(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 8 : 0;
  const a = Math.abs(x);
  // Midpoints between neighbours 0|.5|1|1.5|2|3|4|6 are .25 .75 1.25 1.75 2.5 3.5 5; a tie goes to the even code.
  const code =
    a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return sign | code;
}

/** Quantizes `values` (row-major, `shape`) to MXFP4 blocks along the last axis. */
export function quantizeMxfp4(values: Float32Array, shape: readonly number[]): Mxfp4Tensor {
  mxfp4Shapes(shape); // validates the shape
  const count = shape.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new RangeError(`${values.length} values do not fill shape [${shape.join(", ")}] (${count})`);
  const numBlocks = count / MXFP4_BLOCK;
  const blocks = new Uint8Array(numBlocks * MXFP4_BLOCK_BYTES);
  const scales = new Uint8Array(numBlocks);
  for (let b = 0; b < numBlocks; b++) {
    const base = b * MXFP4_BLOCK;
    let maxAbs = 0;
    let special = false;
    for (let i = 0; i < MXFP4_BLOCK; i++) {
      const a = Math.abs(values[base + i]!);
      if (!(a <= Number.MAX_VALUE)) special = true; // NaN or ±Inf
      else if (a > maxAbs) maxAbs = a;
    }
    if (special) {
      scales[b] = E8M0_NAN; // element codes stay 0: a NaN scale makes every value NaN
      continue;
    }
    const code = mxfp4ScaleCode(maxAbs);
    scales[b] = code;
    const inverseScale = 2 ** (E8M0_BIAS - code); // exact: a power of two within f64 range
    const out = b * MXFP4_BLOCK_BYTES;
    for (let j = 0; j < MXFP4_BLOCK_BYTES; j++) {
      const lo = encodeE2m1(values[base + 2 * j]! * inverseScale);
      const hi = encodeE2m1(values[base + 2 * j + 1]! * inverseScale);
      blocks[out + j] = lo | (hi << 4);
    }
  }
  return { blocks, scales };
}

/** Expands MXFP4 blocks and scales back to f32 values of `shape` (the shape of the unquantized tensor). */
export function dequantizeMxfp4(blocks: Uint8Array, scales: Uint8Array, shape: readonly number[]): Float32Array {
  const shapes = mxfp4Shapes(shape);
  const count = shape.reduce((a, b) => a * b, 1);
  const numBlocks = count / MXFP4_BLOCK;
  if (scales.length !== numBlocks) {
    throw new RangeError(`scales hold ${scales.length} bytes but shape [${shapes.scales.join(", ")}] needs ${numBlocks}`);
  }
  if (blocks.length !== numBlocks * MXFP4_BLOCK_BYTES) {
    throw new RangeError(`blocks hold ${blocks.length} bytes but shape [${shapes.blocks.join(", ")}] needs ${numBlocks * MXFP4_BLOCK_BYTES}`);
  }
  const out = new Float32Array(count);
  for (let b = 0; b < numBlocks; b++) {
    const scale = decodeE8m0(scales[b]!);
    const base = b * MXFP4_BLOCK;
    const at = b * MXFP4_BLOCK_BYTES;
    for (let j = 0; j < MXFP4_BLOCK_BYTES; j++) {
      const byte = blocks[at + j]!;
      out[base + 2 * j] = decodeE2m1(byte & 0xf) * scale;
      out[base + 2 * j + 1] = decodeE2m1(byte >> 4) * scale;
    }
  }
  return out;
}
