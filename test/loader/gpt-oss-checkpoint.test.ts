import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gptOssCheckpointTensors, gptOssParameterCount } from "../../models/gpt-oss/checkpoint.js";
import { GPT_OSS_120B, GPT_OSS_20B, GPT_OSS_TINY, gptOssConfigToJson } from "../../models/gpt-oss/config.js";
import { openCheckpoint, writeCheckpoint } from "../../src/loader/checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import type { TensorData } from "../../src/loader/safetensors.js";
import { CheckpointMismatchError, compareTensors, openGptOssCheckpoint, validateGptOssCheckpoint } from "../../src/loader/validate.js";

describe("gpt-oss checkpoint tensor list", () => {
  it("gpt-oss-20b (MXFP4) has the published 459 tensors and shapes", () => {
    const tensors = gptOssCheckpointTensors(GPT_OSS_20B);
    expect(tensors.length).toBe(459);
    const byName = new Map(tensors.map((t) => [t.name, t]));
    expect(byName.get("model.layers.0.mlp.experts.gate_up_proj_blocks")).toEqual({
      name: "model.layers.0.mlp.experts.gate_up_proj_blocks",
      shape: [32, 5760, 90, 16],
      dtypes: ["U8"],
    });
    expect(byName.get("model.layers.23.mlp.experts.gate_up_proj_scales")?.shape).toEqual([32, 5760, 90]);
    expect(byName.get("model.layers.5.mlp.experts.down_proj_blocks")?.shape).toEqual([32, 2880, 90, 16]);
    expect(byName.get("model.layers.5.mlp.experts.down_proj_scales")?.shape).toEqual([32, 2880, 90]);
    expect(byName.get("model.layers.5.mlp.experts.gate_up_proj_bias")?.shape).toEqual([32, 5760]);
    expect(byName.get("model.layers.5.mlp.experts.down_proj_bias")?.shape).toEqual([32, 2880]);
    expect(byName.get("model.layers.0.self_attn.q_proj.weight")?.shape).toEqual([4096, 2880]);
    expect(byName.get("model.layers.0.self_attn.k_proj.bias")?.shape).toEqual([512]);
    expect(byName.get("model.layers.0.self_attn.o_proj.weight")?.shape).toEqual([2880, 4096]);
    expect(byName.get("model.layers.0.self_attn.sinks")?.shape).toEqual([64]);
    expect(byName.get("model.layers.0.mlp.router.weight")?.shape).toEqual([32, 2880]);
    expect(byName.get("model.layers.0.mlp.router.bias")?.shape).toEqual([32]);
    expect(byName.get("model.embed_tokens.weight")?.shape).toEqual([201088, 2880]);
    expect(byName.get("lm_head.weight")?.shape).toEqual([201088, 2880]);
    expect(byName.get("model.norm.weight")?.dtypes).toEqual(["BF16", "F32", "F16"]);
    expect(byName.has("model.layers.0.mlp.experts.gate_up_proj")).toBe(false);
  });

  it("the bf16 form holds input-major expert weights", () => {
    const byName = new Map(gptOssCheckpointTensors(GPT_OSS_20B, "bf16").map((t) => [t.name, t]));
    expect(byName.get("model.layers.0.mlp.experts.gate_up_proj")?.shape).toEqual([32, 2880, 5760]);
    expect(byName.get("model.layers.0.mlp.experts.down_proj")?.shape).toEqual([32, 2880, 2880]);
    expect([...byName.keys()].some((n) => n.endsWith("_blocks"))).toBe(false);
  });

  it("parameter counts match the published totals (20.9B and 116.8B)", () => {
    expect(gptOssParameterCount(GPT_OSS_20B) / 1e9).toBeCloseTo(20.91, 1);
    expect(gptOssParameterCount(GPT_OSS_120B) / 1e9).toBeCloseTo(116.83, 1);
  });

  it("follows attention_bias and tie_word_embeddings", () => {
    const names = gptOssCheckpointTensors({ ...GPT_OSS_TINY, attentionBias: false, tieWordEmbeddings: true }).map((t) => t.name);
    expect(names.some((n) => n.endsWith("_proj.bias"))).toBe(false);
    expect(names).not.toContain("lm_head.weight");
  });
});

