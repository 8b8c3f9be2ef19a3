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
import { generate, generateBatch, interpreterRunner, KvCacheBook, referenceGenerate } from "../../src/generate/generate.js";
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

  const maxRelErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let maxErr = 0;
    let maxRef = 0;
    for (let j = 0; j < b.length; j++) {
      maxErr = Math.max(maxErr, Math.abs(a[j]! - b[j]!));
      maxRef = Math.max(maxRef, Math.abs(b[j]!));
    }
    return maxErr / maxRef;
  };
  const vocab = GPT_OSS_TINY.vocabSize;

  /** One prefill of `ids` on a fresh cache, logits for every row. */
  const recompute = (ids: readonly number[]) =>
    interpret(graph, "prefill", {
      ids: hostTensor("i32", [ids.length], ids),
      positions: hostTensor("i32", [ids.length], ids.map((_, i) => i)),
      logit_rows: hostTensor("i32", [ids.length], ids.map((_, i) => i)),
      ...new KvCacheBook(graph).prefillInputs(0, ids.length),
    }, params).logits!;

  it("decodes with the KV cache exactly as a full recomputation does, past the sliding window", () => {
    // the tiny config's window is 4: 6 generated tokens after 7 prompt tokens wrap the sliding ring
    const result = referenceGenerate(graph, params, prompt, { maxNewTokens: 6 });
    expect(result.tokens).toHaveLength(6);
    const full = recompute([...prompt, ...result.tokens.slice(0, -1)]);
    result.logits.forEach((step, i) => {
      expect(maxRelErr(step, full.data.subarray((prompt.length - 1 + i) * vocab, (prompt.length + i) * vocab))).toBeLessThan(1e-6);
    });
  });

  it("prefills in chunks (reading the cached rows, sliding ring included) as in one call", () => {
    const run = interpreterRunner(graph, params);
    const book = new KvCacheBook(graph);
    const ids = [...prompt, 11, 12, 13, 14, 15, 16];
    const chunks = [ids.slice(0, 5), ids.slice(5, 6), ids.slice(6)];
    const logits: number[] = [];
    for (const chunk of chunks) {
      const start = book.length(0);
      const out = run("prefill", {
        ids: hostTensor("i32", [chunk.length], chunk),
        positions: hostTensor("i32", [chunk.length], chunk.map((_, i) => start + i)),
        logit_rows: hostTensor("i32", [chunk.length], chunk.map((_, i) => i)),
        ...book.prefillInputs(0, chunk.length),
      });
      book.advance(0, chunk.length);
      logits.push(...out.logits!.data);
    }
    expect(maxRelErr(logits, recompute(ids).data)).toBeLessThan(1e-6);
  });

  it("decodes a batch of sequences as each alone, finishing at different times", () => {
    const batched = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 32, maxContext: 32, maxBatch: 3 });
    const prompts = [prompt, [9, 8, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]];
    const sampling = { maxNewTokens: 5, temperature: 0.8, keepLogits: true };
    // prompt 1 stops at its second token
    const stopTokens = [generate(batched, interpreterRunner(batched, params), prompts[1]!, { ...sampling, seed: 5 }).tokens[1]!];
    const opts = { ...sampling, seed: 4, stopTokens };
    const together = generateBatch(batched, interpreterRunner(batched, params), prompts, opts);
    prompts.forEach((p, i) => {
      const alone = generate(batched, interpreterRunner(batched, params), p, { ...opts, seed: 4 + i });
      expect(together[i]!.tokens).toEqual(alone.tokens);
      together[i]!.logits.forEach((l, j) => expect(maxRelErr(l, alone.logits[j]!)).toBeLessThan(1e-6));
    });
    expect(together[1]!.tokens.length).toBeLessThan(5); // stopped early while the others went on
  });

  it("gives sliding layers a ring of `window` rows per sequence, whatever the context bound", () => {
    const stateBytes = (maxContext: number, layer: number) => {
      const g = gptOssModel(GPT_OSS_20B, { dtype: "bf16", maxContext, maxPrefillTokens: 64 });
      const st = g.states.find((x) => x.name === `layers.${layer}.k_cache`)!;
      return evalShape(st.shape, g.symbols).reduce((a, b) => a * b, 2);
    };
    // layer 0 slides (window 128), layer 1 is full
    expect(stateBytes(1024, 0)).toBe(128 * 8 * 64 * 2);
    expect(stateBytes(8192, 0)).toBe(stateBytes(1024, 0));
    expect(stateBytes(8192, 1)).toBe(8 * stateBytes(1024, 1));
    const book = new KvCacheBook(graph);
    book.advance(0, 9);
    const inputs = book.decodeInputs([true]);
    // position 9 goes to ring row 9 mod 4 = 1; the ring then holds positions 8, 9, 6, 7
    expect(Array.from(inputs["cache_slots.sliding"]!.data)).toEqual([1]);
    expect(Array.from(inputs["cache_positions.sliding"]!.data)).toEqual([8, 9, 6, 7]);
    expect(Array.from(inputs["cache_positions.full"]!.data).filter((p) => p >= 0)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(() => book.decodeInputs([true, true])).toThrow(/1 to 1 sequences \(maxBatch\)/);
  });

  it("is deterministic for a seed", () => {
    const a = referenceGenerate(graph, params, prompt, { maxNewTokens: 3 }).tokens;
    const b = referenceGenerate(graph, randomParams(graph, 7), prompt, { maxNewTokens: 3 }).tokens;
    expect(a).toEqual(b);
  });
});

describe("gpt-oss context bound", () => {
  it("maxContext may not exceed the config's max_position_embeddings", () => {
    const short = { ...GPT_OSS_TINY, maxPositionEmbeddings: 8 };
    expect(() => gptOssModel(short, { dtype: "f32", maxContext: 27, maxPrefillTokens: 8 }, "short")).toThrow(
      "short: maxContext 27 exceeds the config's max_position_embeddings (8)",
    );
    expect(gptOssModel(short, { dtype: "f32", maxContext: 8, maxPrefillTokens: 8 }).symbols["past"]).toBe(8);
  });
});
