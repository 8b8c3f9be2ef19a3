// The executor's input staging writes every input's bytes as tensorToBytes encodes them (i32 wrapping, f32
// rounding, other dtypes), from a HostTensor's f64 values or straight from a typed array, and refuses a typed array
// that is not its dtype's. (The pinned buffers and the copies themselves need a GPU: test/compile/compile.test.ts.)
import { describe, expect, it } from "vitest";
import { hostTensor, tensorToBytes } from "../../src/ir/host-tensor.js";
import { inputBytes, stagingLayout, writeInputBytes } from "../../runtime/staging.js";

const bytesAt = (buffer: ArrayBuffer, offset: number, n: number) => Array.from(new Uint8Array(buffer, offset, n));

describe("writeInputBytes", () => {
  it("writes the bytes tensorToBytes gives, at the offset, for HostTensors and typed arrays", () => {
    const i32 = hostTensor("i32", [2, 3], [0, -1, 2147483647, -2147483648, 7, -42]);
    const f32 = hostTensor("f32", [4], [0.1, -3.5, 1e30, 2 ** -140]);
    const bf16 = hostTensor("bf16", [3], [1.5, -0.1, 300]);
    for (const t of [i32, f32, bf16]) {
      const buffer = new ArrayBuffer(64);
      writeInputBytes(t, buffer, 16);
      const expected = Array.from(tensorToBytes(t));
      expect(inputBytes(t)).toBe(expected.length);
      expect(bytesAt(buffer, 16, expected.length)).toEqual(expected);
      expect(bytesAt(buffer, 0, 16)).toEqual(new Array(16).fill(0)); // nothing before the offset
    }
    const typed = [
      { dtype: "i32" as const, shape: [2, 3], data: Int32Array.from(i32.data) },
      { dtype: "f32" as const, shape: [4], data: Float32Array.from(f32.data) },
    ];
    for (const t of typed) {
      const buffer = new ArrayBuffer(32);
      writeInputBytes(t, buffer, 0);
      expect(bytesAt(buffer, 0, inputBytes(t))).toEqual(Array.from(tensorToBytes(hostTensor(t.dtype, t.shape, t.data))));
    }
  });

  it("refuses values that do not fit the shape, and typed arrays of another dtype", () => {
    const buffer = new ArrayBuffer(64);
    expect(() => writeInputBytes({ dtype: "i32", shape: [3], data: new Int32Array(2) }, buffer, 0)).toThrow(/i32\[3\] input needs 3 values, got 2/);
    expect(() => writeInputBytes({ dtype: "i32", shape: [2], data: new Float32Array(2) }, buffer, 0)).toThrow(/Float32Array; use an Int32Array/);
    expect(() => writeInputBytes({ dtype: "f32", shape: [2], data: new Int32Array(2) }, buffer, 0)).toThrow(/Int32Array; use a Float32Array/);
    expect(() => writeInputBytes({ dtype: "bf16", shape: [2], data: new Int32Array(2) }, buffer, 0)).toThrow(/bf16 input must be a HostTensor/);
  });
});

describe("stagingLayout", () => {
  const i32 = (n: number) => ({ dtype: "i32" as const, shape: [n], data: new Int32Array(n) });

  it("mirrors packed slots into the pinned buffer and copies their span once", () => {
    // slots as the memory planner packs them (256-aligned, each sized for the bucket's bound), inputs smaller
    const slots = [{ name: "ids", offset: 4096 }, { name: "positions", offset: 4096 + 256 }, { name: "table", offset: 4096 + 512 }];
    const layout = stagingLayout(slots, { ids: i32(3), positions: i32(3), table: i32(200) });
    expect(layout.copies).toEqual([{ pinnedOffset: 0, arenaOffset: 4096, bytes: 512 + 800 }]);
    expect(layout.writes).toEqual([
      { name: "ids", pinnedOffset: 0, bytes: 12 },
      { name: "positions", pinnedOffset: 256, bytes: 12 },
      { name: "table", pinnedOffset: 512, bytes: 800 },
    ]);
    expect(layout.pinnedBytes).toBe(1312);
  });

  it("copies each input alone when the slots are spread out, and skips empty inputs", () => {
    const slots = [{ name: "a", offset: 0 }, { name: "empty", offset: 256 }, { name: "b", offset: 1 << 20 }];
    const layout = stagingLayout(slots, { a: i32(5), empty: i32(0), b: i32(2) });
    expect(layout.copies).toEqual([
      { pinnedOffset: 0, arenaOffset: 0, bytes: 20 },
      { pinnedOffset: 32, arenaOffset: 1 << 20, bytes: 8 },
    ]);
    expect(layout.writes.map((w) => w.name)).toEqual(["a", "b"]);
    expect(stagingLayout(slots, { a: i32(0), empty: i32(0), b: i32(0) })).toEqual({ pinnedBytes: 0, writes: [], copies: [] });
  });

  it("never lets one input's bytes run into the next slot (overlapping slots get a copy each)", () => {
    const slots = [{ name: "a", offset: 0 }, { name: "b", offset: 16 }];
    expect(stagingLayout(slots, { a: i32(8), b: i32(1) }).copies).toHaveLength(2);
  });
});
