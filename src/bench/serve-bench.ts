// `tsgc bench serve`: a serving benchmark over the engine, in the manner of vLLM's `benchmark_serving`.
//
//   workload   N requests of seeded random token ids, fixed lengths or a ShareGPT-like spread, arriving all at once
//              or as a seeded Poisson process (serveWorkload; bench/transformers_generate_batch.py draws the same
//              requests, so the transformers yardstick runs the very same prompts)
//   run        every request submitted at its arrival time, at most `concurrency` in flight, through the engine's
//              API (directSubmitter) or as a streaming /v1/completions client of the OpenAI server (httpSubmitter);
//              every token's arrival is timed, engine.stats() is sampled on a timer for the KV pools' peaks
//   report     throughput (output, total, requests per second), TTFT, TPOT, ITL and end-to-end latency
//              percentiles, peak KV blocks per group, preemptions and prefix-cache hits (summarizeRun,
//              formatServeBench)
// Requests pass no stop tokens (and ignore_eos over HTTP), so each one generates exactly its output length: a
// request that ends otherwise counts as failed.

import { request as httpRequest, type Agent } from "node:http";
import type { Engine, EngineStats } from "../engine/api.js";

// ---- workload ------------------------------------------------------------------------------------

export const SERVE_DATASETS = ["fixed", "sharegpt-like"] as const;
/** fixed: every request has the given lengths; sharegpt-like: log-normal lengths whose means are the given ones. */
export type ServeDataset = (typeof SERVE_DATASETS)[number];

/**
 * Log-space standard deviations of the sharegpt-like lengths. Not a fit of the ShareGPT dataset: a long tail of its
 * kind (prompts vary more than answers; a prompt's p99 is about 10× its median, an answer's about 6×).
 */
export const SHAREGPT_LIKE_SIGMA = { input: 1.0, output: 0.75 } as const;

/**
 * The independent random streams of a workload, each seeded from the workload's seed (streamSeed): lengths, arrival
 * gaps, and prompt ids — the measured prompts, the warm-up's, and those of a second run on the same engine (whose
 * prefix cache still holds the first run's prompt blocks, so the second run must not repeat them).
 */
export const WORKLOAD_STREAMS = { lengths: 1, arrivals: 2, prompts: 3, warmup: 4, secondRun: 5 } as const;

export interface WorkloadSpec {
  readonly numRequests: number;
  readonly dataset: ServeDataset;
  /** Prompt tokens of every request (fixed) or their mean (sharegpt-like). */
  readonly inputLen: number;
  /** Output tokens of every request (fixed) or their mean (sharegpt-like). */
  readonly outputLen: number;
  /** Prompt ids are drawn from [0, vocabSize). */
  readonly vocabSize: number;
  /** Prompt and output of one request fit here (sharegpt-like lengths are clipped to it). */
  readonly maxContext: number;
  /** Requests per second of a Poisson process; Infinity: all at time 0. */
  readonly requestRate: number;
  /** An unsigned 32-bit seed. */
  readonly seed: number;
}

export interface BenchRequest {
  readonly index: number;
  readonly promptIds: readonly number[];
  readonly outputLen: number;
  /** Milliseconds after the run starts at which the request is submitted. */
  readonly arrivalMs: number;
}

/**
 * mulberry32: a 32-bit state PRNG small enough to write identically in Python (the yardstick does), uniform in
 * [0, 1) with 32 bits of resolution.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1) >>> 0;
    t = (t ^ (t + Math.imul(t ^ (t >>> 7), t | 61))) >>> 0;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of one stream of a workload: seed + stream·0x9E3779B9, modulo 2³². */
export function streamSeed(seed: number, stream: number): number {
  return (seed + stream * 0x9e3779b9) >>> 0;
}

/** A standard normal draw (Box–Muller, cosine branch), from two uniforms. */
function normal(rand: () => number): number {
  const u1 = rand();
  const u2 = rand();
  return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
}

/** A log-normal draw with this mean and log-space sigma, rounded half up to an integer. */
function logNormalLength(rand: () => number, mean: number, sigma: number): number {
  return Math.floor(mean * Math.exp(sigma * normal(rand) - (sigma * sigma) / 2) + 0.5);
}

