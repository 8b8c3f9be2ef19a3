import { describe, expect, it } from "vitest";
import { E2M1_VALUES } from "../../src/ir/dtype.js";
import { E8M0_NAN, dequantizeMxfp4, encodeE2m1, mxfp4ScaleCode, mxfp4Shapes, quantizeMxfp4 } from "../../src/loader/mxfp4.js";
import { dequantizeExpertWeight, quantizeExpertWeight } from "../../src/loader/quantize-checkpoint.js";
import { seededRandom } from "../../src/ir/host-tensor.js";
import { gaussian } from "../../src/loader/random-checkpoint.js";

/** Non-negative E2M1 magnitudes, by code. */
const GRID = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/**
 * Independent reference for one value already divided by its scale: the nearest grid magnitude, a tie going to the
 * even code, saturating at 6 (brute force over the grid, no thresholds shared with the implementation).
 */
function referenceE2m1(x: number): number {
  const a = Math.min(Math.abs(x), 6);
  let best = 0;
  for (let c = 1; c < GRID.length; c++) {
    const d = Math.abs(a - GRID[c]!);
    const bestD = Math.abs(a - GRID[best]!);
    if (d < bestD || (d === bestD && c % 2 === 0)) best = c;
  }
  return (x < 0 || Object.is(x, -0) ? -1 : 1) * GRID[best]!;
}

function randomValues(n: number, seed: number, std = 1): Float32Array {
  const normal = gaussian(seededRandom(seed));
  return Float32Array.from({ length: n }, () => std * normal());
}

describe("MXFP4 layout", () => {
  it("blocks are [..., K/32, 16] and scales [..., K/32]", () => {
    expect(mxfp4Shapes([32, 5760, 2880])).toEqual({ blocks: [32, 5760, 90, 16], scales: [32, 5760, 90] });
    expect(mxfp4Shapes([64])).toEqual({ blocks: [2, 16], scales: [2] });
    expect(() => mxfp4Shapes([3, 40])).toThrow("MXFP4 blocks run along the last axis, whose size (40) must be a multiple of 32");
    expect(() => quantizeMxfp4(new Float32Array(31), [32])).toThrow("31 values do not fill shape [32] (32)");
    expect(() => dequantizeMxfp4(new Uint8Array(16), new Uint8Array(2), [32])).toThrow(/scales hold 2 bytes/);
  });

  it("every E2M1 code decodes per the OCP table, low nibble = even element", () => {
    // Block of scale 2^0 (code 127) whose byte j holds codes (2j mod 16, 2j+1 mod 16): all 16 codes appear.
    const blocks = Uint8Array.from({ length: 16 }, (_, j) => ((2 * j) % 16) | (((2 * j + 1) % 16) << 4));
    const values = dequantizeMxfp4(blocks, Uint8Array.of(127), [32]);
    const table = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
    for (let i = 0; i < 32; i++) expect(Object.is(values[i], table[i % 16])).toBe(true);
    expect(E2M1_VALUES).toEqual(table);
  });

  it("puts element 2j in the low nibble and 2j+1 in the high nibble", () => {
    const values = new Float32Array(32);
    values[0] = 0.5; // code 1
    values[1] = 4; // code 6
    values[30] = -1; // code 10
    values[31] = 6; // code 7
    const { blocks, scales } = quantizeMxfp4(values, [32]);
    expect(scales[0]).toBe(127); // max 6 → floor(log2 6) − 2 = 0
    expect(blocks[0]).toBe(0x61);
    expect(blocks[15]).toBe(0x7a);
  });

  it("scales are E8M0 with bias 127: 2^(code − 127)", () => {
    const values = Float32Array.from({ length: 32 }, (_, i) => (i === 5 ? 48 : 0)); // 48 = 6·2³
    const { blocks, scales } = quantizeMxfp4(values, [32]);
    expect(scales[0]).toBe(127 + 3);
    expect(dequantizeMxfp4(blocks, scales, [32])[5]).toBe(48);
  });
});

