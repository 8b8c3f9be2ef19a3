// A rank's plan of a sharded model: compile(…, { shard }) gives every bucket the rank's collectives in seq order
// between its launches (NCCL counts as symbolic sizes, send and receive buffers in the arena), the logits' vocabulary
// split, parameters that are slices; its kernels — the fused ones over smaller operands, expert-parallel MoE (token
// loop and grouped GEMMs), sampling over candidates — compile with NVRTC. GPU tier (2 GPUs): generation on two
// processes, one GPU each, over NCCL, gives the tokens of the reference interpreter.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { compile } from "../../src/compile/compile.js";
import { parsePlan } from "../../src/lower/plan.js";
import { evalSize } from "../../src/lower/kernel.js";
import { openEngine } from "../../src/engine/open.js";
import { drain } from "../engine/reference.js";
import { describeGpus, describeNvrtc } from "../tiers.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "tsgc-sharded-"));
  dirs.push(d);
  return d;
};

const TINY_MXFP4: GptOssConfig = { ...GPT_OSS_TINY, quantization: { method: "mxfp4", modulesToNotConvert: [] } };
const graphOf = (config: GptOssConfig, maxTokensPerStep = 64) => gptOssModel(config, { dtype: "bf16", maxTokensPerStep, maxSeqsPerStep: 8, maxContext: 64 });

describe("a rank's plan (no NVRTC)", () => {
  it("runs its collectives between the launches of every bucket, in seq order, with counts from the bucket's sizes", async () => {
    const graph = graphOf(GPT_OSS_TINY);
    const plans = await Promise.all([0, 1].map((rank) => compile(graph, { arch: "sm_90", cacheDir: false, nvrtc: "skip", shard: { strategy: { ranks: 2 }, rank } })));
    for (const { plan } of plans) {
      const step = plan.entries.find((e) => e.name === "step")!;
      expect(step.splitOutputs).toEqual({ logits: { axis: 1, size: 128, parts: [[[0, 64]], [[64, 128]]] } });
      for (const b of step.buckets) {
        const c = b.collectives!;
        expect(c.map((x) => x.op)).toEqual(["allReduce", "allReduce", "allReduce", "allReduce", "allReduce", "allGather", "allGather"]);
        expect(c.map((x) => x.seq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
        for (let i = 1; i < c.length; i++) expect(c[i]!.at).toBeGreaterThanOrEqual(c[i - 1]!.at);
        expect(c.every((x) => x.ranks === 2 && x.at <= b.launches.length && x.send.offset !== x.recv.offset)).toBe(true);
        // the embedding's sum: tokens × hidden elements; the candidates: rows × 64 (each rank's 64 of 64 logits)
        expect(evalSize(c[0]!.count, b.bounds)).toBe(b.bounds["tokens"]! * 64);
        expect(evalSize(c[5]!.count, b.bounds)).toBe(b.bounds["rows"]! * 64);
      }
      expect(plan.params.find((p) => p.name === "lm_head.weight")!.slice!.full).toEqual([128, 64]);
      expect(parsePlan(JSON.parse(JSON.stringify(plan)))).toEqual(plan);
    }
    // the ranks' plans differ (their slices) and are cached apart
    expect(plans[0]!.plan.params.find((p) => p.name === "lm_head.weight")!.slice).not.toEqual(plans[1]!.plan.params.find((p) => p.name === "lm_head.weight")!.slice);
  });

  it("expert-parallel MoE kernels skip other ranks' experts on every path; distributed sampling samples over the gathered candidates", async () => {
    const { plan } = await compile(graphOf(TINY_MXFP4, 256), { arch: "sm_90", cacheDir: false, nvrtc: "skip", shard: { strategy: { ranks: 2, expertGroups: 2 }, rank: 1 } });
    const names = plan.kernels.map((k) => k.name);
    // decode: route + the token loop; mid sizes: route + bucket + the stream GEMMs; prefill: route + grouped GEMMs
    for (const path of [/^moe_gateup_.*_ep2n2$/, /^moe_down_.*_ep2n2$/, /^moe_ggateup_stream_.*_ep2n2_/, /^moe_route_.*_ep2n2$/, /^moe_bucket_.*_ep$/, /^moe_combine_.*_ep$/]) {
      expect(names.some((n) => path.test(n)), String(path)).toBe(true);
    }
    expect(names).toContain("sample_candidates_bf16_c128");
    for (const k of plan.kernels.filter((x) => /^moe_(route|bucketsel)/.test(x.name))) expect(k.source, k.name).toContain("sid[kk] >= 2 && sid[kk] < 4 ? sid[kk] - 2 : -1");
  });
});

describeNvrtc("a rank's plan compiles with NVRTC", () => {
  it("every kernel of the ranks' plans (TP with dense experts, EP with MXFP4 experts) compiles", async () => {
    const cacheDir = tempDir();
    for (const [config, strategy] of [[GPT_OSS_TINY, { ranks: 2 }], [TINY_MXFP4, { ranks: 2, expertGroups: 2 }]] as const) {
      for (const rank of [0, 1]) {
        const { stats } = await compile(graphOf(config, 256), { arch: "sm_90", cacheDir, nvrtc: "require", shard: { strategy, rank } });
        expect(stats.kernelsCompiled).toBe(true);
      }
    }
  }, 600_000);
});

describeGpus(2, "two GPUs, one process each, over NCCL", () => {
  it("greedy tokens of tp 2 (and tp 2 with expert parallelism) equal the reference interpreter's, f32 weights", async () => {
    const prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [27, 18, 28]];
    const run = async (o: Parameters<typeof openEngine>[0]) => {
      const { engine } = await openEngine({ model: "gpt-oss-tiny", dtype: "f32", seed: 4, maxContext: 64, maxSeqs: 4, maxStepTokens: 32, kvBlocks: 16, cacheDir: tempDir(), ...o });
      try {
        return await Promise.all(prompts.map(async (p) => (await drain(engine.generate({ promptIds: p, maxTokens: 8 }))).tokens));
      } finally {
        await engine.close();
      }
    };
    const expected = await run({ device: "cpu" });
    expect(await run({ device: "cuda", tp: 2 })).toEqual(expected);
    expect(await run({ device: "cuda", tp: 2, ep: 2 })).toEqual(expected);
  }, 600_000);
});