const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);

/** Each request's prompt and output lengths, in request order (the lengths stream, 4 uniforms a request when spread). */
export function workloadLengths(spec: WorkloadSpec): { readonly inputLens: number[]; readonly outputLens: number[] } {
  const inputLens: number[] = [];
  const outputLens: number[] = [];
  const rand = mulberry32(streamSeed(spec.seed, WORKLOAD_STREAMS.lengths));
  for (let i = 0; i < spec.numRequests; i++) {
    if (spec.dataset === "fixed") {
      inputLens.push(spec.inputLen);
      outputLens.push(spec.outputLen);
      continue;
    }
    const input = clamp(logNormalLength(rand, spec.inputLen, SHAREGPT_LIKE_SIGMA.input), 1, spec.maxContext - 1);
    const output = clamp(logNormalLength(rand, spec.outputLen, SHAREGPT_LIKE_SIGMA.output), 1, spec.maxContext - input);
    inputLens.push(input);
    outputLens.push(output);
  }
  return { inputLens, outputLens };
}

/** Submission times: all 0 at an infinite rate, else the first at 0 and exponential gaps of mean 1/rate. */
export function arrivalTimes(spec: WorkloadSpec): number[] {
  if (spec.requestRate === Infinity) return new Array<number>(spec.numRequests).fill(0);
  const rand = mulberry32(streamSeed(spec.seed, WORKLOAD_STREAMS.arrivals));
  const times: number[] = [];
  let t = 0;
  for (let i = 0; i < spec.numRequests; i++) {
    if (i > 0) t += (-Math.log(1 - rand()) / spec.requestRate) * 1000;
    times.push(t);
  }
  return times;
}

/** Random prompt ids of the given lengths, drawn in request order from one stream. */
export function promptTokens(lengths: readonly number[], vocabSize: number, seed: number): number[][] {
  const rand = mulberry32(seed);
  return lengths.map((n) => Array.from({ length: n }, () => Math.floor(rand() * vocabSize)));
}

/** The workload's requests; `stream` picks other prompts of the same lengths (the warm-up's). */
export function serveWorkload(spec: WorkloadSpec, stream: number = WORKLOAD_STREAMS.prompts): BenchRequest[] {
  const { inputLens, outputLens } = workloadLengths(spec);
  const arrivals = arrivalTimes(spec);
  const prompts = promptTokens(inputLens, spec.vocabSize, streamSeed(spec.seed, stream));
  return prompts.map((promptIds, index) => ({ index, promptIds, outputLen: outputLens[index]!, arrivalMs: arrivals[index]! }));
}

/** Prompt tokens of each warm-up request (warmupWorkload): the decode steps' graphs do not depend on context lengths. */
export const WARMUP_PROMPT_TOKENS = 16;
/** Output tokens of the warm-up's first request; request i generates i more, so each finishes one decode step later. */
export const WARMUP_OUTPUT_TOKENS = 16;

/**
 * The warm-up before a measured run: min(requests, maxSeqs) short prompts at once (other ids than the measured
 * ones: the warm-up stream), request i generating WARMUP_OUTPUT_TOKENS + i tokens. Once they are all admitted, one
 * sequence finishes a step, so the decode-only steps run every sequence count from the most the measured run
 * holds at once down to 1 and capture each count's CUDA graph (a step's graph depends on its token, sequence and
 * logit-row counts, not on context lengths). It costs a few seconds where a pass over the workload's own prompts
 * (120b at 512 sequences: 57.5 s of prefill) would take minutes.
 */
export function warmupWorkload(spec: WorkloadSpec, maxSeqs: number): BenchRequest[] {
  const count = Math.min(spec.numRequests, maxSeqs);
  const promptLen = clamp(Math.min(spec.inputLen, WARMUP_PROMPT_TOKENS), 1, spec.maxContext - 1);
  const prompts = promptTokens(new Array<number>(count).fill(promptLen), spec.vocabSize, streamSeed(spec.seed, WORKLOAD_STREAMS.warmup));
  return prompts.map((promptIds, index) => ({ index, promptIds, outputLen: clamp(WARMUP_OUTPUT_TOKENS + index, 1, spec.maxContext - promptLen), arrivalMs: 0 }));
}

