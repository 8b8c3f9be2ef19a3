// The serving engine over the reference interpreter (gpt-oss-tiny, f32) and over a scripted backend: a request's
// greedy tokens do not depend on what it is batched with (random arrivals, mixes, preemption, aborts, shared
// prefixes), the blocks all come back, sampling is reproducible per request, and the request API's edges (stop
// tokens and strings, log-probabilities, non-finite logits, aborts, bad requests, a full queue) behave.
import { describe, expect, it } from "vitest";
import { EngineOverloadedError, EngineRequestError, type GenerationRequest } from "../../src/engine/api.js";
import { drain } from "./reference.js";
import type { StepBackend } from "../../src/engine/backend.js";
import type { PagedDecoderLayout } from "../../src/engine/contract.js";
import { logprobsOf, ServingEngine } from "../../src/engine/engine.js";
import { openEngine } from "../../src/engine/open.js";
import { HarmonyTokenizer } from "../../src/generate/tokenizer.js";
import { seededRandom } from "../../src/ir/host-tensor.js";

const tiny = (o: { kvBlocks?: number; maxSeqs?: number; maxStepTokens?: number; prefixCaching?: boolean; planAhead?: boolean } = {}) =>
  openEngine({
    device: "cpu", model: "gpt-oss-tiny", dtype: "f32", maxContext: 64, maxSeqs: o.maxSeqs ?? 6, maxStepTokens: o.maxStepTokens ?? 24, seed: 3,
    ...(o.kvBlocks ? { kvBlocks: o.kvBlocks } : {}), ...(o.prefixCaching === false ? { prefixCaching: false } : {}), ...(o.planAhead === false ? { planAhead: false } : {}),
  });

