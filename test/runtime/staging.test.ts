// The executor's input staging writes every input's bytes as tensorToBytes encodes them (i32 wrapping, f32
// rounding, other dtypes), from a HostTensor's f64 values or straight from a typed array, and refuses a typed array
// that is not its dtype's. (The pinned buffers and the copies themselves need a GPU: test/compile/compile.test.ts.)
import { describe, expect, it } from "vitest";
import { hostTensor, tensorToBytes } from "../../src/ir/host-tensor.js";
import { inputBytes, writeInputBytes } from "../../runtime/staging.js";

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
