// The gpt-oss graph: its parameters are the checkpoint's tensors, it runs through the interpreter,
// and incremental decoding with the KV cache gives the same logits as recomputing the whole sequence.
import { describe, expect, it } from "vitest";
import { gptOssModel } from "../../models/gpt-oss.js";
import { GPT_OSS_120B, GPT_OSS_20B, GPT_OSS_TINY, type GptOssConfig } from "../../models/gpt-oss-config.js";
import { gptOssCheckpointTensors } from "../../models/gpt-oss-checkpoint.js";
import { findBuiltinModel } from "../../models/index.js";
import { graphNodes } from "../../src/ir/graph.js";
import { hostTensor } from "../../src/ir/host-tensor.js";
import { interpret } from "../../src/ir/interpret.js";
import { evalShape } from "../../src/ir/shape.js";
import { verifyGraph } from "../../src/ir/verify.js";
import { HostKvCache, referenceGenerate } from "../../src/generate/generate.js";
import { randomParams } from "../../src/loader/random-params.js";

const SAFETENSORS_OF = { f32: "F32", bf16: "BF16", fp4e2m1x2: "U8", e8m0: "U8" } as const;

function paramTable(config: GptOssConfig, experts: "mxfp4" | "dense") {
  const g = gptOssModel(config, { dtype: "bf16", experts, maxPrefillTokens: 64, maxContext: 64 });
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

  it("builds a valid 20b graph with prefill and decode entry points", () => {
    const g = findBuiltinModel("gpt-oss-20b").build({ dtype: "bf16" });
    expect(verifyGraph(g)).toEqual([]);
    expect(g.entries.map((e) => e.name)).toEqual(["prefill", "decode"]);
    const ops = graphNodes(g).map((n) => n.op);
    expect(ops.filter((o) => o === "dequantMxfp4").length).toBe(24 * 2); // gate_up and down per layer
    expect(ops.filter((o) => o === "topk").length).toBe(24 * 2 * 2); // values + indices per layer and entry
  });

  it("omits attention biases when the config has none", () => {
    const g = gptOssModel({ ...GPT_OSS_TINY, attentionBias: false }, { dtype: "f32" });
    expect(g.params.some((p) => p.name.endsWith("q_proj.bias"))).toBe(false);
  });
});

describe("gpt-oss through the reference interpreter", () => {
  const graph = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 32, maxContext: 32 });
  const params = randomParams(graph, 7);
  const prompt = [3, 17, 42, 99, 5, 64, 8];

  it("decodes with the KV cache exactly as a full recomputation does", () => {
    const result = referenceGenerate(graph, params, prompt, { maxNewTokens: 6 });
    expect(result.tokens).toHaveLength(6);
    // recompute: one prefill over prompt + generated tokens, logits for every row
    const all = [...prompt, ...result.tokens.slice(0, -1)];
    const empty = (name: string) => ({ [name]: hostTensor("f32", [0, 2, 16], []) });
    const full = interpret(graph, "prefill", {
      ids: hostTensor("i32", [all.length], all),
      positions: hostTensor("i32", [all.length], all.map((_, i) => i)),
      logit_rows: hostTensor("i32", [all.length], all.map((_, i) => i)),
      "cache_positions.full": hostTensor("i32", [0], []),
      "cache_positions.sliding": hostTensor("i32", [0], []),
      ...empty("layers.0.k_cache"), ...empty("layers.0.v_cache"), ...empty("layers.1.k_cache"), ...empty("layers.1.v_cache"),
    }, params).logits!;
    const vocab = GPT_OSS_TINY.vocabSize;
    result.logits.forEach((step, i) => {
      const row = full.data.subarray((prompt.length - 1 + i) * vocab, (prompt.length + i) * vocab);
      let maxErr = 0;
      let maxRef = 0;
      for (let j = 0; j < vocab; j++) {
        maxErr = Math.max(maxErr, Math.abs(step[j]! - row[j]!));
        maxRef = Math.max(maxRef, Math.abs(row[j]!));
      }
      expect(maxErr / maxRef).toBeLessThan(1e-6);
    });
  });

  it("keeps a sliding layer's cache at window − 1 tokens while full layers grow", () => {
    const cache = new HostKvCache(graph, [2, 16], "f32");
    const row = (n: number) => hostTensor("f32", [n, 2, 16], new Array(n * 32).fill(0.5));
    for (let step = 0; step < 10; step++) {
      cache.append({ "layers.0.k": row(1), "layers.0.v": row(1), "layers.1.k": row(1), "layers.1.v": row(1) }, [step]);
    }
    // layer 0 slides (window 4 in the tiny config): 3 past tokens; layer 1 is full
    expect(cache.lengths()).toEqual([GPT_OSS_TINY.slidingWindow - 1, 10]);
    expect(Array.from(cache.inputs()["cache_positions.sliding"]!.data)).toEqual([7, 8, 9]);
  });

  it("is deterministic for a seed", () => {
    const a = referenceGenerate(graph, params, prompt, { maxNewTokens: 3 }).tokens;
    const b = referenceGenerate(graph, randomParams(graph, 7), prompt, { maxNewTokens: 3 }).tokens;
    expect(a).toEqual(b);
  });
});