/**
 * A fingerprint of the requests (prompts and output lengths, not arrivals): FNV-1a's multiply and xor over 32-bit
 * words — the count, then each request's prompt length, output length and ids — as 8 hex digits. The yardstick
 * prints the same, so two runs can be checked to have served the same work.
 */
export function workloadHash(requests: readonly BenchRequest[]): string {
  let h = 0x811c9dc5;
  const word = (x: number) => (h = Math.imul(h ^ x, 0x01000193) >>> 0);
  word(requests.length);
  for (const r of requests) {
    word(r.promptIds.length);
    word(r.outputLen);
    for (const id of r.promptIds) word(id);
  }
  return h.toString(16).padStart(8, "0");
}

// ---- statistics ----------------------------------------------------------------------------------

export interface Distribution {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** The p-th percentile (0–100) of sorted values, interpolating linearly between closest ranks (numpy's default). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error("percentile of no values");
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** Mean, median, p90, p99 and max; null for no values. */
export function distribution(values: readonly number[]): Distribution | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const list = Array.from(sorted);
  let sum = 0;
  for (const v of list) sum += v;
  return { mean: sum / list.length, p50: percentile(list, 50), p90: percentile(list, 90), p99: percentile(list, 99), max: list[list.length - 1]! };
}

// ---- a run ---------------------------------------------------------------------------------------

/** What became of one request, as timed by the benchmark (performance.now() milliseconds). */
export interface RequestTiming {
  readonly index: number;
  readonly promptTokens: number;
  readonly expectedOutputTokens: number;
  readonly outputTokens: number;
  /** When it was sent (after waiting for a concurrency slot). */
  readonly sentAt: number;
  readonly firstTokenAt: number | undefined;
  readonly lastTokenAt: number | undefined;
  /** Gaps between successive token arrivals (a chunk of k tokens: its gap, then k − 1 zeros). */
  readonly gaps: readonly number[];
  readonly finishReason: string;
  readonly error: string | undefined;
}

/** A request that generated exactly its output length and ended by length. */
export const requestSucceeded = (t: RequestTiming): boolean => t.error === undefined && t.finishReason === "length" && t.outputTokens === t.expectedOutputTokens;

export interface KvBlockUse {
  readonly total: number;
  readonly peakUsed: number;
  /** In use once every request had ended (0 unless something leaked). */
  readonly usedAfter: number;
}

/** Peaks of engine.stats() over a run's samples. */
export class StatsPeaks {
  readonly peakUsed: Record<string, number> = {};
  peakRunning = 0;
  peakWaiting = 0;
  samples = 0;

