// `tsgc bench serve`'s logic (src/bench/serve-bench.ts): the workload generator (deterministic, within its bounds,
// the same as the Python yardstick's), percentiles, the run summary, the SSE parser and progress lines; then real runs
// of gpt-oss-tiny on the CPU interpreter, through the engine's API and through the HTTP server, where every request
// must generate exactly its output length and leave no KV block in use.
import { spawnSync } from "node:child_process";
import { Agent } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BenchRequest, directSubmitter, distribution, httpSubmitter, mulberry32, percentile, progressReporter, type RequestTiming, runServeWorkload,
  serveWorkload, SseParser, StatsPeaks, streamSeed, summarizeRun, type WorkloadSpec, WARMUP_OUTPUT_TOKENS, WARMUP_PROMPT_TOKENS, warmupWorkload, WORKLOAD_STREAMS, workloadHash, workloadLengths,
} from "../../src/bench/serve-bench.js";
import type { EngineStats } from "../../src/engine/api.js";
import type { ServingEngine } from "../../src/engine/engine.js";
import { openEngine } from "../../src/engine/open.js";
import { createOpenAiServer } from "../../src/server/index.js";
import { REPO_ROOT } from "../tiers.js";

const hasPython = spawnSync("python3", ["--version"]).status === 0;

const spec = (o: Partial<WorkloadSpec> = {}): WorkloadSpec => ({ numRequests: 8, dataset: "fixed", inputLen: 16, outputLen: 8, vocabSize: 128, maxContext: 64, requestRate: Infinity, seed: 0, ...o });

