// The sharding pass (tensor and expert parallelism): the graphs of N simulated ranks, run together on the reference
// interpreter with their collectives, equal the unsharded graph — the same greedy and sampled tokens, f32 logits within
// 1e-6 — for N = 2, 4, 8, attention TP with the experts split inside (TP), across ranks (EP) and both (expert
// groups × TP inside each), on gpt-oss-tiny and on odd shapes: query heads not divisible by N, fewer KV heads than
// ranks, experts and the vocabulary not divisible by N, MXFP4 experts whose intermediate blocks do not divide.
// The runs go through the serving engine (paged KV cache, prefill chunks and decodes batched together).
import { describe, expect, it } from "vitest";
import { GPT_OSS_TINY, type GptOssConfig } from "../../models/gpt-oss/config.js";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { drain } from "../engine/reference.js";
import { openEngine } from "../../src/engine/open.js";
import type { Graph } from "../../src/ir/graph.js";
import { graphNodes } from "../../src/ir/graph.js";
import { opCounts, runShardedPipeline } from "../../src/passes/pipeline.js";
import { expertAssignment, headAssignment, type Part } from "../../src/passes/shard.js";
import { partSize } from "../../src/passes/shard-layout.js";

const ODD: GptOssConfig = { ...GPT_OSS_TINY, numHeads: 6, numKvHeads: 3, numExperts: 5, vocabSize: 101, intermediateSize: 24, slidingWindow: 5 };
// MXFP4 experts: hidden and intermediate multiples of 32; 2 intermediate blocks over up to 8 ranks
const ODD_MXFP4: GptOssConfig = { ...ODD, intermediateSize: 64, quantization: { method: "mxfp4", modulesToNotConvert: [] } };
// no attention biases (plain matmuls, not fusedLinear), one KV head for 8 query heads, every expert picked
const NO_BIAS: GptOssConfig = { ...GPT_OSS_TINY, attentionBias: false, numHeads: 8, numKvHeads: 1, numExperts: 3, expertsPerToken: 3, vocabSize: 97 };

const heads = (p: Part) => p.flatMap(([s, e]) => Array.from({ length: e - s }, (_, i) => s + i));

describe("head and expert assignments", () => {
  for (const [h, kvh] of [[64, 8], [4, 2], [6, 3], [8, 1], [5, 5]] as const)
    for (const n of [1, 2, 3, 4, 8])
      it(`${h} query heads, ${kvh} KV heads over ${n} ranks: every query head once, each rank reading exactly its KV heads`, () => {
        const { q, kv } = headAssignment(h, kvh, n);
        expect(q).toHaveLength(n);
        expect(q.flatMap(heads).sort((a, b) => a - b)).toEqual(Array.from({ length: h }, (_, i) => i));
        const g = h / kvh;
        q.forEach((part, r) => {
          const mine = heads(part);
          const kvs = heads(kv[r]!);
          if (mine.length === 0) return expect(kvs).toEqual([]);
          // pagedAttention's grouping on the rank: local head i reads local KV head ⌊i / (q / kv)⌋
          expect(mine.length % kvs.length).toBe(0);
          mine.forEach((head, i) => expect(Math.floor(head / g)).toBe(kvs[Math.floor(i / (mine.length / kvs.length))]));
        });
        if (n <= kvh) expect(kv.flatMap(heads).sort((a, b) => a - b)).toEqual(Array.from({ length: kvh }, (_, i) => i)); // split, not replicated
      });

  it("experts in balanced groups, each expert's intermediate split in whole units over its group", () => {
    const a = expertAssignment(5, 64, 8, 2, 32);
    expect(a.experts).toEqual([[0, 3], [0, 3], [0, 3], [0, 3], [3, 5], [3, 5], [3, 5], [3, 5]]);
    expect(a.inter).toEqual([[0, 32], [32, 64], [64, 64], [64, 64], [0, 32], [32, 64], [64, 64], [64, 64]]);
    expect(a.biasOwner).toEqual([true, false, false, false, true, false, false, false]);
  });
});

