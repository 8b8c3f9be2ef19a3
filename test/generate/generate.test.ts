// Token selection and generation over a runner: greedy, temperature, top-k, top-p, seeds.
import { describe, expect, it } from "vitest";
import { argmax, checkSampling, generate, interpreterRunner, referenceGenerate, sampleToken } from "../../src/generate/generate.js";
import { seededRandom } from "../../src/ir/host-tensor.js";
import { gptOssModel } from "../../models/gpt-oss.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss-config.js";
import { randomParams } from "../../src/loader/random-params.js";

const logits = [0.1, 2.0, -1.0, 1.9, 2.0, 0.5];

describe("sampleToken", () => {
  it("is argmax (ties to the lower id) at temperature 0 and with top-k 1", () => {
    expect(argmax(logits)).toBe(1);
    expect(sampleToken(logits, {}, seededRandom(1))).toBe(1);
    for (let s = 0; s < 20; s++) expect(sampleToken(logits, { temperature: 5, topK: 1 }, seededRandom(s))).toBe(1);
  });

  it("keeps only the top-k and the top-p mass", () => {
    const seen = new Set<number>();
    for (let s = 0; s < 300; s++) seen.add(sampleToken(logits, { temperature: 1, topK: 3 }, seededRandom(s)));
    expect([...seen].sort()).toEqual([1, 3, 4]);
    const nucleus = new Set<number>();
    for (let s = 0; s < 300; s++) nucleus.add(sampleToken(logits, { temperature: 1, topP: 0.05 }, seededRandom(s)));
    expect([...nucleus]).toEqual([1]); // the first token alone already holds more than 5%
  });

  it("follows the softmax at the given temperature", () => {
    const counts = [0, 0];
    const rand = seededRandom(9);
    for (let i = 0; i < 4000; i++) counts[sampleToken([0, Math.log(3)], { temperature: 1 }, rand)]!++;
    expect(counts[1]! / 4000).toBeGreaterThan(0.7);
    expect(counts[1]! / 4000).toBeLessThan(0.8); // p = 3/4
  });

  it("rejects bad options by name", () => {
    expect(() => checkSampling({ temperature: -1 })).toThrow(/temperature/);
    expect(() => checkSampling({ topK: 1.5 })).toThrow(/top-k/);
    expect(() => checkSampling({ topP: 0 })).toThrow(/top-p/);
  });
});

describe("generate", () => {
  const graph = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 32, maxContext: 32 });
  const params = randomParams(graph, 2);

  it("is the reference generation when greedy", () => {
    const a = generate(graph, interpreterRunner(graph, params), [5, 6, 7], { maxNewTokens: 4 });
    expect(a.tokens).toEqual(referenceGenerate(graph, params, [5, 6, 7], { maxNewTokens: 4 }).tokens);
  });

  it("samples reproducibly for a seed, and differently for another", () => {
    const run = (seed: number) => generate(graph, interpreterRunner(graph, params), [5, 6, 7], { maxNewTokens: 8, temperature: 1.5, seed }).tokens;
    expect(run(1)).toEqual(run(1));
    expect([run(2), run(3), run(4)].some((t) => JSON.stringify(t) !== JSON.stringify(run(1)))).toBe(true);
  });
});
