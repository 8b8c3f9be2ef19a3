// The gpt-oss graph: its parameters are the checkpoint's tensors, it runs through the interpreter,
// and incremental decoding with the KV cache gives the same logits as recomputing the whole sequence.
import { describe, expect, it } from "vitest";
import { gptOssLayout, gptOssModel } from "../../models/gpt-oss/model.js";
import { GPT_OSS_120B, GPT_OSS_20B, GPT_OSS_TINY, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { gptOssCheckpointTensors } from "../../models/gpt-oss/checkpoint.js";
import { findBuiltinModel } from "../../models/index.js";
import { graphNodes } from "../../src/ir/graph.js";
import { hostTensor } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import { evalShape } from "../../src/ir/shape.js";
import { verifyGraph } from "../../src/ir/verify.js";
import { openEngine } from "../../src/engine/open.js";
import { maxRelErr, recomputeGreedy, recomputeLogits } from "../engine/reference.js";
import { randomParams } from "../../src/loader/random-params.js";

const SAFETENSORS_OF = { f32: "F32", bf16: "BF16", fp4e2m1x2: "U8", e8m0: "U8" } as const;

function paramTable(config: GptOssConfig, experts: "mxfp4" | "dense") {
  const g = gptOssModel(config, { dtype: "bf16", experts, maxTokensPerStep: 64, maxContext: 64 });
  return g.params.map((p) => ({ name: p.name, shape: evalShape(p.shape, g.symbols), dtype: SAFETENSORS_OF[p.dtype as keyof typeof SAFETENSORS_OF] })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

describe("gpt-oss graph", () => {
  it("declares exactly the checkpoint's tensors, dense and MXFP4", () => {
    for (const config of [GPT_OSS_TINY, GPT_OSS_20B, GPT_OSS_120B]) {
      for (const [experts, format] of [["dense", "bf16"], ["mxfp4", "mxfp4"]] as const) {
        const expected = gptOssCheckpointTensors(config, format).map((t) => ({ name: t.name, shape: [...t.shape] })).sort((a, b) => (a.name < b.name ? -1 : 1));
        const params = paramTable(config, experts);
        expect(params.map(({ name, shape }) => ({ name, shape }))).toEqual(expected);
        for (const p of params) expect(gptOssCheckpointTensors(config, format).find((t) => t.name === p.name)!.dtypes).toContain(p.dtype);
      }
    }
  });

  it("builds a valid 20b graph with one step entry, bucketed by its token count", () => {
    const g = findBuiltinModel("gpt-oss-20b").build({ dtype: "bf16" });
    expect(verifyGraph(g)).toEqual([]);
    expect(g.entries.map((e) => e.name)).toEqual(["step"]);
    expect(g.entries[0]!.buckets).toEqual({ symbol: "tokens", cobounded: ["seqs", "rows"] });
    const ops = graphNodes(g).map((n) => n.op);
    expect(ops.filter((o) => o === "dequantMxfp4").length).toBe(24 * 2); // gate_up and down per layer
    expect(ops.filter((o) => o === "topk").length).toBe(24 * 2); // values + indices per layer
    expect(ops.filter((o) => o === "sample").length).toBe(1);
  });

  it("omits attention biases when the config has none", () => {
    const g = gptOssModel({ ...GPT_OSS_TINY, attentionBias: false }, { dtype: "f32" });
    expect(g.params.some((p) => p.name.endsWith("q_proj.bias"))).toBe(false);
  });
});

describe("gpt-oss through the engine on the reference interpreter", () => {
  const prompt = [3, 17, 42, 99, 5, 64, 8];
  const open = (o: { maxStepTokens?: number; maxContext?: number } = {}) =>
    openEngine({ device: "cpu", model: "gpt-oss-tiny", dtype: "f32", maxContext: o.maxContext ?? 32, maxSeqs: 4, maxStepTokens: o.maxStepTokens ?? 32, seed: 7 });

  async function logitsOf(engine: Awaited<ReturnType<typeof open>>["engine"], promptIds: readonly number[], maxTokens: number) {
    const s = engine.generate({ promptIds, maxTokens, logits: true });
    const out: { token: number; logits: Float64Array }[] = [];
    for await (const o of s) out.push({ token: o.token, logits: o.logits! });
    return out;
  }

  it("decodes with the paged KV cache exactly as a full recomputation does, past the sliding window", async () => {
    // the tiny config's window is 4: 6 generated tokens after 7 prompt tokens slide it past whole blocks
    const { engine, graph } = await open();
    const params = randomParams(graph, 7);
    const out = await logitsOf(engine, prompt, 6);
    expect(out).toHaveLength(6);
    // the oracle: the same model, every position's logits from one fresh step (rows up to the whole context)
    const bounds = { dtype: "f32", maxContext: 32, maxTokensPerStep: 32, maxSeqsPerStep: 32 } as const;
    const [oracle, layout] = [gptOssModel(GPT_OSS_TINY, bounds, "gpt-oss-tiny"), gptOssLayout(GPT_OSS_TINY, bounds)];
    const ids = [...prompt, ...out.slice(0, -1).map((o) => o.token)];
    const full = recomputeLogits(oracle, layout, params, ids);
    const vocab = GPT_OSS_TINY.vocabSize;
    out.forEach((o, i) => expect(maxRelErr(o.logits, full.data.subarray((prompt.length - 1 + i) * vocab, (prompt.length + i) * vocab))).toBeLessThan(1e-6));
    expect(out.map((o) => o.token)).toEqual(recomputeGreedy(oracle, layout, params, prompt, 6));
    await engine.close();
  });

  it("prefills in chunks (reading the pool, the window included) as in one step", async () => {
    const long = [...prompt, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
    const chunked = await open({ maxStepTokens: 4 });
    const whole = await open({ maxStepTokens: 32 });
    const a = await logitsOf(chunked.engine, long, 3);
    const b = await logitsOf(whole.engine, long, 3);
    expect(a.map((o) => o.token)).toEqual(b.map((o) => o.token));
    a.forEach((o, i) => expect(maxRelErr(o.logits, b[i]!.logits)).toBeLessThan(1e-6));
    expect(chunked.engine.stats().steps).toBeGreaterThan(whole.engine.stats().steps);
    await chunked.engine.close();
    await whole.engine.close();
  });

  it("keeps one KV group per attention kind, sliding blocks bounded by the window", () => {
    const layout = gptOssLayout(GPT_OSS_20B, { dtype: "bf16", maxContext: 8192, blockSize: 16 });
    expect(layout.groups.map((g) => [g.name, g.window, g.layers.length])).toEqual([["sliding", 128, 12], ["full", undefined, 12]]);
    expect(layout.groups[0]!.bytesPerBlock).toBe(12 * 2 * 16 * 8 * 64 * 2);
    expect(layout.maxBlocksPerSeq).toBe(512);
    const g = gptOssModel(GPT_OSS_20B, { dtype: "bf16", maxContext: 8192 });
    // pools are sized when the plan loads: their row count is a load-time symbol
    expect(g.states.find((x) => x.name === "layers.0.k_cache")!.shape).toEqual(["slidingSlots", 8, 64]);
    expect(g.states.find((x) => x.name === "layers.1.k_cache")!.shape).toEqual(["fullSlots", 8, 64]);
  });

  it("is deterministic for a seed", async () => {
    const a = await open();
    const b = await open();
    expect((await logitsOf(a.engine, prompt, 3)).map((o) => o.token)).toEqual((await logitsOf(b.engine, prompt, 3)).map((o) => o.token));
    await a.engine.close();
    await b.engine.close();
  });
});

describe("gpt-oss context bound", () => {
  it("maxContext may not exceed the config's max_position_embeddings", () => {
    const short = { ...GPT_OSS_TINY, maxPositionEmbeddings: 8 };
    expect(() => gptOssModel(short, { dtype: "f32", maxContext: 27, maxTokensPerStep: 8 }, "short")).toThrow(
      "short: maxContext 27 exceeds the config's max_position_embeddings (8)",
    );
    expect(gptOssLayout(short, { dtype: "f32", maxContext: 8, maxTokensPerStep: 8 }).maxContext).toBe(8);
  });
});