describe("the workload generator", () => {
  it("is mulberry32, streams seeded seed + k·0x9E3779B9 mod 2^32", () => {
    const words = (seed: number) => {
      const rand = mulberry32(seed);
      return [rand(), rand(), rand()].map((u) => u * 2 ** 32);
    };
    // the reference implementation's first outputs (bench/transformers_generate_batch.py gives the same)
    expect(words(0)).toEqual([1144304738, 1416247, 958946056]);
    expect(words(42)).toEqual([2581720956, 1925393290, 3661312704]);
    expect([streamSeed(0, 1), streamSeed(7, 3), streamSeed(4294967295, 5)]).toEqual([2654435769, 3668340018, 387276956]);
  });

  it("draws the same requests from the same seed, other ones from another seed or stream", () => {
    const a = serveWorkload(spec({ dataset: "sharegpt-like", requestRate: 4 }));
    expect(serveWorkload(spec({ dataset: "sharegpt-like", requestRate: 4 }))).toEqual(a);
    expect(workloadHash(serveWorkload(spec({ dataset: "sharegpt-like", requestRate: 4, seed: 1 })))).not.toBe(workloadHash(a));
    const warm = serveWorkload(spec({ dataset: "sharegpt-like", requestRate: 4 }), WORKLOAD_STREAMS.warmup);
    expect(warm.map((r) => [r.promptIds.length, r.outputLen, r.arrivalMs])).toEqual(a.map((r) => [r.promptIds.length, r.outputLen, r.arrivalMs]));
    expect(warm.map((r) => r.promptIds)).not.toEqual(a.map((r) => r.promptIds));
    // pinned: the Python yardstick prints these hashes for these workloads
    expect(workloadHash(serveWorkload(spec({ numRequests: 4 })))).toBe("2a412c86");
    expect(workloadHash(serveWorkload({ numRequests: 8, dataset: "sharegpt-like", inputLen: 100, outputLen: 50, vocabSize: 201088, maxContext: 4096, requestRate: 2, seed: 7 }))).toBe("6803144e");
  });

  it("warms up with short prompts, one request finishing each step, at most the engine's sequences", () => {
    const big = spec({ numRequests: 1000, inputLen: 1024, outputLen: 1024, maxContext: 2048, vocabSize: 100 });
    const warm = warmupWorkload(big, 512);
    expect(warm.length).toBe(512);
    expect(warm.every((r) => r.promptIds.length === WARMUP_PROMPT_TOKENS && r.arrivalMs === 0 && r.promptIds.every((t) => t >= 0 && t < 100))).toBe(true);
    expect(warm.map((r) => r.outputLen)).toEqual([...Array(512).keys()].map((i) => WARMUP_OUTPUT_TOKENS + i));
    // the warm-up stream's ids, not the measured prompts' first tokens
    expect(warm[0]!.promptIds).not.toEqual(serveWorkload(big)[0]!.promptIds.slice(0, WARMUP_PROMPT_TOKENS));
    expect(warmupWorkload(big, 512)).toEqual(warm);
    // fewer requests than sequences; prompts shorter than 16; a small context clips the outputs
    expect(warmupWorkload(spec({ numRequests: 3, inputLen: 4 }), 512).map((r) => [r.promptIds.length, r.outputLen])).toEqual([[4, 16], [4, 17], [4, 18]]);
    expect(warmupWorkload(spec({ numRequests: 30, maxContext: 40 }), 16).map((r) => r.outputLen).slice(6, 10)).toEqual([22, 23, 24, 24]);
  });

  it("gives fixed lengths exactly, prompt ids inside the vocabulary, all arrivals at 0 at an infinite rate", () => {
    const requests = serveWorkload(spec({ numRequests: 50, vocabSize: 100 }));
    expect(requests.map((r) => r.index)).toEqual([...Array(50).keys()]);
    for (const r of requests) {
      expect([r.promptIds.length, r.outputLen, r.arrivalMs]).toEqual([16, 8, 0]);
      expect(r.promptIds.every((t) => Number.isInteger(t) && t >= 0 && t < 100)).toBe(true);
    }
    expect(new Set(requests.flatMap((r) => r.promptIds)).size).toBeGreaterThan(90); // the whole vocabulary is drawn
  });

  it("spreads sharegpt-like lengths log-normally around the given means, clipped to the context", () => {
    const { inputLens, outputLens } = workloadLengths(spec({ numRequests: 4000, dataset: "sharegpt-like", inputLen: 200, outputLen: 100, maxContext: 1 << 20 }));
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    expect(mean(inputLens) / 200).toBeGreaterThan(0.9);
    expect(mean(inputLens) / 200).toBeLessThan(1.1);
    expect(mean(outputLens) / 100).toBeGreaterThan(0.9);
    expect(mean(outputLens) / 100).toBeLessThan(1.1);
    const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
    // a long tail: the p99 prompt is several times the median one, answers spread less
    expect(percentile(sorted(inputLens), 99) / percentile(sorted(inputLens), 50)).toBeGreaterThan(6);
    expect(percentile(sorted(outputLens), 99) / percentile(sorted(outputLens), 50)).toBeGreaterThan(3);
    const tight = workloadLengths(spec({ numRequests: 2000, dataset: "sharegpt-like", inputLen: 40, outputLen: 40, maxContext: 64 }));
    tight.inputLens.forEach((n, i) => {
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(63);
      expect(tight.outputLens[i]).toBeGreaterThanOrEqual(1);
      expect(n + tight.outputLens[i]!).toBeLessThanOrEqual(64);
    });
    expect(Math.max(...tight.inputLens)).toBe(63); // the clip is reached
  });

  it("spaces Poisson arrivals at the given rate", () => {
    const times = serveWorkload(spec({ numRequests: 4001, requestRate: 20 })).map((r) => r.arrivalMs);
    expect(times[0]).toBe(0);
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
    const meanGapMs = times[times.length - 1]! / (times.length - 1);
    expect(meanGapMs).toBeGreaterThan(45);
    expect(meanGapMs).toBeLessThan(55);
  });

  // without python3 the pinned hashes above still tie the two generators together
  it.runIf(hasPython)("is the Python yardstick's generator, request for request (needs python3)", () => {
    const args = ["--print-workload", "--dataset", "sharegpt-like", "--num-requests", "300", "--input-len", "700", "--output-len", "300", "--max-context", "2048", "--seed", "11"];
    const r = spawnSync("python3", [join(REPO_ROOT, "bench/transformers_generate_batch.py"), ...args], { encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout) as { inputLens: number[]; outputLens: number[]; hash: string };
    const same: WorkloadSpec = { numRequests: 300, dataset: "sharegpt-like", inputLen: 700, outputLen: 300, vocabSize: 201088, maxContext: 2048, requestRate: Infinity, seed: 11 };
    expect(printed.inputLens).toEqual(workloadLengths(same).inputLens);
    expect(printed.outputLens).toEqual(workloadLengths(same).outputLens);
    expect(printed.hash).toBe(workloadHash(serveWorkload(same)));
  });
});

describe("statistics", () => {
  it("interpolates percentiles between closest ranks, as numpy does", () => {
    expect([0, 25, 50, 90, 100].map((p) => percentile([1, 2, 3, 4, 5], p))).toEqual([1, 2, 3, 4.6, 5]);
    expect(percentile([7], 99)).toBe(7);
    expect(() => percentile([], 50)).toThrow("no values");
    expect(distribution([])).toBeNull();
    const d = distribution([10, 0, 5, 20])!;
    expect([d.mean, d.p50, d.p90, d.max]).toEqual([8.75, 7.5, 17, 20]);
    expect(d.p99).toBeCloseTo(19.7, 12);
  });

  const stats = (o: Partial<EngineStats> = {}): EngineStats => ({
    running: 0,
    waiting: 0,
    blocks: { full: { used: 0, free: 10, total: 10 } },
    preemptions: 0,
    prefixHitTokens: 0,
    prefixQueryTokens: 0,
    steps: 0,
    stepsAhead: 0,
    promptTokens: 0,
    generatedTokens: 0,
    finished: { stop: 0, length: 0, abort: 0, error: 0 },
    deviceMs: 0,
    ...o,
  });
  const timing = (o: Partial<RequestTiming>): RequestTiming => ({
    index: 0,
    promptTokens: 10,
    expectedOutputTokens: 3,
    outputTokens: 3,
    sentAt: 100,
    firstTokenAt: 150,
    lastTokenAt: 170,
    gaps: [10, 10],
    finishReason: "length",
    error: undefined,
    ...o,
  });

  it("summarizes a run: throughput over the duration, latencies of the requests that succeeded, counters of this run alone", () => {
    const peaks = new StatsPeaks();
    peaks.sample(stats({ running: 2, waiting: 1, blocks: { full: { used: 6, free: 4, total: 10 } } }));
    peaks.sample(stats({ running: 1, blocks: { full: { used: 3, free: 7, total: 10 } } }));
    const r = summarizeRun({
      mode: "direct",
      workloadHash: "00000000",
      concurrency: null,
      timings: [timing({}), timing({ index: 1, sentAt: 110, firstTokenAt: 130, lastTokenAt: 190, gaps: [30, 30] }), timing({ index: 2, outputTokens: 1, finishReason: "stop", firstTokenAt: 120, lastTokenAt: 120, gaps: [] })],
      durationMs: 1000,
      peaks,
      before: stats({ preemptions: 2, prefixHitTokens: 5, prefixQueryTokens: 10, deviceMs: 100 }),
      after: stats({ preemptions: 3, prefixHitTokens: 15, prefixQueryTokens: 40, deviceMs: 850 }),
    });
    expect([r.requests, r.completed, r.failed]).toEqual([3, 2, 1]);
    expect(r.firstError).toBe('request 2 ended by "stop" after 1 of 3 tokens');
    expect([r.inputTokens, r.outputTokens, r.outputTokensPerSecond, r.totalTokensPerSecond, r.requestsPerSecond]).toEqual([30, 7, 7, 37, 2]);
    expect([r.ttftMs!.p50, r.ttftMs!.max]).toEqual([35, 50]);
    expect([r.tpotMs!.mean, r.e2eMs!.max, r.itlMs!.max]).toEqual([20, 80, 30]);
    expect([r.peakRunning, r.peakWaiting, r.kvBlocks]).toEqual([2, 1, { full: { total: 10, peakUsed: 6, usedAfter: 0 } }]);
    expect([r.preemptions, r.prefixHitTokens, r.prefixQueryTokens, r.prefixHitRate]).toEqual([1, 10, 30, 1 / 3]);
    expect(r.deviceBusy).toBeCloseTo(0.75, 12); // 750 ms of device time in a 1000 ms run
    expect(summarizeRun({ mode: "direct", workloadHash: "0", concurrency: null, timings: [], durationMs: 10, peaks, before: stats(), after: stats() }).deviceBusy).toBeNull();
  });
});

describe("server-sent events and progress", () => {
  it("splits an event stream into its data payloads, across chunk boundaries and CRLFs", () => {
    const p = new SseParser();
    expect(p.push('data: {"a":1}\n\nda')).toEqual(['{"a":1}']);
    expect(p.push('ta: {"b":2}\r\n\r\n: a comment\n\ndata: [DONE]')).toEqual(['{"b":2}']);
    expect(p.push("\n\n")).toEqual(["[DONE]"]);
  });

  it("rewrites one line on a terminal, and writes a line per tenth of the requests elsewhere", () => {
    const log: string[] = [];
    const logProgress = progressReporter("HTTP", 20, (t) => void log.push(t), false);
    for (let done = 1; done <= 20; done++) logProgress(done, done * 4, done * 100);
    expect(log).toHaveLength(10);
    expect(log[0]).toBe("HTTP: 2/20 requests, 8 output tokens, 40.0 tok/s, 0.2 s\n");
    expect(log[9]).toBe("HTTP: 20/20 requests, 80 output tokens, 40.0 tok/s, 2.0 s\n");
    const tty: string[] = [];
    const ttyProgress = progressReporter("engine API", 3, (t) => void tty.push(t), true);
    for (let done = 1; done <= 3; done++) ttyProgress(done, done, 1000);
    expect(tty.map((t) => t.startsWith("\r\x1b[K"))).toEqual([true, true, true]);
    expect(tty.map((t) => t.endsWith("\n"))).toEqual([false, false, true]);
  });
});

describe("real runs of gpt-oss-tiny on the CPU interpreter", () => {
  let engine: ServingEngine;
  beforeAll(async () => {
    engine = (await openEngine({ device: "cpu", model: "gpt-oss-tiny", seed: 1, maxContext: 64 })).engine;
  });
  afterAll(async () => {
    await engine.close();
  });

  const check = (r: Awaited<ReturnType<typeof runServeWorkload>>, requests: readonly BenchRequest[]) => {
    expect([r.requests, r.completed, r.failed, r.firstError]).toEqual([requests.length, requests.length, 0, undefined]);
    expect(r.outputTokens).toBe(requests.reduce((s, q) => s + q.outputLen, 0));
    expect(r.inputTokens).toBe(requests.reduce((s, q) => s + q.promptIds.length, 0));
    expect(r.workloadHash).toBe(workloadHash(requests));
    expect(r.durationMs).toBeGreaterThan(0);
    expect(r.ttftMs!.p50).toBeLessThanOrEqual(r.ttftMs!.p99);
    expect(r.itlMs).not.toBeNull();
    for (const b of Object.values(r.kvBlocks)) {
      expect(b.usedAfter).toBe(0);
      expect(b.peakUsed).toBeGreaterThan(0);
      expect(b.peakUsed).toBeLessThanOrEqual(b.total);
    }
    for (const b of Object.values(engine.stats().blocks)) expect(b.used).toBe(0);
  };

  it("runs every request to exactly its output length through the engine's API, all at once and as Poisson arrivals", async () => {
    const burst = serveWorkload(spec({ numRequests: 12, inputLen: 20, outputLen: 8, seed: 3 }));
    const all = await runServeWorkload(engine, burst, directSubmitter(engine, "burst"), { mode: "direct" });
    check(all, burst);
    expect(all.peakRunning).toBe(12);
    const spread = serveWorkload(spec({ numRequests: 12, dataset: "sharegpt-like", inputLen: 20, outputLen: 8, requestRate: 400, seed: 4 }));
    const paced = await runServeWorkload(engine, spread, directSubmitter(engine, "paced"), { mode: "direct", concurrency: 4 });
    check(paced, spread);
    expect(paced.concurrency).toBe(4);
    expect(paced.peakRunning).toBeLessThanOrEqual(4);
  });

  it("runs the same shape of workload through the OpenAI server as streaming clients", async () => {
    const server = createOpenAiServer(engine, { modelNames: ["tiny"] });
    const { host, port } = await server.listen(0, "127.0.0.1");
    const agent = new Agent({ keepAlive: true });
    try {
      const requests = serveWorkload(spec({ numRequests: 12, inputLen: 20, outputLen: 8, seed: 5 }));
      const r = await runServeWorkload(engine, requests, httpSubmitter({ host, port, model: "tiny", agent }), { mode: "http", concurrency: 6 });
      check(r, requests);
      expect(r.mode).toBe("http");
      // a refused request is a failed one, with the server's reason
      const refused = await runServeWorkload(engine, requests.slice(0, 1), httpSubmitter({ host, port, model: "no-such-model", agent }), { mode: "http" });
      expect([refused.completed, refused.failed]).toEqual([0, 1]);
      expect(refused.firstError).toContain("HTTP 404");
    } finally {
      agent.destroy();
      await server.close();
    }
  });
});