  sample(stats: EngineStats): void {
    this.samples++;
    this.peakRunning = Math.max(this.peakRunning, stats.running);
    this.peakWaiting = Math.max(this.peakWaiting, stats.waiting);
    for (const [group, b] of Object.entries(stats.blocks)) this.peakUsed[group] = Math.max(this.peakUsed[group] ?? 0, b.used);
  }
}

export type ServeMode = "direct" | "http";

export interface ServeRunReport {
  readonly mode: ServeMode;
  /** workloadHash of the requests this run served. */
  readonly workloadHash: string;
  /** Most requests in flight at once (null: no bound). */
  readonly concurrency: number | null;
  readonly requests: number;
  readonly completed: number;
  readonly failed: number;
  /** The first failed request's reason. */
  readonly firstError?: string;
  readonly durationMs: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly outputTokensPerSecond: number;
  /** Prompt and output tokens per second. */
  readonly totalTokensPerSecond: number;
  readonly requestsPerSecond: number;
  readonly ttftMs: Distribution | null;
  readonly tpotMs: Distribution | null;
  readonly itlMs: Distribution | null;
  readonly e2eMs: Distribution | null;
  readonly peakRunning: number;
  readonly peakWaiting: number;
  readonly kvBlocks: Readonly<Record<string, KvBlockUse>>;
  /** Counted over this run alone (the engine's counters before and after). */
  readonly preemptions: number;
  readonly prefixHitTokens: number;
  readonly prefixQueryTokens: number;
  /** prefixHitTokens / prefixQueryTokens; null when nothing was looked up. */
  readonly prefixHitRate: number | null;
  /** Device time of the run's steps over its duration (null on the CPU): the rest is time the GPU waited for the host. */
  readonly deviceBusy: number | null;
}

/** The report of a run from its timings, duration, sampled peaks and the engine's counters before and after. */
export function summarizeRun(o: {
  readonly mode: ServeMode;
  readonly workloadHash: string;
  readonly concurrency: number | null;
  readonly timings: readonly RequestTiming[];
  readonly durationMs: number;
  readonly peaks: StatsPeaks;
  readonly before: EngineStats;
  readonly after: EngineStats;
}): ServeRunReport {
  const ok = o.timings.filter(requestSucceeded);
  const failed = o.timings.filter((t) => !requestSucceeded(t));
  const inputTokens = o.timings.reduce((s, t) => s + t.promptTokens, 0);
  const outputTokens = o.timings.reduce((s, t) => s + t.outputTokens, 0);
  const seconds = Math.max(o.durationMs, 1e-6) / 1000;
  const timed = ok.filter((t) => t.firstTokenAt !== undefined && t.lastTokenAt !== undefined);
  const kvBlocks: Record<string, KvBlockUse> = {};
  for (const [group, b] of Object.entries(o.after.blocks)) kvBlocks[group] = { total: b.total, peakUsed: o.peaks.peakUsed[group] ?? 0, usedAfter: b.used };
  const prefixHitTokens = o.after.prefixHitTokens - o.before.prefixHitTokens;
  const prefixQueryTokens = o.after.prefixQueryTokens - o.before.prefixQueryTokens;
  const first = failed[0];
  const why = first && (first.error ?? `request ${first.index} ended by "${first.finishReason}" after ${first.outputTokens} of ${first.expectedOutputTokens} tokens`);
  return {
    mode: o.mode,
    workloadHash: o.workloadHash,
    concurrency: o.concurrency,
    requests: o.timings.length,
    completed: ok.length,
    failed: failed.length,
    ...(why !== undefined ? { firstError: why } : {}),
    durationMs: o.durationMs,
    inputTokens,
    outputTokens,
    outputTokensPerSecond: outputTokens / seconds,
    totalTokensPerSecond: (inputTokens + outputTokens) / seconds,
    requestsPerSecond: ok.length / seconds,
    ttftMs: distribution(timed.map((t) => t.firstTokenAt! - t.sentAt)),
    tpotMs: distribution(timed.filter((t) => t.outputTokens > 1).map((t) => (t.lastTokenAt! - t.firstTokenAt!) / (t.outputTokens - 1))),
    itlMs: distribution(timed.flatMap((t) => t.gaps)),
    e2eMs: distribution(timed.map((t) => t.lastTokenAt! - t.sentAt)),
    peakRunning: o.peaks.peakRunning,
    peakWaiting: o.peaks.peakWaiting,
    kvBlocks,
    preemptions: o.after.preemptions - o.before.preemptions,
    prefixHitTokens,
    prefixQueryTokens,
    prefixHitRate: prefixQueryTokens > 0 ? prefixHitTokens / prefixQueryTokens : null,
    deviceBusy: o.after.deviceMs > o.before.deviceMs ? (o.after.deviceMs - o.before.deviceMs) / Math.max(o.durationMs, 1e-6) : null,
  };
}

/** Sends one request; `onTokens(k)` for every k tokens as they arrive; resolves when it ends. */
export type SubmitRequest = (request: BenchRequest, onTokens: (count: number) => void) => Promise<{ readonly finishReason: string; readonly error?: string }>;

/** Requests through the engine's API: greedy, no stop tokens, so each runs to its output length. */
export function directSubmitter(engine: Engine, idPrefix: string): SubmitRequest {
  return async (r, onTokens) => {
    const stream = engine.generate({ id: `${idPrefix}-${r.index}`, promptIds: r.promptIds, maxTokens: r.outputLen, temperature: 0 });
    for await (const _ of stream) onTokens(1);
    const summary = await stream.done;
    return { finishReason: summary.finishReason, ...(summary.error !== undefined ? { error: summary.error } : {}) };
  };
}

/** Splits a server-sent event stream into the `data:` payloads of its complete events. */
export class SseParser {
  private buffer = "";

