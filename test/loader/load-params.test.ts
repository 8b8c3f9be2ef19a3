// A checkpoint's tensors as a graph's parameters: bf16 and MXFP4 checkpoints, dtype conversion, errors.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { roundBf16 } from "../../src/ir/dtype.js";
import { openCheckpoint } from "../../src/loader/checkpoint.js";
import { loadParams } from "../../src/loader/load-params.js";
import { quantizeCheckpoint } from "../../src/loader/quantize-checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";

let root: string;
let bf16Dir: string;
let mxfp4Dir: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-load-params-"));
  bf16Dir = join(root, "bf16");
  mxfp4Dir = join(root, "mxfp4");
  await writeRandomGptOssCheckpoint(bf16Dir, GPT_OSS_TINY, { seed: 3, std: 0.05 });
  await quantizeCheckpoint(bf16Dir, mxfp4Dir);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("loadParams", () => {
  it("reads every parameter of the model in its dtype (bf16 checkpoint into an f32 and a bf16 model)", async () => {
    const checkpoint = await openCheckpoint(bf16Dir);
    const stored = await checkpoint.readFloat32("model.layers.1.self_attn.q_proj.weight");
    await checkpoint.close();
    for (const dtype of ["f32", "bf16"] as const) {
      const graph = gptOssModel(GPT_OSS_TINY, { dtype, experts: "dense" });
      const params = await loadParams(bf16Dir, graph);
      expect(Object.keys(params).sort()).toEqual(graph.params.map((p) => p.name).sort());
      const q = params["model.layers.1.self_attn.q_proj.weight"]!;
      expect(q.dtype).toBe(dtype);
      expect(q.shape).toEqual([64, 64]);
      expect(Array.from(q.data)).toEqual(Array.from(stored, (v) => (dtype === "bf16" ? roundBf16(v) : v)));
    }
  });

  it("passes MXFP4 blocks and scales through unchanged", async () => {
    const graph = gptOssModel(GPT_OSS_TINY, { dtype: "bf16", experts: "mxfp4" });
    const params = await loadParams(mxfp4Dir, graph);
    const name = "model.layers.0.mlp.experts.gate_up_proj_blocks";
    const checkpoint = await openCheckpoint(mxfp4Dir);
    const raw = await checkpoint.read(name);
    await checkpoint.close();
    expect(params[name]!.dtype).toBe("fp4e2m1x2");
    expect(Array.from(params[name]!.data)).toEqual(Array.from(raw));
    expect(params["model.layers.0.mlp.experts.gate_up_proj_scales"]!.dtype).toBe("e8m0");
  });

  it("names every tensor that does not fit the model", async () => {
    const wider = gptOssModel({ ...GPT_OSS_TINY, hiddenSize: 96 }, { dtype: "f32", experts: "dense" });
    await expect(loadParams(bf16Dir, wider)).rejects.toThrow(/model\.embed_tokens\.weight in .* is \[128, 64\], the model needs \[128, 96\]/);
    const packed = gptOssModel(GPT_OSS_TINY, { dtype: "f32", experts: "mxfp4" });
    await expect(loadParams(bf16Dir, packed)).rejects.toThrow(/tensor model\.layers\.0\.mlp\.experts\.gate_up_proj_blocks \(fp4e2m1x2\[4, 64, 2, 16\]\) is missing/);
  });
});
