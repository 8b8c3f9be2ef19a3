// Token selection edge cases: top-k 1 and tiny top-p are greedy, top-p 1 and top-k ≥ vocabulary change
// nothing, the nucleus boundary, a large vocabulary, and generation-level options (stop tokens, streaming,
// bounds, bad prompts).
import { describe, expect, it } from "vitest";
import { argmax, generate, interpreterRunner, sampleToken } from "../../src/generate/generate.js";
import { seededRandom } from "../../src/ir/host-tensor.js";
import { gptOssModel } from "../../models/gpt-oss.js";
import { GPT_OSS_TINY } from "../../models/gpt-oss-config.js";
import { randomParams } from "../../src/loader/random-params.js";

function draws(logits: readonly number[], options: Parameters<typeof sampleToken>[1], seed: number, n: number): number[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => sampleToken(logits, options, rand));
}

describe("sampleToken edge cases", () => {
  const logits = [0.3, -1.2, 2.2, 0.9, 2.1, -0.4, 1.5, 0.0];

  it("top-p 1 and top-k ≥ vocabulary draw exactly what unrestricted sampling draws", () => {
    const plain = draws(logits, { temperature: 0.8 }, 5, 200);
    expect(draws(logits, { temperature: 0.8, topP: 1 }, 5, 200)).toEqual(plain);
    expect(draws(logits, { temperature: 0.8, topK: 8 }, 5, 200)).toEqual(plain);
    expect(draws(logits, { temperature: 0.8, topK: 1000 }, 5, 200)).toEqual(plain);
    expect(new Set(plain).size).toBeGreaterThan(4);
  });

  it("a nucleus smaller than the most likely token keeps that token alone", () => {
    expect(new Set(draws(logits, { temperature: 1, topP: 1e-9 }, 3, 100))).toEqual(new Set([argmax(logits)]));
  });

  it("the nucleus stops at the first token whose cumulative mass reaches p", () => {
    // probabilities 0.5, 0.3, 0.2 (temperature 1): p = 0.5 keeps one token, p = 0.8 keeps two, p = 0.81 three
    const probs = [Math.log(0.2), Math.log(0.5), Math.log(0.3)];
    expect(new Set(draws(probs, { temperature: 1, topP: 0.5 }, 1, 300))).toEqual(new Set([1]));
    expect(new Set(draws(probs, { temperature: 1, topP: 0.79 }, 1, 300))).toEqual(new Set([1, 2]));
    expect(new Set(draws(probs, { temperature: 1, topP: 0.81 }, 1, 300))).toEqual(new Set([0, 1, 2]));
  });

  it("top-k and top-p together keep the smaller set", () => {
    expect(new Set(draws(logits, { temperature: 1, topK: 2, topP: 0.99 }, 4, 300))).toEqual(new Set([2, 4]));
  });

  it("ties among the kept tokens are all reachable; equal logits keep the lower ids under top-k", () => {
    expect(new Set(draws([1, 1, 1, 1], { temperature: 1, topK: 2 }, 8, 200))).toEqual(new Set([0, 1]));
  });

  it("samples a 201,088-token vocabulary with top-p quickly", () => {
    const rand = seededRandom(11);
    const big = Array.from({ length: 201_088 }, () => rand() * 8);
    const started = performance.now();
    const picks = draws(big, { temperature: 0.7, topP: 0.9 }, 2, 5); // about 50 ms a draw here (flat logits: a wide nucleus)
    expect(performance.now() - started).toBeLessThan(3000);
    picks.forEach((t) => expect(big[t]!).toBeGreaterThan(2)); // the bottom quarter of logits is far outside the nucleus
  });
});