describe("engine on the interpreter: tokens do not depend on the batch", () => {
  const rand = seededRandom(11);
  const base = [5, 9, 14, 2, 77, 31, 8, 40, 21, 3, 66, 12, 1, 90, 45, 17, 29, 33];
  // shared prefixes (a whole block of 16 and more), short and long prompts, a token-id repeated prompt
  const prompts = [
    base.slice(0, 3), base, base.slice(0, 17), [...base, 100, 101], [7], Array.from({ length: 30 }, () => Math.floor(rand() * 128)),
    [...base.slice(0, 16), 99, 98], base.slice(0, 10), Array.from({ length: 9 }, () => Math.floor(rand() * 128)),
  ];
  const lengths = prompts.map((_, i) => 3 + ((i * 5) % 9));

  it("every request's greedy tokens equal the request run alone, under arrivals, preemption, aborts and prefix sharing", async () => {
    // the reference: each request alone, every step planned after the last one's tokens reached the host
    const alone = await tiny({ kvBlocks: 64, planAhead: false });
    const expected: number[][] = [];
    for (const [i, p] of prompts.entries()) expected.push((await drain(alone.engine.generate({ promptIds: p, maxTokens: lengths[i]! }))).tokens);
    await alone.engine.close();

    const cases = [
      ["ample pool", { kvBlocks: 64 }], ["pool small enough to preempt", { kvBlocks: 6, maxSeqs: 4 }], ["no prefix caching", { kvBlocks: 12, prefixCaching: false }],
      ["no steps planned ahead", { kvBlocks: 64, planAhead: false }],
    ] as const;
    for (const [case_, o] of cases) {
      const { engine } = await tiny(o);
      const order = prompts.map((_, i) => i).sort(() => rand() - 0.5);
      const runs: Promise<{ i: number; tokens: number[]; reason: string }>[] = [];
      const aborted = new Set([order[2]!]);
      for (const [k, i] of order.entries()) {
        if (k % 3 === 0) await new Promise((r) => setImmediate(r)); // arrivals while others run
        const ac = new AbortController();
        const stream = engine.generate({ promptIds: prompts[i]!, maxTokens: lengths[i]!, signal: ac.signal });
        runs.push(
          (async () => {
            const tokens: number[] = [];
            for await (const out of stream) {
              tokens.push(out.token);
              if (aborted.has(i) && tokens.length === 2) ac.abort(); // mid-stream
            }
            return { i, tokens, reason: (await stream.done).finishReason };
          })(),
        );
      }
      const done = await Promise.all(runs);
      for (const r of done) {
        if (aborted.has(r.i)) {
          expect(r.reason, case_).toBe("abort");
          expect(r.tokens, case_).toEqual(expected[r.i]!.slice(0, r.tokens.length));
        } else {
          expect(r.reason, `${case_}: request ${r.i}`).toBe("length");
          expect(r.tokens, `${case_}: request ${r.i}`).toEqual(expected[r.i]);
        }
      }
      const stats = engine.stats();
      for (const [g, c] of Object.entries(stats.blocks)) expect(c.used, `${case_}: group ${g}`).toBe(0);
      if (case_ === "pool small enough to preempt") expect(stats.preemptions).toBeGreaterThan(0);
      if (case_ === "ample pool") expect(stats.prefixHitTokens).toBeGreaterThan(0);
      // decode steps were queued behind the step before, their tokens fed back (unless turned off)
      if (case_ === "no steps planned ahead") expect(stats.stepsAhead).toBe(0);
      else expect(stats.stepsAhead, case_).toBeGreaterThan(0);
      expect(stats.running + stats.waiting).toBe(0);
      await engine.close();
    }
  });

  it("samples reproducibly per request: the same seed gives the same tokens alone and in a batch", async () => {
    const { engine } = await tiny();
    const req = (seed: number): GenerationRequest => ({ promptIds: base.slice(0, 5), maxTokens: 8, temperature: 0.9, topK: 20, topP: 0.9, seed });
    const solo = (await drain(engine.generate(req(5)))).tokens;
    const [a, b, c] = await Promise.all([drain(engine.generate(req(5))), drain(engine.generate(req(6))), drain(engine.generate({ promptIds: [1, 2], maxTokens: 5 }))]);
    expect(a.tokens).toEqual(solo);
    expect(b.tokens).not.toEqual(solo);
    expect(c.tokens).toHaveLength(5);
    await engine.close();
  });

  it("stops at a stop token and reports it", async () => {
    const { engine } = await tiny();
    const free = (await drain(engine.generate({ promptIds: [4, 4, 4], maxTokens: 6 }))).tokens;
    const stop = free[2]!;
    const r = await drain(engine.generate({ promptIds: [4, 4, 4], maxTokens: 6, stopTokenIds: [stop] }));
    expect(r.tokens).toEqual(free.slice(0, free.indexOf(stop) + 1));
    expect(r.summary.finishReason).toBe("stop");
    expect(r.summary.stoppedBy).toBe(stop);
    await engine.close();
  });

  it("refuses bad requests by field, and keeps the event loop free while it works", async () => {
    const { engine } = await tiny();
    const bad: [Partial<GenerationRequest>, string][] = [
      [{ promptIds: [] }, "promptIds"],
      [{ promptIds: [1, 500] }, "promptIds"],
      [{ maxTokens: 0 }, "maxTokens"],
      [{ temperature: -1 }, "temperature"],
      [{ topP: 0 }, "topP"],
      [{ topK: 1.5 }, "topK"],
      [{ logprobs: 21 }, "logprobs"],
      [{ stopStrings: ["x"] }, "stopStrings"], // no tokenizer for this vocabulary
      [{ promptIds: Array.from({ length: 64 }, () => 1) }, "promptIds"], // leaves no room to generate
    ];
    for (const [override, field] of bad) {
      let err: unknown;
      try {
        engine.generate({ promptIds: [1, 2], maxTokens: 2, ...override });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(override)).toBeInstanceOf(EngineRequestError);
      expect((err as EngineRequestError).field).toBe(field);
    }
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await drain(engine.generate({ promptIds: [1, 2, 3], maxTokens: 30 }));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(3);
    expect(engine.stats().blocks["full"]!.used).toBe(0);
    await engine.close();
  });
});