describe("rank graphs", () => {
  const build = (tp: number, ep: number) => runShardedPipeline(gptOssModel(GPT_OSS_TINY, { dtype: "bf16", maxTokensPerStep: 16, maxSeqsPerStep: 4, maxContext: 64 }), { ranks: tp, expertGroups: ep }).rankSet;

  it("hold the fused ops over their slices, sliced parameters, and the same collectives on every rank", () => {
    const set = build(2, 1);
    expect(set.ranks).toHaveLength(2);
    for (const [r, g] of set.ranks.entries()) {
      const counts = opCounts(g);
      expect(counts, `rank ${r}`).toMatchObject({ pagedAttention: 2, moeExperts: 2, groupedLinear: 6, fusedRope: 4, allReduce: 5, allGather: 2, sample: 1 });
      const param = (name: string) => g.params.find((p) => p.name === name)!;
      expect(param("model.layers.0.self_attn.q_proj.weight")).toMatchObject({ shape: [32, 64], slice: { full: [64, 64], axes: [{ axis: 0, ranges: [[32 * r, 32 * r + 32]] }] } });
      expect(param("model.layers.0.self_attn.o_proj.weight")).toMatchObject({ shape: [64, 32], slice: { axes: [{ axis: 1, ranges: [[32 * r, 32 * r + 32]] }] } });
      expect(param("model.layers.0.self_attn.sinks").shape).toEqual([2]);
      expect(param("model.layers.0.mlp.experts.gate_up_proj")).toMatchObject({ shape: [4, 64, 32], slice: { axes: [{ axis: 2, ranges: [[32 * r, 32 * r + 32]] }] } });
      expect(param("lm_head.weight").shape).toEqual([64, 64]);
      expect(param("model.embed_tokens.weight").shape).toEqual([64, 64]);
      expect(param("model.layers.0.mlp.router.weight").slice).toBeUndefined();
      expect(g.states.find((st) => st.name === "layers.0.k_cache")!.shape).toEqual(["slidingSlots", 1, 16]);
    }
    expect(set.collectives).toEqual({ step: 7 });
    expect(set.splitOutputs).toEqual({ step: { logits: { axis: 1, size: 128, parts: [[[0, 64]], [[64, 128]]] } } });
  });

  it("expert parallelism: whole experts per rank, routing over all of them; a rank without heads computes no attention", () => {
    const set = build(8, 8);
    const g = set.ranks[2]!; // tiny has 4 query heads over 8 ranks: ranks 2, 3, 6, 7 hold none
    const moe = graphNodes(g).filter((n) => n.op === "moeExperts");
    expect(moe.map((n) => (n.attrs as { firstExpert?: number }).firstExpert)).toEqual([2, 2]);
    expect(opCounts(g).pagedAttention ?? 0).toBe(0);
    expect(g.states).toEqual([]);
    expect(opCounts(set.ranks[0]!).pagedAttention).toBe(2);
    // ranks 4..7 hold no experts of 4: their MoE contributes zeros, no expert weights
    expect(set.ranks[5]!.params.some((p) => p.name.includes("experts"))).toBe(false);
  });

  it("refuses a graph that already holds collectives, and strategies that do not divide", () => {
    const [first] = build(2, 1).ranks as [Graph];
    expect(() => runShardedPipeline(first, { ranks: 2 })).toThrow(/already holds a collective/);
    expect(() => build(4, 3)).toThrow(/expert groups \(3\) must divide the ranks \(4\)/);
  });
});

