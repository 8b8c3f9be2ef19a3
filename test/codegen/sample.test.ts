// The `sample` op: the interpreter's rule on hand-made rows (pure), its kernel compiles (NVRTC), and on a GPU the
// kernel picks the interpreter's token on every row whose answer is not balanced on a rounding edge (greedy rows
// always; sampled rows where nudging the draw or top-p by a small eps would not change the answer), and −1 for NaN rows.
import { describe, expect, it } from "vitest";
import { emitSample } from "../../src/codegen/sample.js";
import type { DType } from "../../src/ir/dtype.js";
import { hostTensor, seededRandom } from "../../src/ir/host-tensor.js";
import { sampleRow } from "../../src/ir/interpret.js";
import { type NodeOf, NodeTable } from "../../src/ir/node.js";
import { describeGpu, describeNvrtc } from "../tiers.js";
import { compileNodeKernels, runNodeKernels } from "./harness.js";

function sampleNode(dtype: DType, vocab: number | string): NodeOf<"sample"> {
  const t = new NodeTable();
  const input = (name: string, dt: DType, shape: (number | string)[]) => t.make("input", { name, dtype: dt, shape }, []);
  return t.make("sample", {}, [input("logits", dtype, ["rows", vocab]), input("t", "f32", ["rows"]), input("k", "i32", ["rows"]), input("p", "f32", ["rows"]), input("u", "f32", ["rows"])]) as NodeOf<"sample">;
}

describe("sample (interpreter)", () => {
  const l = [1, 3, 3, 0, 2];
  it("is the arg-max, ties to the lower id, at temperature 0; −1 for NaN or +inf", () => {
    expect(sampleRow(l, 0, 0, 1, 0.5)).toBe(1);
    expect(sampleRow([1, NaN, 3], 0.8, 0, 1, 0.5)).toBe(-1);
    expect(sampleRow([1, Infinity], 0, 0, 1, 0.5)).toBe(-1);
    expect(sampleRow([-Infinity, 2, -Infinity], 1, 0, 1, 0.99)).toBe(1);
  });
  it("top-k 1 is greedy at any temperature; a tiny top-p keeps the most likely token alone", () => {
    for (const u of [0, 0.3, 0.999]) {
      expect(sampleRow(l, 5, 1, 1, u)).toBe(1);
      expect(sampleRow(l, 0.5, 0, 0.01, u)).toBe(1);
    }
  });
  it("draws in id order over the kept set: top-k 2 keeps both tied 3s, the draw picks by its place in their mass", () => {
    expect(sampleRow(l, 1, 2, 1, 0.25)).toBe(1);
    expect(sampleRow(l, 1, 2, 1, 0.75)).toBe(2);
  });
  it("follows the softmax at the temperature over many draws", () => {
    const rand = seededRandom(3);
    const counts = [0, 0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleRow(l, 1, 0, 1, rand())]!++;
    const z = l.reduce((a, x) => a + Math.exp(x), 0);
    l.forEach((x, i) => expect(Math.abs(counts[i]! / n - Math.exp(x) / z)).toBeLessThan(0.02));
  });
});

describeNvrtc("sample kernel compiles", () => {
  it("for f32, bf16 and f16 logits", async () => {
    expect(await compileNodeKernels(["f32", "bf16", "f16"].map((d) => emitSample(sampleNode(d as DType, "vocab"))))).toBe(3);
  });
});

describeGpu("sample kernel matches the interpreter", () => {
  for (const [dtype, vocab] of [["bf16", 201088], ["f32", 1000], ["f32", 3]] as const) {
    it(`${dtype} logits over a vocabulary of ${vocab}: greedy, top-k, top-p, both, ties, a NaN row`, async () => {
      const rand = seededRandom(vocab);
      const rows = 64;
      const node = sampleNode(dtype, vocab);
      // logits on a coarse grid: many exact ties, so the id order of ties is exercised
      const logits = Array.from({ length: rows * vocab }, () => Math.round((rand() * 8 - 4) * 4) / 4);
      logits[5 * vocab + (7 % vocab)] = NaN; // row 5 holds the NaN
      const temperature = Array.from({ length: rows }, (_, r) => (r % 4 === 0 ? 0 : 0.5 + rand()));
      const topK = Array.from({ length: rows }, (_, r) => [0, 1, 5, 40, vocab + 3][r % 5]!);
      const topP = Array.from({ length: rows }, (_, r) => [1, 0.9, 0.5, 0.99][r % 4]!);
      const uniform = Array.from({ length: rows }, () => rand());
      const inputs = [hostTensor(dtype, [rows, vocab], logits), hostTensor("f32", [rows], temperature), hostTensor("i32", [rows], topK), hostTensor("f32", [rows], topP), hostTensor("f32", [rows], uniform)];
      const gpu = await runNodeKernels(node, emitSample(node), inputs, { rows, vocab });
      const stored = inputs[0]!.data; // logits as the dtype holds them
      let checked = 0;
      for (let r = 0; r < rows; r++) {
        const row = stored.subarray(r * vocab, (r + 1) * vocab);
        const ref = sampleRow(row, temperature[r]!, topK[r]!, topP[r]!, uniform[r]!);
        if (r === 5) expect(gpu.data[r]).toBe(-1);
        if (vocab > 10000) {
          // Over 200k ids each token holds ~5e-6 of the mass, less than the f32 summation's error in the CDF, so a
          // sampled draw is checked against the tokens the reference picks with the draw and top-p moved by ±eps
          // (the kept set is drawn in id order, so those picks bound the acceptable ids); greedy and small top-k
          // rows collapse to one id and are checked exactly. On an H200 the pick sat 90 kept ids from the reference's
          // at top-p 0.9: the cutoff's tie group (logits on a 0.25 grid) moves with the f32 mass, hence 1e-3.
          const eps = 1e-3;
          const picks = [-eps, 0, eps].flatMap((du) => [-eps, 0, eps].map((dp) =>
            sampleRow(row, temperature[r]!, topK[r]!, Math.min(1, topP[r]! + (topP[r]! < 1 ? dp : 0)), Math.min(0.9999, Math.max(0, uniform[r]! + du)))));
          const what = `row ${r} (t ${temperature[r]}, k ${topK[r]}, p ${topP[r]}, u ${uniform[r]})`;
          if (temperature[r] === 0 || Math.min(...picks) === Math.max(...picks)) expect(gpu.data[r], what).toBe(ref);
          else {
            expect(gpu.data[r], what).toBeGreaterThanOrEqual(Math.min(...picks));
            expect(gpu.data[r], what).toBeLessThanOrEqual(Math.max(...picks));
          }
          checked++;
          continue;
        }
        // a draw within eps of a CDF boundary may land either side under f32 summation: skip those rows
        const eps = 1e-4;
        const steady = [-eps, eps].every((e) => sampleRow(row, temperature[r]!, topK[r]!, Math.min(1, topP[r]! + (topP[r]! < 1 ? e : 0)), Math.min(0.9999, Math.max(0, uniform[r]! + e))) === ref);
        if (!steady && temperature[r]! > 0) continue;
        expect(gpu.data[r], `row ${r} (t ${temperature[r]}, k ${topK[r]}, p ${topP[r]}, u ${uniform[r]})`).toBe(ref);
        checked++;
      }
      expect(checked).toBeGreaterThan(rows * 0.5);
    }, 120_000);
  }
});