/** An engine over a backend that samples `script(position of the new token)` and reports fixed logits. */
function scriptedEngine(script: (position: number) => number, vocab = 201088, opts: { maxWaiting?: number; badAt?: number; log?: string[] } = {}) {
  const layout: PagedDecoderLayout = { blockSize: 16, maxBlocksPerSeq: 8, maxContext: 128, maxTokensPerStep: 64, maxSeqsPerStep: 8, groups: [{ name: "full", layers: [0], bytesPerBlock: 1 }], vocabSize: vocab };
  let steps = 0;
  const backend: StepBackend = {
    device: "cpu",
    async step(inputs) {
      steps++;
      opts.log?.push(`launch ${steps}`);
      const positions = inputs["positions"]!.data;
      const tokens = Array.from(inputs["logit_rows"]!.data, (t) => (opts.badAt !== undefined && steps === opts.badAt ? -1 : script(positions[t]! + 1)));
      return { tokens: Int32Array.from(tokens), logits: () => Float64Array.from({ length: vocab }, (_, i) => (i % 7) - 3) };
    },
    dispose() {},
  };
  const info = { name: "scripted", vocabSize: vocab, maxContext: 128, eosTokenIds: [], device: "cpu" as const, ...(vocab === 201088 ? { tokenizer: "o200k_harmony" as const } : {}) };
  return new ServingEngine(backend, layout, info, { full: 64 }, { ...(opts.maxWaiting !== undefined ? { maxWaiting: opts.maxWaiting } : {}) });
}

