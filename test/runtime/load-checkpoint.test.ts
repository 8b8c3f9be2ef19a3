// Streaming a checkpoint into a plan's arena: the checks before any byte moves (pure), and on a GPU the
// streamed weights (as stored, and converted) give exactly the outputs of weights set from host tensors.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { compile } from "../../src/compile/compile.js";
import { freshStepInputs, oneBlockPools } from "../engine/reference.js";
import { openCheckpoint } from "../../src/loader/checkpoint.js";
import { loadParams, readParams } from "../../src/loader/load-params.js";
import { quantizeCheckpoint } from "../../src/loader/quantize-checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { Device, PlanExecutor } from "../../runtime/index.js";
import { streamCheckpoint } from "../../runtime/load-checkpoint.js";
import { paramProblems } from "../../src/loader/load-params.js";
import { describeGpu } from "../tiers.js";

let root: string;
const dirs: Record<string, string> = {};
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-stream-"));
  for (const dtype of ["BF16", "F32"] as const) {
    dirs[dtype] = join(root, dtype);
    await writeRandomGptOssCheckpoint(dirs[dtype]!, GPT_OSS_TINY, { seed: 4, std: 0.1, dtype });
  }
  dirs["MXFP4"] = join(root, "mxfp4");
  await quantizeCheckpoint(dirs["BF16"]!, dirs["MXFP4"]!);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("paramProblems against a plan", () => {
  it("names missing, mis-shaped and mis-typed tensors against a plan", async () => {
    const graph = gptOssModel({ ...GPT_OSS_TINY, vocabSize: 256 }, { dtype: "bf16", experts: "mxfp4" });
    const { plan } = await compile(graph, { arch: "sm_80", cacheDir: false, nvrtc: "skip" });
    const checkpoint = await openCheckpoint(dirs["BF16"]!);
    try {
      const problems = paramProblems(plan.params, plan.symbols, checkpoint).join("\n");
      expect(problems).toMatch(/model\.embed_tokens\.weight in .* is \[128, 64\], the model needs \[256, 64\]/);
      expect(problems).toMatch(/tensor model\.layers\.0\.mlp\.experts\.gate_up_proj_blocks \(fp4e2m1x2\[4, 64, 2, 16\]\) is missing/);
    } finally {
      await checkpoint.close();
    }
  });
});

describe("dense experts from an MXFP4 checkpoint (--dequantize)", () => {
  it("takes blocks and scales for a dense expert weight, transposed to [experts, in, out], and names a mismatch", async () => {
    const checkpoint = await openCheckpoint(dirs["MXFP4"]!);
    try {
      const dense = gptOssModel(GPT_OSS_TINY, { dtype: "f32", experts: "dense", maxTokensPerStep: 16, maxContext: 16 });
      expect(paramProblems(dense.params, dense.symbols, checkpoint)).toEqual([]);
      const params = await readParams(dense, checkpoint);
      const packed = await readParams(gptOssModel(GPT_OSS_TINY, { dtype: "f32", experts: "mxfp4", maxTokensPerStep: 16, maxContext: 16 }), checkpoint);
      // expert 1, input feature 3, output feature 5 of gate_up: the packed row 5, element 3 of expert 1
      const name = "model.layers.0.mlp.experts.gate_up_proj";
      const [, d, twoI] = params[name]!.shape as [number, number, number];
      const blocks = packed[`${name}_blocks`]!.data;
      const scales = packed[`${name}_scales`]!.data;
      const code = (blocks[(1 * twoI + 5) * (d / 2) + 1]! >> 4) & 0xf; // element 3 = high nibble of byte 1
      const e2m1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6][code]!;
      expect(params[name]!.data[(1 * d + 3) * twoI + 5]).toBe(e2m1 * 2 ** (scales[(1 * twoI + 5) * (d / 32)]! - 127));
      const wider = gptOssModel({ ...GPT_OSS_TINY, intermediateSize: 64 }, { dtype: "f32", experts: "dense", maxTokensPerStep: 16, maxContext: 16 });
      expect(paramProblems(wider.params, wider.symbols, checkpoint).join("\n")).toMatch(
        /model\.layers\.0\.mlp\.experts\.gate_up_proj \(from .*_blocks and .*_scales in .*\): blocks \[4, 64, 2, 16\] and scales \[4, 64, 2\] do not encode \[4, 64, 128\]/,
      );
    } finally {
      await checkpoint.close();
    }
  });
});

describeGpu("streamCheckpoint", () => {
  for (const [stored, dtype, experts] of [["BF16", "bf16", "dense"], ["F32", "bf16", "dense"], ["BF16", "f32", "dense"], ["MXFP4", "bf16", "mxfp4"]] as const) {
    it(`streams a ${stored} checkpoint into a ${dtype} plan exactly as host parameters would (${experts} experts)`, async () => {
      const device = Device.open(0);
      const bounds = { dtype, experts, maxTokensPerStep: 16, maxSeqsPerStep: 8, maxContext: 16 } as const;
      const [graph, layout] = [gptOssModel(GPT_OSS_TINY, bounds), gptOssLayout(GPT_OSS_TINY, bounds)];
      const { plan } = await compile(graph, { arch: device.info.arch, cacheDir: false });
      const load = { cacheDir: false as const, loadSymbols: oneBlockPools(layout) };
      const streamed = await PlanExecutor.load(plan, device, load);
      const staged = await PlanExecutor.load(plan, device, load);
      const inputs = freshStepInputs(layout, [3, 1, 4, 1, 5]);
      try {
        const progress: number[] = [];
        // a tiny staging buffer forces many chunks per tensor
        const { bytes } = await streamCheckpoint(streamed, dirs[stored]!, { chunkBytes: 1 << 16, onProgress: (p) => progress.push(p.bytes) });
        expect(bytes).toBe(plan.params.reduce((a, p) => a + p.bytes, 0));
        expect(progress).toHaveLength(plan.params.length);
        staged.setParams(await loadParams(dirs[stored]!, graph));
        const a = streamed.run("step", inputs);
        const b = staged.run("step", inputs);
        expect(Array.from(a["logits"]!.data)).toEqual(Array.from(b["logits"]!.data));
      } finally {
        streamed.dispose();
        staged.dispose();
      }
    }, 120_000);
  }
});