const PROMPTS = [[5, 9, 14, 2, 77, 31, 8, 40, 21, 3, 66, 12, 1, 90, 45, 17, 29, 33, 4], [7], [44, 3, 2, 91, 60], [12, 12, 12, 12, 12, 12, 12, 12]];
/** Greedy, top-k and top-k + top-p requests, each with its logits. */
const REQUESTS = PROMPTS.map((promptIds, i) => ({
  promptIds,
  maxTokens: 6,
  logits: true,
  seed: 100 + i,
  ...(i % 2 === 1 ? { temperature: 0.9, topK: 4 + i, ...(i === 3 ? { topP: 0.8 } : {}) } : {}),
}));

async function generateAll(config: GptOssConfig, tp: number, ep: number) {
  const { engine } = await openEngine({ device: "cpu", config, dtype: "f32", maxContext: 48, maxSeqs: 4, maxStepTokens: 16, seed: 5, ...(tp > 1 ? { tp, ep } : {}) });
  try {
    return await Promise.all(REQUESTS.map((r) => drain(engine.generate(r))));
  } finally {
    await engine.close();
  }
}

function maxRelErr(a: Float64Array, b: Float64Array): number {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    ref = Math.max(ref, Math.abs(b[i]!));
  }
  return err / ref;
}

describe("simulated ranks equal the unsharded model", () => {
  const strategies = (n: number): [string, number][] => [["TP", 1], ["EP", n], ...(n >= 4 ? [["EP×TP", 2] as [string, number]] : [])];
  // (3 ranks: TP and EP; 8 ranks of NO_BIAS: 3 experts in 8 groups leave ranks without experts)
  const cases: [string, GptOssConfig, number[]][] = [
    ["gpt-oss-tiny", GPT_OSS_TINY, [2, 4, 8]], ["odd shapes", ODD, [2, 4, 8]], ["odd shapes, MXFP4 experts", ODD_MXFP4, [2, 4, 8]], ["no attention biases, one KV head", NO_BIAS, [3, 8]],
  ];
  for (const [name, config, rankCounts] of cases) {
    it(`${name}: the same tokens (greedy and sampled) and f32 logits within 1e-6 on ${rankCounts.join(", ")} ranks`, async () => {
      const expected = await generateAll(config, 1, 1);
      for (const n of rankCounts) {
        for (const [strategy, ep] of strategies(n)) {
          const got = await generateAll(config, n, ep);
          got.forEach((g, i) => {
            const what = `${name}, ${n} ranks, ${strategy}, request ${i}`;
            expect(g.tokens, what).toEqual(expected[i]!.tokens);
            expect(g.logits.length, what).toBe(expected[i]!.logits.length);
            g.logits.forEach((l, t) => expect(maxRelErr(l, expected[i]!.logits[t]!), `${what}, token ${t}`).toBeLessThan(1e-6));
          });
        }
      }
    });
  }
});

describe("sizes", () => {
  it("each rank holds about 1/N of the attention and expert weights (gpt-oss-20b shapes, 4 ranks)", () => {
    const graph = gptOssModel({ ...GPT_OSS_TINY, numLayers: 2, hiddenSize: 2880, intermediateSize: 2880, numHeads: 64, numKvHeads: 8, headDim: 64, numExperts: 32, expertsPerToken: 4, vocabSize: 201088, quantization: { method: "mxfp4", modulesToNotConvert: [] } }, { dtype: "bf16", maxTokensPerStep: 8, maxSeqsPerStep: 4, maxContext: 64 });
    const { rankSet } = runShardedPipeline(graph, { ranks: 4, expertGroups: 4 });
    const elements = (g: Graph, match: RegExp) => g.params.filter((p) => match.test(p.name)).reduce((n, p) => n + (p.shape as number[]).reduce((a, b) => a * b, 1), 0);
    for (const match of [/self_attn\.(q|k|v|o)_proj\.weight/, /experts\.(gate_up|down)_proj_blocks/, /lm_head|embed_tokens/]) {
      const whole = elements(graph, match);
      for (const g of rankSet.ranks) expect(elements(g, match) / whole, String(match)).toBeCloseTo(0.25, 5);
    }
    expect(partSize([[0, 3]])).toBe(3);
  });
});