describe("generate options", () => {
  const graph = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 16, maxContext: 32 });
  const params = randomParams(graph, 2);
  const run = interpreterRunner(graph, params);
  const prompt = [5, 6, 7, 100, 3, 9, 27, 1, 64, 12, 8, 44];

  it("greedy decoding gives the tokens the reference loop gave before it ran over a runner", () => {
    // recorded from the interpreter-only referenceGenerate (commit 7598345) on this model, seed and prompt;
    // the sliding window (4) is shorter than the prompt, so the cache evicts
    const big = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 32, maxContext: 32 });
    const result = generate(big, interpreterRunner(big, randomParams(big, 2)), prompt, { maxNewTokens: 12 });
    expect(result.tokens).toEqual([114, 95, 46, 91, 47, 114, 82, 10, 45, 45, 45, 114]);
    expect(result.logits).toEqual([]); // kept only when asked
  });

  it("prefills a prompt longer than the prefill bound in chunks, as one prefill would", () => {
    const big = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 32, maxContext: 32 });
    const long = [...prompt, ...prompt.slice(0, 9)]; // 21 tokens: chunks of 16 and 5
    const whole = generate(big, interpreterRunner(big, params), long, { maxNewTokens: 4, keepLogits: true });
    const chunked = generate(graph, interpreterRunner(graph, params), long, { maxNewTokens: 4, keepLogits: true });
    expect(chunked.tokens).toEqual(whole.tokens);
    chunked.logits.forEach((l, i) => l.forEach((v, j) => expect(v).toBeCloseTo(whole.logits[i]![j]!, 9)));
  });

  it("top-k 1 at any temperature is greedy decoding", () => {
    const greedy = generate(graph, run, prompt, { maxNewTokens: 6 }).tokens;
    expect(generate(graph, run, prompt, { maxNewTokens: 6, temperature: 3, topK: 1, seed: 9 }).tokens).toEqual(greedy);
  });

  it("stops after a stop token, streams every token, and keeps logits when asked", () => {
    const greedy = generate(graph, run, prompt, { maxNewTokens: 6 }).tokens;
    const streamed: number[] = [];
    const stopped = generate(graph, run, prompt, { maxNewTokens: 6, stopTokens: [greedy[2]!], onToken: (t) => streamed.push(t), keepLogits: true });
    const stopAt = greedy.indexOf(greedy[2]!);
    expect(stopped.tokens).toEqual(greedy.slice(0, stopAt + 1));
    expect(streamed).toEqual(stopped.tokens);
    expect(stopped.logits).toHaveLength(stopped.tokens.length);
    expect(stopped.logits.map((l) => argmax(l))).toEqual(stopped.tokens);
    expect(generate(graph, run, prompt, { maxNewTokens: 0 }).tokens).toEqual([]);
  });

  it("rejects prompts outside the vocabulary or the model's bounds, by name", () => {
    expect(() => generate(graph, run, [], { maxNewTokens: 1 })).toThrow(/the prompt is empty/);
    expect(() => generate(graph, run, [1, 128], { maxNewTokens: 1 })).toThrow(/prompt id 128 is outside the model's vocabulary of 128 tokens \(at position 1\)/);
    expect(() => generate(graph, run, [1, -2], { maxNewTokens: 1 })).toThrow(/prompt id -2 is not a token id \(at position 1\)/);
    expect(() => generate(graph, run, prompt, { maxNewTokens: 30 })).toThrow(/exceed the model's context bound \(maxContext 32\)/);
    expect(() => generate(graph, run, prompt, { maxNewTokens: 2, topP: 1.5 })).toThrow(/top-p must be in \(0, 1\]/);
  });
});

describe("non-finite logits", () => {
  const vocab = 16;
  const nan = new Array<number>(vocab).fill(Number.NaN);

  it("are an error naming the step, greedy or sampled, never a token", () => {
    expect(() => sampleToken(nan, { temperature: 0 }, seededRandom(1), "step 3")).toThrow(/^step 3: the logits hold NaN \(16 of 16 values are NaN or infinite; the first at token 0\)/);
    expect(() => sampleToken(nan, { temperature: 1, topK: 4 }, seededRandom(1), "step 3")).toThrow(/^step 3: the logits hold NaN/);
    const inf = Array.from({ length: vocab }, (_, i) => (i === 5 ? Infinity : 0));
    expect(() => sampleToken(inf, { temperature: 0.7 }, seededRandom(1))).toThrow(/the logits hold Inf \(1 of 16 values .* the first at token 5\)/);
    expect(() => sampleToken(new Array<number>(vocab).fill(-Infinity), { temperature: 0 }, seededRandom(1))).toThrow(/no finite value/);
  });

  it("a -Inf logit is a masked token (probability 0), not an error", () => {
    const masked = [-Infinity, 0.5, -Infinity, 0.2];
    expect(sampleToken(masked, { temperature: 0 }, seededRandom(1))).toBe(1);
    expect(new Set(draws(masked, { temperature: 1 }, 2, 200))).toEqual(new Set([1, 3]));
  });

  it("stop generation at the step that produced them, for the interpreter or any runner", () => {
    const graph = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxPrefillTokens: 8, maxContext: 16 });
    const run = interpreterRunner(graph, randomParams(graph, 1));
    let decodes = 0;
    const poisonedAtDecode2 = (entry: string, inputs: Parameters<typeof run>[1]) => {
      const out = run(entry, inputs);
      if (entry === "decode" && ++decodes === 2) return { ...out, logits: { ...out["logits"]!, data: out["logits"]!.data.map(() => Number.NaN) } };
      return out;
    };
    const tokens: number[] = [];
    expect(() => generate(graph, poisonedAtDecode2, [1, 2, 3], { maxNewTokens: 6, onToken: (t) => tokens.push(t) })).toThrow(/^step 2: the logits hold NaN/);
    expect(tokens).toHaveLength(2);
    expect(tokens.every((t) => Number.isInteger(t) && t >= 0)).toBe(true);
  });
});
