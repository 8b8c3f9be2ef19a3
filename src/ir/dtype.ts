// Element types of the IR, their sizes, and the exact rounding the CPU reference applies for each.
//
// `fp4e2m1x2` and `e8m0` are storage-only: a tensor of them is data for `dequantMxfp4`, never arithmetic.
// Values follow the OCP Microscaling (MX) v1.0 specification: E2M1 is 1 sign, 2 exponent, 1 mantissa
// bit (bias 1, no inf/NaN); E8M0 is an unsigned power-of-two exponent with bias 127, code 255 = NaN.

export const DTYPES = ["f32", "f16", "bf16", "i32", "i64", "u8", "bool", "fp4e2m1x2", "e8m0"] as const;
export type DType = (typeof DTYPES)[number];

export type DTypeKind = "float" | "int" | "bool" | "storage";

interface DTypeInfo {
  readonly bytes: number;
  readonly kind: DTypeKind;
}

const DTYPE_INFO: { readonly [D in DType]: DTypeInfo } = {
  f32: { bytes: 4, kind: "float" },
  f16: { bytes: 2, kind: "float" },
  bf16: { bytes: 2, kind: "float" },
  i32: { bytes: 4, kind: "int" },
  i64: { bytes: 8, kind: "int" },
  u8: { bytes: 1, kind: "int" },
  bool: { bytes: 1, kind: "bool" },
  fp4e2m1x2: { bytes: 1, kind: "storage" },
  e8m0: { bytes: 1, kind: "storage" },
};

export function isDType(s: string): s is DType {
  return (DTYPES as readonly string[]).includes(s);
}
export function dtypeBytes(d: DType): number {
  return DTYPE_INFO[d].bytes;
}
export function dtypeKind(d: DType): DTypeKind {
  return DTYPE_INFO[d].kind;
}
export const isFloat = (d: DType): boolean => DTYPE_INFO[d].kind === "float";
export const isInteger = (d: DType): boolean => DTYPE_INFO[d].kind === "int";
/** Types that elementwise arithmetic accepts. */
export const isNumeric = (d: DType): boolean => DTYPE_INFO[d].kind === "float" || DTYPE_INFO[d].kind === "int";

// ---- rounding -------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The f32 bit pattern of `x` (after rounding x to f32). */
export function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}
export function f32FromBits(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0]!;
}

/** bf16 bits of `x`: round x to f32 first (as a kernel holding an f32 would), then to nearest-even bf16. NaN stays a quiet NaN. */
export function bf16Bits(x: number): number {
  const bits = f32Bits(x);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + roundingBias) >>> 16) & 0xffff;
}
export function bf16FromBits(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}
/** Rounds to the nearest bf16 value, ties to even; subnormals are kept (bf16 shares f32's exponent range). */
export function roundBf16(x: number): number {
  return bf16FromBits(bf16Bits(x));
}

/** f16 bits of `x`, round-to-nearest-even from the f64 value, with subnormals, overflow to inf, NaN kept. */
export function f16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  if (a >= 65520) return sign | 0x7c00; // halfway between 65504 and 2^16 and above round to inf
  if (a < 2 ** -14) {
    // subnormal: units of 2^-24, ties to even
    const q = roundHalfEven(a / 2 ** -24);
    return sign | q; // q == 1024 carries into the smallest normal, which is the right encoding
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}
export function f16FromBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}
export function roundF16(x: number): number {
  return f16FromBits(f16Bits(x));
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Integer conversion as C does it for in-range values (truncation toward zero); out-of-range wraps like a two's-complement store. */
function toInt32(x: number): number {
  if (!Number.isFinite(x)) return 0;
  return Math.trunc(x) | 0;
}

/** The value a tensor element of dtype `d` holds after storing `x` into it. */
export function roundTo(d: DType, x: number): number {
  switch (d) {
    case "f32":
      return Math.fround(x);
    case "bf16":
      return roundBf16(x);
    case "f16":
      return roundF16(x);
    case "i32":
      return toInt32(x);
    case "i64":
      return Number.isFinite(x) ? Math.trunc(x) : 0;
    case "u8":
    case "fp4e2m1x2":
    case "e8m0":
      return Number.isFinite(x) ? Math.trunc(x) & 0xff : 0;
    case "bool":
      return x !== 0 ? 1 : 0; // as C's (x != 0): NaN is true
  }
}

// ---- MX (microscaling) element and scale formats ----------------------------------------------

/** E2M1 value of each 4-bit code (OCP MX v1.0, table for FP4 E2M1). Code 8 is negative zero. */
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

export function decodeE2m1(code: number): number {
  return E2M1_VALUES[code & 0xf]!;
}

/** E8M0 scale: 2^(code − 127); code 255 is NaN. */
export function decodeE8m0(code: number): number {
  const c = code & 0xff;
  return c === 255 ? NaN : 2 ** (c - 127);
}

/** Number of values an MXFP4 block shares one scale across. */
export const MXFP4_BLOCK = 32;