describe("MXFP4 conversion (OCP MX v1.0)", () => {
  it("the shared exponent is floor(log2(max|v|)) − 2, from the exact f32 exponent", () => {
    expect(mxfp4ScaleCode(6)).toBe(127);
    expect(mxfp4ScaleCode(7.99)).toBe(127);
    expect(mxfp4ScaleCode(8)).toBe(128);
    expect(mxfp4ScaleCode(Math.fround(8 - 2 ** -20))).toBe(127); // just below a power of two
    expect(mxfp4ScaleCode(1)).toBe(125);
    expect(mxfp4ScaleCode(2 ** -100)).toBe(25);
  });

  it("rounds to nearest E2M1, ties to even, saturating at ±6", () => {
    const ties: [number, number][] = [
      [0.25, 0],
      [0.75, 1],
      [1.25, 1],
      [1.75, 2],
      [2.5, 2],
      [3.5, 4],
      [5, 4],
      [-0.25, -0],
      [-3.5, -4],
      [6.5, 6],
      [7.9, 6],
      [-7.9, -6],
      [0.2499, 0],
      [0.2501, 0.5],
      [4.999, 4],
      [5.001, 6],
    ];
    for (const [x, expected] of ties) {
      expect(Object.is(E2M1_VALUES[encodeE2m1(x)], expected), `${x} → ${expected}`).toBe(true);
      expect(Object.is(referenceE2m1(x), expected), `reference ${x}`).toBe(true);
    }
    // Through the whole pipeline: a block whose max is 7.9 has scale 2^0 and saturates to 6.
    const block = Float32Array.from({ length: 32 }, (_, i) => [7.9, 0.25, 0.75, 2.5, 3.5, 5, -1.25, -1.75][i % 8]!);
    const q = quantizeMxfp4(block, [32]);
    expect(q.scales[0]).toBe(127);
    expect(Array.from(dequantizeMxfp4(q.blocks, q.scales, [32]).subarray(0, 8))).toEqual([6, 0, 1, 2, 4, 4, -1, -2]);
  });

  it("matches a brute-force nearest-value reference on random data of awkward shapes", () => {
    const shapes = [[32], [3, 64], [2, 5, 96], [1, 1, 7, 32], [4, 1, 160]];
    let seed = 1;
    for (const shape of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      // Mixed magnitudes: each block gets its own exponent range, and some blocks are very small.
      const normal = gaussian(seededRandom(seed++));
      const values = Float32Array.from({ length: n }, (_, i) => normal() * 2 ** ((Math.floor(i / 32) * 7) % 40 - 20));
      const { blocks, scales } = quantizeMxfp4(values, shape);
      const got = dequantizeMxfp4(blocks, scales, shape);
      for (let b = 0; b < n / 32; b++) {
        const slice = values.subarray(b * 32, b * 32 + 32);
        const max = Math.max(...Array.from(slice, Math.abs));
        const exponent = Math.floor(Math.log2(max)) - 2;
        expect(scales[b]).toBe(exponent + 127);
        for (let i = 0; i < 32; i++) {
          const want = referenceE2m1(slice[i]! / 2 ** exponent) * 2 ** exponent;
          expect(got[b * 32 + i]).toBe(want);
        }
      }
    }
  });

  it("round-trip error stays within half an E2M1 step of the block scale (saturation aside)", () => {
    const values = randomValues(64 * 96, 7, 0.02);
    const { blocks, scales } = quantizeMxfp4(values, [64, 96]);
    const got = dequantizeMxfp4(blocks, scales, [64, 96]);
    let sumSq = 0;
    let errSq = 0;
    for (let i = 0; i < values.length; i++) {
      const scale = 2 ** (scales[Math.floor(i / 32)]! - 127);
      const a = Math.abs(values[i]!) / scale;
      const halfStep = a < 2 ? 0.25 : a < 4 ? 0.5 : 1;
      const bound = a > 6 ? a - 6 : halfStep;
      expect(Math.abs(values[i]! - got[i]!)).toBeLessThanOrEqual(bound * scale);
      sumSq += values[i]! ** 2;
      errSq += (values[i]! - got[i]!) ** 2;
    }
    // Gaussian data in 4-bit floats with a shared power-of-two scale: about 10–20% relative RMS error.
    expect(Math.sqrt(errSq / sumSq)).toBeLessThan(0.25);
    expect(Math.sqrt(errSq / sumSq)).toBeGreaterThan(0.01);
  });

  it("an all-zero block gets the smallest scale and zero elements; −0 keeps its sign", () => {
    const values = new Float32Array(64);
    values[33] = -0;
    values[40] = 1;
    const { blocks, scales } = quantizeMxfp4(values, [64]);
    expect(scales[0]).toBe(0);
    expect(blocks.subarray(0, 16).every((b) => b === 0)).toBe(true);
    expect(blocks[16]! & 0xf0).toBe(0x80); // element 33 = high nibble of byte 16: −0
    const got = dequantizeMxfp4(blocks, scales, [64]);
    expect(Array.from(got.subarray(0, 32)).every((v) => Object.is(v, 0))).toBe(true);
    expect(Object.is(got[33], -0)).toBe(true);
  });

  it("a block at the f32 maximum uses scale 2^125 and stays finite", () => {
    const max = 3.4028234663852886e38;
    const values = Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -max : max / 3));
    const { blocks, scales } = quantizeMxfp4(values, [32]);
    expect(scales[0]).toBe(127 + 125);
    const got = dequantizeMxfp4(blocks, scales, [32]);
    expect(got[1]).toBe(-6 * 2 ** 125); // 1.99·2^127 saturates to 6·2^125 = 1.5·2^127
    expect(got[0]).toBe(3 * 2 ** 125); // max/3 ≈ 2.67·2^125 → nearest E2M1 is 3
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
  });

  it("tiny and subnormal values clamp the scale to 2^-127 and round to the nearest representable", () => {
    const values = new Float32Array(96);
    values[0] = 2 ** -125; // block 0: floor(log2) − 2 = −127 exactly → 2^-125 / 2^-127 = 4
    values[32] = 1e-45; // block 1: subnormal f32 (2^-149); exponent −151 clamps to −127 → rounds to 0
    values[33] = 2 ** -128; // same block: 0.5 · 2^-127, exactly representable
    values[64] = 2 ** -130; // block 2: exponent −132 clamps → 2^-130 / 2^-127 = 0.125 → 0
    const { blocks, scales } = quantizeMxfp4(values, [96]);
    expect(Array.from(scales)).toEqual([0, 0, 0]);
    const got = dequantizeMxfp4(blocks, scales, [96]);
    expect(got[0]).toBe(2 ** -125);
    expect(got[32]).toBe(0);
    expect(got[33]).toBe(2 ** -128);
    expect(got[64]).toBe(0);
  });

  it("NaN or ±Inf makes the block's scale NaN (code 255), so the whole block decodes to NaN; other blocks are unaffected", () => {
    for (const special of [NaN, Infinity, -Infinity]) {
      const values = Float32Array.from({ length: 64 }, (_, i) => (i % 3) - 1);
      values[7] = special;
      const { blocks, scales } = quantizeMxfp4(values, [2, 32]);
      expect(scales[0]).toBe(E8M0_NAN);
      expect(scales[1]).toBe(125);
      const got = dequantizeMxfp4(blocks, scales, [2, 32]);
      expect(Array.from(got.subarray(0, 32)).every(Number.isNaN)).toBe(true);
      expect(Array.from(got.subarray(32))).toEqual(Array.from(values.subarray(32)));
    }
  });
});