  push(text: string): string[] {
    this.buffer += text.replace(/\r\n/g, "\n");
    const events: string[] = [];
    let end = this.buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart());
      if (data.length > 0) events.push(data.join("\n"));
      end = this.buffer.indexOf("\n\n");
    }
    return events;
  }
}

/** The fields of a streamed text_completion chunk the benchmark reads. */
interface CompletionChunk {
  readonly choices?: readonly { readonly token_ids?: readonly number[]; readonly finish_reason?: string | null }[];
  readonly error?: { readonly message?: string };
}

/**
 * Requests as streaming clients of the OpenAI server at host:port: POST /v1/completions with the prompt as token ids,
 * greedy, `ignore_eos` and `return_token_ids` (so every token is its own chunk and counted exactly).
 */
export function httpSubmitter(target: { readonly host: string; readonly port: number; readonly model: string; readonly agent: Agent }): SubmitRequest {
  return (r, onTokens) =>
    new Promise((resolve) => {
      const body = JSON.stringify({ model: target.model, prompt: r.promptIds, max_tokens: r.outputLen, temperature: 0, stream: true, ignore_eos: true, return_token_ids: true });
      const fail = (error: string) => resolve({ finishReason: "error", error });
      const req = httpRequest(
        { host: target.host, port: target.port, path: "/v1/completions", method: "POST", agent: target.agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
        (res) => {
          res.setEncoding("utf8");
          if (res.statusCode !== 200) {
            let text = "";
            res.on("data", (chunk: string) => (text += chunk));
            res.on("end", () => fail(`request ${r.index}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
            return;
          }
          const parser = new SseParser();
          let finishReason: string | undefined;
          let error: string | undefined;
          res.on("data", (chunk: string) => {
            for (const data of parser.push(chunk)) {
              if (data === "[DONE]") continue;
              const event = JSON.parse(data) as CompletionChunk;
              if (event.error !== undefined) error ??= `request ${r.index}: ${event.error.message ?? "error event"}`;
              const choice = event.choices?.[0];
              if (choice?.token_ids !== undefined && choice.token_ids.length > 0) onTokens(choice.token_ids.length);
              if (typeof choice?.finish_reason === "string") finishReason = choice.finish_reason;
            }
          });
          res.on("end", () => (error !== undefined ? fail(error) : resolve({ finishReason: finishReason ?? "incomplete" })));
          res.on("error", (err) => fail(`request ${r.index}: ${err.message}`));
        },
      );
      req.on("error", (err) => fail(`request ${r.index}: ${err.message}`));
      req.end(body);
    });
}

/** A FIFO counting semaphore: at most `slots` holders at once. */
class Slots {
  private free: number;
  private readonly queue: (() => void)[] = [];

  constructor(slots: number) {
    this.free = slots;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.queue.push(resolve));
  }

  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}

export interface RunOptions {
  readonly mode: ServeMode;
  /** Most requests in flight at once (undefined: no bound). */
  readonly concurrency?: number;
  /** Told after every finished request: requests done, output tokens so far, milliseconds since the start. */
  readonly onProgress?: (done: number, outputTokens: number, elapsedMs: number) => void;
  /** How often engine.stats() is sampled, in ms. Default 5. */
  readonly sampleEveryMs?: number;
}

/** Runs the requests through `submit`, each at its arrival time, and reports. */
export async function runServeWorkload(engine: Pick<Engine, "stats">, requests: readonly BenchRequest[], submit: SubmitRequest, o: RunOptions): Promise<ServeRunReport> {
  const peaks = new StatsPeaks();
  const before = engine.stats();
  peaks.sample(before);
  const sampler = setInterval(() => peaks.sample(engine.stats()), o.sampleEveryMs ?? 5);
  const slots = new Slots(o.concurrency ?? requests.length);
  const start = performance.now();
  let done = 0;
  let outputTokens = 0;
  let lastTokenAt = start;
  const one = async (r: BenchRequest): Promise<RequestTiming> => {
    const wait = start + r.arrivalMs - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    await slots.acquire();
    const sentAt = performance.now();
    let first: number | undefined;
    let last: number | undefined;
    let tokens = 0;
    const gaps: number[] = [];
    try {
      const end = await submit(r, (count) => {
        const now = performance.now();
        if (first === undefined) first = now;
        else gaps.push(now - last!);
        for (let k = 1; k < count; k++) gaps.push(0);
        last = now;
        tokens += count;
        outputTokens += count;
        lastTokenAt = Math.max(lastTokenAt, now);
      });
      return { index: r.index, promptTokens: r.promptIds.length, expectedOutputTokens: r.outputLen, outputTokens: tokens, sentAt, firstTokenAt: first, lastTokenAt: last, gaps, finishReason: end.finishReason, error: end.error };
    } catch (err) {
      const error = `request ${r.index}: ${err instanceof Error ? err.message : String(err)}`;
      return { index: r.index, promptTokens: r.promptIds.length, expectedOutputTokens: r.outputLen, outputTokens: tokens, sentAt, firstTokenAt: first, lastTokenAt: last, gaps, finishReason: "error", error };
    } finally {
      slots.release();
      peaks.sample(engine.stats());
      o.onProgress?.(++done, outputTokens, performance.now() - start);
    }
  };
  let timings: RequestTiming[];
  try {
    timings = await Promise.all(requests.map(one));
  } finally {
    clearInterval(sampler);
  }
  const after = engine.stats();
  peaks.sample(after);
  return summarizeRun({ mode: o.mode, workloadHash: workloadHash(requests), concurrency: o.concurrency ?? null, timings, durationMs: lastTokenAt - start, peaks, before, after });
}

// ---- progress and output -------------------------------------------------------------------------

/**
 * Progress of a run on a terminal or a log: on a TTY one line rewritten in place (\r) at every finished request,
 * elsewhere a line each time another tenth of the requests has finished.
 */
export function progressReporter(label: string, total: number, write: (text: string) => void, tty: boolean): (done: number, outputTokens: number, elapsedMs: number) => void {
  let shownTenths = 0;
  return (done, outputTokens, elapsedMs) => {
    const rate = elapsedMs > 0 ? (outputTokens / elapsedMs) * 1000 : 0;
    const line = `${label}: ${done}/${total} requests, ${outputTokens} output tokens, ${rate.toFixed(1)} tok/s, ${(elapsedMs / 1000).toFixed(1)} s`;
    if (tty) {
      write(`\r\x1b[K${line}${done === total ? "\n" : ""}`);
      return;
    }
    const tenths = Math.floor((done * 10) / total);
    if (tenths > shownTenths || done === total) {
      shownTenths = tenths;
      write(`${line}\n`);
    }
  };
}

/** What ran, for the report's header and its JSON. */
export interface ServeBenchSetup {
  readonly model: string;
  readonly device: "cuda" | "cpu";
  readonly dtype: string;
  readonly maxContext: number;
  readonly maxBatch: number;
  readonly maxStepTokens: number;
  readonly blockSize: number;
  readonly prefixCaching: boolean;
  /** Blocks per KV group. */
  readonly kvPool: Readonly<Record<string, number>>;
  readonly loadMs: number;
  readonly workload: {
    readonly dataset: ServeDataset;
    readonly numRequests: number;
    readonly inputLen: number;
    readonly outputLen: number;
    /** Requests per second, or "inf" (all at once). */
    readonly requestRate: number | "inf";
    readonly seed: number;
    readonly inputTokens: number;
    readonly outputTokens: number;
    /** workloadHash of the requests (of the first run, with --compare-http: the second draws other prompts). */
    readonly hash: string;
  };
  readonly warmup: boolean;
}

/** The JSON of `tsgc bench serve`: the setup and one run's report, or both runs and their ratio (--compare-http). */
export type ServeBenchResult = (ServeBenchSetup & ServeRunReport) | (ServeBenchSetup & { readonly direct: ServeRunReport; readonly http: ServeRunReport; readonly httpOverDirect: number });

export function serveBenchResult(setup: ServeBenchSetup, runs: readonly ServeRunReport[]): ServeBenchResult {
  const direct = runs.find((r) => r.mode === "direct");
  const http = runs.find((r) => r.mode === "http");
  if (direct && http) return { ...setup, direct, http, httpOverDirect: http.outputTokensPerSecond / direct.outputTokensPerSecond };
  return { ...setup, ...runs[0]! };
}

const ms = (d: Distribution | null) => (d === null ? "-" : `mean ${d.mean.toFixed(2)}  p50 ${d.p50.toFixed(2)}  p90 ${d.p90.toFixed(2)}  p99 ${d.p99.toFixed(2)}  max ${d.max.toFixed(2)}`);

function formatRun(r: ServeRunReport): string {
  const rows: [string, string][] = [
    ["requests", `${r.completed} completed${r.failed > 0 ? `, ${r.failed} FAILED (${r.firstError})` : ""} in ${(r.durationMs / 1000).toFixed(2)} s: ${r.requestsPerSecond.toFixed(2)} req/s`],
    ["output tokens", `${r.outputTokens}: ${r.outputTokensPerSecond.toFixed(1)} tok/s`],
    ["prompt + output tokens", `${r.inputTokens + r.outputTokens}: ${r.totalTokensPerSecond.toFixed(1)} tok/s`],
    ["time to first token, ms", ms(r.ttftMs)],
    ["time per output token, ms", ms(r.tpotMs)],
    ["inter-token latency, ms", ms(r.itlMs)],
    ["end to end, ms", ms(r.e2eMs)],
    ["peak sequences", `${r.peakRunning} running, ${r.peakWaiting} waiting`],
    ["peak KV blocks in use", Object.entries(r.kvBlocks).map(([g, b]) => `${g} ${b.peakUsed}/${b.total}${b.usedAfter > 0 ? ` (${b.usedAfter} still in use after)` : ""}`).join(", ")],
    ["preemptions", String(r.preemptions)],
    ["prefix cache hits", r.prefixHitRate === null ? "-" : `${(r.prefixHitRate * 100).toFixed(1)}% (${r.prefixHitTokens} of ${r.prefixQueryTokens} prompt tokens)`],
    ...(r.deviceBusy !== null ? [["GPU busy", `${(r.deviceBusy * 100).toFixed(1)}% of the run (the steps' device time over wall time)`] as [string, string]] : []),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}\n`).join("");
}

const runTitle = (r: ServeRunReport) =>
  `${r.mode === "direct" ? "engine API" : "HTTP, streaming /v1/completions clients on 127.0.0.1"}${r.concurrency === null ? "" : `, at most ${r.concurrency} in flight`}`;

/** The human-readable report. */
export function formatServeBench(result: ServeBenchResult): string {
  const w = result.workload;
  const lengths = w.dataset === "fixed" ? `${w.inputLen} prompt + ${w.outputLen} output tokens each` : `sharegpt-like lengths, means ${w.inputLen} prompt + ${w.outputLen} output (${w.inputTokens} + ${w.outputTokens} in all)`;
  const where = result.device === "cuda" ? `GPU 0 (${result.dtype})` : `the CPU reference interpreter (${result.dtype})`;
  let out =
    `${result.model} on ${where}: ${w.numRequests} requests, ${lengths}, ${w.requestRate === "inf" ? "all at once" : `Poisson arrivals at ${w.requestRate} req/s`}, seed ${w.seed} (workload ${w.hash})\n` +
    `engine: max context ${result.maxContext}, ${result.maxBatch} sequences and ${result.maxStepTokens} tokens a step, KV pools ${Object.entries(result.kvPool).map(([g, n]) => `${g} ${n}`).join(", ")} blocks of ${result.blockSize}, prefix caching ${result.prefixCaching ? "on" : "off"}; loaded in ${(result.loadMs / 1000).toFixed(1)} s${result.warmup ? ", warmed up" : ""}\n`;
  if ("direct" in result) {
    out += `${runTitle(result.direct)}:\n${formatRun(result.direct)}${runTitle(result.http)}:\n${formatRun(result.http)}`;
    out += `HTTP / engine API output tok/s: ${result.httpOverDirect.toFixed(3)}\n`;
  } else {
    out += `${runTitle(result)}:\n${formatRun(result)}`;
  }
  return out;
}
