import { describe, expect, it } from "vitest";
import {
  bf16Bits,
  bf16FromBits,
  decodeE2m1,
  decodeE8m0,
  dtypeBytes,
  DTYPES,
  E2M1_VALUES,
  f16Bits,
  f16FromBits,
  roundBf16,
  roundF16,
  roundTo,
} from "../../src/ir/dtype.js";

const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;

describe("bf16 rounding", () => {
  it("keeps exactly representable values", () => {
    for (const v of [0, 1, -1, 0.5, 3, 1.5, 2 ** -126, 2 ** 127, -65536]) expect(roundBf16(v)).toBe(v);
  });
  it("rounds to nearest, ties to even", () => {
    // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: the even mantissa (1) wins
    expect(roundBf16(1 + 2 ** -8)).toBe(1);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up
    expect(roundBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
    // just above the halfway point rounds up
    expect(roundBf16(f32(0x3f808001))).toBe(1 + 2 ** -7);
    // just below rounds down
    expect(roundBf16(f32(0x3f807fff))).toBe(1);
    expect(roundBf16(-(1 + 2 ** -8))).toBe(-1);
  });
  it("keeps subnormals and rounds them to even", () => {
    const smallest = f32(0x00010000); // smallest bf16 subnormal
    expect(roundBf16(smallest)).toBe(smallest);
    expect(bf16Bits(f32(0x00008000))).toBe(0x0000); // tie between 0 and the smallest subnormal: even (0)
    expect(bf16Bits(f32(0x00018000))).toBe(0x0002); // tie between 1 and 2 ulps: even (2)
    expect(bf16Bits(f32(0x00008001))).toBe(0x0001);
  });
  it("overflows to infinity past the largest finite value and keeps inf", () => {
    expect(bf16Bits(f32(0x7f7fffff))).toBe(0x7f80); // f32 max rounds up to inf
    expect(bf16FromBits(0x7f7f)).toBe(3.3895313892515355e38);
    expect(roundBf16(Infinity)).toBe(Infinity);
    expect(roundBf16(-Infinity)).toBe(-Infinity);
  });
  it("keeps NaN a NaN (never rounds it into inf)", () => {
    expect(Number.isNaN(roundBf16(NaN))).toBe(true);
    const nanWithLowPayload = f32(0x7f800001);
    expect(bf16Bits(nanWithLowPayload) & 0x7f80).toBe(0x7f80);
    expect(bf16Bits(nanWithLowPayload) & 0x7f).not.toBe(0);
  });
  it("keeps the sign of zero", () => {
    expect(Object.is(roundBf16(-0), -0)).toBe(true);
  });
});

describe("f16 rounding", () => {
  it("round-trips every finite f16 bit pattern", () => {
    const mismatches: number[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) !== 0x7c00 && f16Bits(f16FromBits(bits)) !== bits) mismatches.push(bits);
    }
    expect(mismatches).toEqual([]);
  });
  it("rounds ties to even, handles subnormals, overflow and NaN", () => {
    expect(roundF16(1 + 2 ** -11)).toBe(1); // halfway, even
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundF16(2 ** -25)).toBe(0); // halfway between 0 and the smallest subnormal
    expect(roundF16(3 * 2 ** -25)).toBe(2 ** -23);
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65519)).toBe(65504);
    expect(roundF16(65520)).toBe(Infinity);
    expect(Number.isNaN(roundF16(NaN))).toBe(true);
  });
});

describe("roundTo", () => {
  it("applies each dtype's storage semantics", () => {
    expect(roundTo("f32", 0.1)).toBe(Math.fround(0.1));
    expect(roundTo("i32", -2.7)).toBe(-2);
    expect(roundTo("i32", 2 ** 31)).toBe(-(2 ** 31));
    expect(roundTo("u8", 257)).toBe(1);
    expect(roundTo("bool", 0.5)).toBe(1);
    expect(roundTo("bool", 0)).toBe(0);
  });
  it("gives every dtype a size", () => {
    expect(DTYPES.map(dtypeBytes)).toEqual([4, 2, 2, 4, 8, 1, 1, 1, 1]);
  });
});

describe("MX formats (OCP MX v1.0)", () => {
  it("decodes every E2M1 code", () => {
    // sign | 2-bit exponent (bias 1) | 1-bit mantissa; exponent 0 is subnormal (0 or 0.5)
    for (let code = 0; code < 16; code++) {
      const sign = code & 8 ? -1 : 1;
      const e = (code >> 1) & 3;
      const m = code & 1;
      const expected = sign * (e === 0 ? m * 0.5 : 2 ** (e - 1) * (1 + m / 2));
      expect(decodeE2m1(code)).toBe(expected);
      expect(E2M1_VALUES[code]).toBe(expected);
    }
    expect(Object.is(decodeE2m1(8), -0)).toBe(true);
  });
  it("decodes every E8M0 code", () => {
    for (let code = 0; code < 255; code++) expect(decodeE8m0(code)).toBe(2 ** (code - 127));
    expect(decodeE8m0(127)).toBe(1);
    expect(decodeE8m0(0)).toBe(2 ** -127);
    expect(Number.isNaN(decodeE8m0(255))).toBe(true);
  });
});