describe("expert weights: input-major bf16 layout ↔ output-major MXFP4 layout", () => {
  it("transposes [E, In, Out] into blocks along In, exactly for representable values", () => {
    const [E, In, Out] = [3, 64, 5];
    // Every value is an E2M1 value times a per-(expert, output row) power of two, and each 32-block holds a 6 or 4,
    // so quantization is exact and only the layout is under test.
    const w = new Float32Array(E * In * Out);
    for (let e = 0; e < E; e++) {
      for (let i = 0; i < In; i++) {
        for (let o = 0; o < Out; o++) {
          const code = i % 32 === 0 ? 7 : (i * 7 + o * 3 + e) % 16;
          w[(e * In + i) * Out + o] = E2M1_VALUES[code]! * 2 ** (o - e);
        }
      }
    }
    const { blocks, scales } = quantizeExpertWeight(w, E, In, Out);
    expect(blocks.length).toBe((E * Out * In) / 2);
    expect(scales.length).toBe((E * Out * In) / 32);
    // Scale of (expert e, output row o, block g) sits at (e·Out + o)·(In/32) + g.
    expect(scales[(2 * Out + 4) * 2 + 1]).toBe(127 + 4 - 2);
    expect(dequantizeExpertWeight(blocks, scales, E, In, Out)).toEqual(w);
  });

  it("round-trips random expert weights within the MXFP4 error bound", () => {
    const [E, In, Out] = [2, 96, 7];
    const w = randomValues(E * In * Out, 11, 0.05);
    const { blocks, scales } = quantizeExpertWeight(w, E, In, Out);
    const back = dequantizeExpertWeight(blocks, scales, E, In, Out);
    const direct = dequantizeMxfp4(blocks, scales, [E, Out, In]);
    for (let e = 0; e < E; e++) {
      for (let i = 0; i < In; i++) {
        for (let o = 0; o < Out; o++) expect(back[(e * In + i) * Out + o]).toBe(direct[(e * Out + o) * In + i]);
      }
    }
    let maxRel = 0;
    for (let k = 0; k < w.length; k++) maxRel = Math.max(maxRel, Math.abs(w[k]! - back[k]!) / 0.05);
    expect(maxRel).toBeLessThan(1.5);
  });
});
