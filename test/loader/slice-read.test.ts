// Reading a rank's slice of a checkpoint tensor: the byte runs of a slice (merged where adjacent), and the bytes read
// through them (runs alone, or windows covering small runs) equal slicing the whole tensor, for slices of the first
// axis, of inner axes, of several axes and empty ones; a slice outside the tensor or of another shape is refused.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openSafetensorsFile } from "../../src/loader/checkpoint.js";
import { writeSafetensors } from "../../src/loader/safetensors.js";
import { readSlice, slicedShape, sliceRuns } from "../../src/loader/slice-read.js";
import { hostTensor, seededRandom, sliceTensor } from "../../src/ir/host-tensor.js";
import type { ParamSlice } from "../../src/ir/graph.js";

const root = mkdtempSync(join(tmpdir(), "tsgc-slice-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("slice runs", () => {
  it("one run for a split of the first axis, a run per row for a column split, merged when adjacent", () => {
    expect(sliceRuns([8, 4], 2, { axes: [{ axis: 0, ranges: [[2, 5]] }] })).toEqual([{ offset: 16, bytes: 24 }]);
    expect(sliceRuns([3, 8], 1, { axes: [{ axis: 1, ranges: [[4, 8]] }] })).toEqual([{ offset: 4, bytes: 4 }, { offset: 12, bytes: 4 }, { offset: 20, bytes: 4 }]);
    expect(sliceRuns([3, 8], 1, { axes: [{ axis: 1, ranges: [[0, 8]] }] })).toEqual([{ offset: 0, bytes: 24 }]);
    expect(sliceRuns([2, 3, 4], 4, { axes: [{ axis: 0, ranges: [[1, 2]] }, { axis: 1, ranges: [[0, 1], [2, 3]] }] })).toEqual([{ offset: 48, bytes: 16 }, { offset: 80, bytes: 16 }]);
    expect(sliceRuns([4, 4], 1, { axes: [{ axis: 0, ranges: [] }] })).toEqual([]);
    expect(() => sliceRuns([4, 4], 1, { axes: [{ axis: 1, ranges: [[2, 5]] }] })).toThrow(/slice \[2, 5\) of axis 1 is outside \[4, 4\]/);
  });

  it("reads the same bytes as slicing the whole tensor", async () => {
    const rand = seededRandom(9);
    const shape = [6, 300, 40];
    const whole = hostTensor("f32", shape, Array.from({ length: 6 * 300 * 40 }, () => rand()));
    const path = join(root, "t.safetensors");
    await writeSafetensors(path, [{ name: "w", dtype: "F32", shape, data: new Uint8Array(Float32Array.from(whole.data).buffer) }]);
    const ckpt = await openSafetensorsFile(path);
    try {
      const cases: ParamSlice["axes"][] = [
        [{ axis: 0, ranges: [[1, 4]] }],
        [{ axis: 2, ranges: [[10, 20]] }], // small runs: read through windows
        [{ axis: 1, ranges: [[0, 100], [250, 300]] }], // large runs: read one by one
        [{ axis: 0, ranges: [[0, 2], [5, 6]] }, { axis: 2, ranges: [[39, 40]] }],
        [{ axis: 1, ranges: [] }],
      ];
      for (const axes of cases) {
        const bytes = await readSlice(ckpt, "w", { full: shape, axes }, 4);
        const want = sliceTensor(whole, axes);
        expect(slicedShape(shape, { axes })).toEqual(want.shape);
        expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)), JSON.stringify(axes)).toEqual(Array.from(want.data));
      }
      await expect(readSlice(ckpt, "w", { full: [6, 300], axes: [] }, 4)).rejects.toThrow(/w in .* is \[6, 300, 40\], the slice is of \[6, 300\]/);
    } finally {
      await ckpt.close();
    }
  });
});