describe("checkpoint vs config validation", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tsgc-validate-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a random checkpoint of a config matches it", async () => {
    const out = join(dir, "good");
    await writeRandomGptOssCheckpoint(out, GPT_OSS_TINY, { seed: 1 });
    const { issues, checkpoint, format } = await validateGptOssCheckpoint(out);
    expect(format).toBe("bf16");
    expect(issues).toEqual([]);
    expect(checkpoint.tensors.size).toBe(gptOssCheckpointTensors(GPT_OSS_TINY).length);
    await checkpoint.close();
  });

  it("reports a missing tensor, an unexpected one, a wrong shape and a wrong dtype, each precisely", async () => {
    const expected = gptOssCheckpointTensors(GPT_OSS_TINY);
    const tensors: TensorData[] = expected
      .filter((t) => t.name !== "model.layers.1.mlp.router.bias")
      .map((t) => {
        let shape = [...t.shape];
        let dtype: TensorData["dtype"] = "BF16";
        if (t.name === "model.layers.0.self_attn.sinks") shape = [5];
        if (t.name === "model.norm.weight") dtype = "I32";
        const bytes = shape.reduce((a, b) => a * b, 1) * (dtype === "I32" ? 4 : 2);
        return { name: t.name, dtype, shape, data: new Uint8Array(bytes) };
      });
    tensors.push({ name: "model.layers.0.mlp.experts.gate_up_proj_blocks", dtype: "U8", shape: [1], data: new Uint8Array(1) });
    const out = join(dir, "bad");
    await writeCheckpoint(out, tensors);
    await writeFile(join(out, "config.json"), JSON.stringify(gptOssConfigToJson(GPT_OSS_TINY)));
    const { issues, checkpoint } = await validateGptOssCheckpoint(out);
    await checkpoint.close();
    expect(issues.map((i) => [i.kind, i.message])).toEqual([
      ["shape", 'tensor "model.layers.0.self_attn.sinks" has shape [5] but the config needs [4]'],
      ["missing", 'missing tensor "model.layers.1.mlp.router.bias" (expected BF16|F32|F16 [4])'],
      ["dtype", 'tensor "model.norm.weight" has dtype I32 but must be one of BF16, F32, F16'],
      ["unexpected", 'unexpected tensor "model.layers.0.mlp.experts.gate_up_proj_blocks" (U8 [1]) is not part of this config\'s checkpoint'],
    ]);
    const error = await openGptOssCheckpoint(out).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointMismatchError);
    expect((error as Error).message).toContain(`${out}: checkpoint does not match its config (4 problems):`);
    expect((error as Error).message).toContain('missing tensor "model.layers.1.mlp.router.bias"');
  });

  it("compareTensors checks MXFP4 blocks are U8", () => {
    const expected = gptOssCheckpointTensors({ ...GPT_OSS_TINY, quantization: { method: "mxfp4", modulesToNotConvert: [] } });
    const actual = expected.map((t) => ({ name: t.name, shape: t.shape, dtype: "BF16" }));
    const issues = compareTensors(actual, expected);
    expect(issues.length).toBe(4 * GPT_OSS_TINY.numLayers);
    expect(issues[0]?.message).toBe('tensor "model.layers.0.mlp.experts.gate_up_proj_blocks" has dtype BF16 but must be U8');
  });

  it("opens a sharded random checkpoint through its index", async () => {
    const out = join(dir, "sharded");
    const plan = await writeRandomGptOssCheckpoint(out, GPT_OSS_TINY, { seed: 2, maxShardBytes: 20_000, dtype: "F32" });
    expect(plan.shards.length).toBeGreaterThan(2);
    const { checkpoint, issues } = await openGptOssCheckpoint(out);
    expect(issues).toEqual([]);
    expect(checkpoint.files.length).toBe(plan.shards.length);
    const norm = await checkpoint.readFloat32("model.norm.weight");
    expect(norm.length).toBe(GPT_OSS_TINY.hiddenSize);
    expect(norm.every((v) => Math.abs(v - 1) < 0.6)).toBe(true);
    await checkpoint.close();
    const again = await openCheckpoint(out);
    expect(again.totalBytes).toBe(plan.totalBytes);
    await again.close();
  });
});