describe("engine request API (scripted backend)", () => {
  const tok = HarmonyTokenizer.instance();
  const words = tok.encode(" alpha beta gamma STOP delta epsilon");

  it("ends at a stop string, reporting the text before it, across token boundaries", async () => {
    // the model emits the words one token at a time, whatever the prompt
    const engine = scriptedEngine((p) => words[(p - 2) % words.length]!);
    const r = await drain(engine.generate({ promptIds: [1, 2], maxTokens: 20, stopStrings: ["MA ST", "STOP"] }));
    expect(r.summary.finishReason).toBe("stop");
    expect(r.summary.stoppedBy).toBe("STOP");
    expect(r.texts.join("")).toBe(" alpha beta gamma ");
    await engine.close();
  });

  it("a stop string completed by the request's last token (maxTokens) ends it by the stop string", async () => {
    const engine = scriptedEngine((p) => words[(p - 2) % words.length]!);
    let upTo = 1;
    while (!tok.decode(words.slice(0, upTo)).includes("STOP")) upTo++;
    const r = await drain(engine.generate({ promptIds: [1, 2], maxTokens: upTo, stopStrings: ["STOP"] }));
    expect(r.summary).toMatchObject({ finishReason: "stop", stoppedBy: "STOP", completionTokens: upTo });
    expect(r.texts.join("")).toBe(" alpha beta gamma ");
    expect(engine.stats().finished).toMatchObject({ stop: 1, length: 0, abort: 0 });
    await engine.close();
  });

  it("delivers a step's tokens after the next step is launched, and the summary after the last token", async () => {
    const log: string[] = [];
    const engine = scriptedEngine((p) => words[(p - 2) % words.length]!, 201088, { log });
    const stream = engine.generate({ promptIds: [1, 2], maxTokens: 4 });
    void stream.done.then((s) => log.push(`done ${s.finishReason}`));
    const texts: string[] = [];
    for await (const o of stream) {
      log.push(`token ${texts.length + 1}`);
      texts.push(o.text);
    }
    await stream.done;
    // step k samples token k; its consumer runs while step k + 1 computes; nothing is launched after the last
    expect(log.filter((l) => !l.startsWith("done"))).toEqual(["launch 1", "launch 2", "token 1", "launch 3", "token 2", "launch 4", "token 3", "token 4"]);
    // the summary comes with the last token (the stream holds it when `done` resolves), not a step earlier
    expect(log.indexOf("done length")).toBeGreaterThan(log.indexOf("token 3"));
    expect(texts.join("")).toBe(tok.decode(words.slice(0, 4)));
    await engine.close();
  });

  it("a consumer that aborts on a token drops the step already launched for it: its tokens and summary are unchanged", async () => {
    const log: string[] = [];
    const engine = scriptedEngine((p) => words[(p - 2) % words.length]!, 201088, { log });
    const ac = new AbortController();
    const stream = engine.generate({ promptIds: [1, 2], maxTokens: 10, signal: ac.signal });
    const tokens: number[] = [];
    for await (const o of stream) {
      tokens.push(o.token);
      if (tokens.length === 2) ac.abort();
    }
    const summary = await stream.done;
    expect(tokens).toEqual(words.slice(0, 2));
    expect(summary).toMatchObject({ finishReason: "abort", completionTokens: 2 });
    expect(log).toEqual(["launch 1", "launch 2", "launch 3"]); // step 3 was running when the consumer aborted
    expect(engine.stats().blocks["full"]!.used).toBe(0);
    await engine.close();
  });

  it("keeps multi-byte characters whole in the streamed text", async () => {
    const emoji = tok.encode("é🙂 ok");
    const engine = scriptedEngine((p) => emoji[p - 2] ?? emoji[emoji.length - 1]!);
    const r = await drain(engine.generate({ promptIds: [1, 2], maxTokens: emoji.length }));
    expect(r.texts.join("")).toBe("é🙂 ok");
    for (const t of r.texts) expect(t).not.toContain("\uFFFD");
    await engine.close();
  });

  it("reports log-probabilities of the model's distribution and the top alternatives", async () => {
    const engine = scriptedEngine(() => 3, 64);
    const s = engine.generate({ promptIds: [1], maxTokens: 2, logprobs: 3 });
    const outs = [];
    for await (const o of s) outs.push(o);
    const logits = Float64Array.from({ length: 64 }, (_, i) => (i % 7) - 3);
    const expected = logprobsOf(logits, 3, 3);
    expect(outs[0]!.logprob).toBeCloseTo(expected.logprob, 12);
    expect(outs[0]!.topLogprobs!.map((t) => t.token)).toEqual([6, 13, 20]); // the largest logit (3), lowest ids first
    const sumExp = Array.from(logits).reduce((a, l) => a + Math.exp(l), 0);
    expect(outs[0]!.logprob).toBeCloseTo(logits[3]! - Math.log(sumExp), 10);
    await engine.close();
  });

  it("ends a request whose logits are not finite with an error naming the step, and serves the rest", async () => {
    const engine = scriptedEngine(() => 5, 64, { badAt: 2 });
    const r = await drain(engine.generate({ promptIds: [1], maxTokens: 4 }));
    expect(r.summary.finishReason).toBe("error");
    expect(r.summary.error).toMatch(/^step \d+: the logits of request "req-\d+" hold NaN or Inf$/);
    const ok = await drain(engine.generate({ promptIds: [1], maxTokens: 3 }));
    expect(ok.summary.finishReason).toBe("length");
    await engine.close();
  });

  it("throws EngineOverloadedError when the waiting queue is full, and aborts what is queued on close", async () => {
    const engine = scriptedEngine(() => 5, 64, { maxWaiting: 2 });
    const streams = [engine.generate({ promptIds: [1], maxTokens: 50 }), engine.generate({ promptIds: [1], maxTokens: 50 })];
    expect(() => engine.generate({ promptIds: [1], maxTokens: 50 })).toThrow(EngineOverloadedError);
    await engine.close();
    for (const s of streams) expect((await s.done).finishReason).toBe("abort");
    expect(() => engine.generate({ promptIds: [1], maxTokens: 1 })).toThrow(/closed/);
  });
});
