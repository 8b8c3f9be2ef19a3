// The serving engine: continuous batching over a paged KV cache (the Engine of api.ts).
//
//   generate(request) → validated, queued in the scheduler, returns a stream at once
//   the step loop (one step in flight at a time, started when work arrives, ended when none is left):
//     launch:  plan = scheduler.schedule() → step inputs (StepInputBuilder, arrays reused from step to step) + each
//              sampling row's settings and uniform draw → backend.step (the GPU samples every row; logits reach the
//              host only for rows that want log-probabilities) — queued on the device, not awaited yet
//     yield to the event loop (I/O, consumers) while the device computes; then await the step
//     complete: scheduler.complete(plan, tokens) → stop tokens, maxTokens; for requests with stop strings their
//              text (UTF-8 safe) and the stop-string check → every request that ended is ended (blocks freed)
//     launch the next step, and only then deliver this step's tokens: the text of requests without stop strings
//              is decoded, each token pushed to its stream, finished requests' summaries resolved
//     ahead:   while a step runs, the step after it is queued behind it when the scheduler can plan it without its
//              tokens (every sequence decodes the token being sampled: Scheduler.scheduleAhead) and the backend
//              feeds them back on the device, so the device never waits for the host between decode steps; rows of
//              requests that the step before ended are dropped at complete
// So what consumers do with a step's tokens (an HTTP server's chunks and socket writes) runs while the next step
// computes, not between steps, and the host work between two steps is only what decides the next one. Nothing a
// request receives changes: its tokens, texts and summary are those of the step that made them, in order.
// Each request samples with its own seeded generator, one draw per generated token, so its tokens do not depend on
// what it is batched with (nor on preemption: recomputed tokens are not drawn again). Stop strings end a request
// before the next step is planned; aborts (AbortSignal) end it at once and free its blocks (a consumer that aborts
// on seeing a token does so while the next step, which may still hold the request, computes: that token is dropped).

import { HARMONY_STOP_TOKENS, HarmonyTokenizer, StreamingDecoder } from "../generate/tokenizer.js";
import { seededRandom } from "../ir/host-tensor.js";
import {
  type Engine, type EngineModelInfo, EngineRequestError, type EngineStats, type FinishReason, type GenerationRequest, type GenerationStream,
  type GenerationSummary, type TokenLogprob, type TokenOutput,
} from "./api.js";
import type { StepBackend, StepOutputs } from "./backend.js";
import { type PagedDecoderLayout, STEP_NAMES, type StepTensor } from "./contract.js";
import { type FinishedRequest, Scheduler, type SchedulerConfig, type StepPlan } from "./scheduler.js";
import { StepInputBuilder } from "./step-inputs.js";

export interface EngineOptions {
  /** Most requests waiting for admission (generate throws EngineOverloadedError past it). Default 4096. */
  readonly maxWaiting?: number;
  /** Share KV blocks of identical prompt prefixes. Default true. */
  readonly prefixCaching?: boolean;
  /**
   * Queue the next decode step behind the running one, its tokens fed back on the device, where the scheduler can
   * plan it and the backend can feed them (ServingEngine's run loop). Default true.
   */
  readonly planAhead?: boolean;
  /** Tokens per step (≤ the plan's bound); default the plan's bound. */
  readonly maxTokensPerStep?: number;
  /** Sequences per step (≤ the plan's bound); default the plan's bound. */
  readonly maxSeqsPerStep?: number;
}

export const MAX_TOP_LOGPROBS = 20;

/** One live request: its settings, generator, text decoding and the consumer side of its stream. */
class LiveRequest {
  readonly outputs: TokenOutput[] = [];
  readonly done: Promise<GenerationSummary>;
  private resolveDone!: (s: GenerationSummary) => void;
  wake: (() => void) | undefined;
  /** The engine is done with the request (its blocks freed, counted); its stream may still have a token and its summary to get. */
  finished = false;
  /** The stream has everything: no token comes after the ones in `outputs`, and `done` is resolved. */
  ended = false;
  readonly submitted = performance.now();
  firstTokenAt: number | undefined;
  lastTokenAt: number | undefined;
  generated = 0;
  readonly rand: () => number;
  readonly decoder: StreamingDecoder | undefined;
  /** Text generated so far, kept only to search for stop strings (its length is bounded by the longest). */
  tail = "";
  detachAbort: (() => void) | undefined;

  constructor(readonly id: string, readonly request: GenerationRequest, tokenizer: HarmonyTokenizer | undefined) {
    this.rand = seededRandom(request.seed ?? 0);
    this.decoder = tokenizer ? new StreamingDecoder(tokenizer) : undefined;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  push(out: TokenOutput): void {
    this.outputs.push(out);
    this.wake?.();
  }

  settle(summary: GenerationSummary): void {
    this.ended = true;
    this.resolveDone(summary);
    this.wake?.();
  }

  async *stream(): AsyncGenerator<TokenOutput> {
    let i = 0;
    for (;;) {
      while (i < this.outputs.length) yield this.outputs[i++]!;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

let nextRequestId = 0;

/** A step queued on the backend: its plan, the request behind each sampling row, and its result (never rejecting). */
interface LaunchedStep {
  readonly plan: StepPlan;
  readonly sampling: readonly (LiveRequest | undefined)[];
  readonly result: Promise<{ readonly out: StepOutputs } | { readonly error: unknown }>;
}

/** What a completed step hands to a request's stream after the next launch: a token (its text decoded then), or the end. */
type Delivery =
  | {
      readonly kind: "token";
      readonly live: LiveRequest;
      readonly token: number;
      /** The token's text, when completing the step already decoded it (stop strings); otherwise decoded on delivery. */
      readonly text: string | undefined;
      /** The request's last token: release what the decoder holds back. */
      readonly last: boolean;
      readonly logprobs: { readonly logprob: number; readonly top: TokenLogprob[] } | undefined;
      readonly logits: Float64Array | undefined;
    }
  | { readonly kind: "end"; readonly live: LiveRequest; readonly summary: GenerationSummary };

/** The sampling settings of a step's rows, reused from step to step (views of the first `rows`). */
class SamplingRows {
  private readonly temperature: Float32Array;
  private readonly topK: Int32Array;
  private readonly topP: Float32Array;
  private readonly uniform: Float32Array;

  constructor(maxRows: number) {
    this.temperature = new Float32Array(maxRows);
    this.topK = new Int32Array(maxRows);
    this.topP = new Float32Array(maxRows);
    this.uniform = new Float32Array(maxRows);
  }

  build(sampling: readonly (LiveRequest | undefined)[]): Record<string, StepTensor> {
    const rows = sampling.length;
    for (let r = 0; r < rows; r++) {
      const live = sampling[r];
      const q = live?.request;
      this.temperature[r] = q?.temperature ?? 0;
      this.topK[r] = q?.topK ?? 0;
      this.topP[r] = q?.topP ?? 1;
      // one draw per generated token, whatever the batch (greedy rows draw too, so a request's draws never shift)
      this.uniform[r] = live ? live.rand() : 0;
    }
    const shape = [rows];
    return {
      [STEP_NAMES.temperature]: { dtype: "f32", shape, data: this.temperature.subarray(0, rows) },
      [STEP_NAMES.topK]: { dtype: "i32", shape, data: this.topK.subarray(0, rows) },
      [STEP_NAMES.topP]: { dtype: "f32", shape, data: this.topP.subarray(0, rows) },
      [STEP_NAMES.uniform]: { dtype: "f32", shape, data: this.uniform.subarray(0, rows) },
    };
  }
}

export class ServingEngine implements Engine {
  private readonly scheduler: Scheduler;
  private readonly requests = new Map<string, LiveRequest>();
  private readonly tokenizer: HarmonyTokenizer | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  private readonly finishedCounts: Record<FinishReason, number> = { stop: 0, length: 0, abort: 0, error: 0 };
  /** Device time of the steps so far, ms (EngineStats.deviceMs). */
  private deviceMs = 0;
  private failure: Error | undefined;
  /** Step inputs and sampling rows, two of each used in turn: a step planned ahead is built while the one before runs. */
  private readonly inputs: readonly [StepInputBuilder, StepInputBuilder];
  private readonly samplingRows: readonly [SamplingRows, SamplingRows];
  private launches = 0;
  private readonly planAhead: boolean;

  constructor(
    private readonly backend: StepBackend,
    readonly layout: PagedDecoderLayout,
    readonly model: EngineModelInfo,
    poolBlocks: Readonly<Record<string, number>>,
    options: EngineOptions = {},
  ) {
    this.tokenizer = model.tokenizer === "o200k_harmony" ? HarmonyTokenizer.instance() : undefined;
    const config: SchedulerConfig = {
      blockSize: layout.blockSize,
      groups: layout.groups.map((g) => ({ name: g.name, numBlocks: poolBlocks[g.name]!, ...(g.window ? { window: g.window } : {}) })),
      maxSeqs: Math.min(options.maxSeqsPerStep ?? layout.maxSeqsPerStep, layout.maxSeqsPerStep),
      maxTokensPerStep: Math.min(options.maxTokensPerStep ?? layout.maxTokensPerStep, layout.maxTokensPerStep),
      maxContext: layout.maxContext,
      prefixCaching: options.prefixCaching ?? true,
      maxWaiting: options.maxWaiting ?? 4096,
    };
    for (const g of config.groups) if (!(Number.isInteger(g.numBlocks) && g.numBlocks > 0)) throw new Error(`KV group ${g.name} needs a positive block count, got ${g.numBlocks}`);
    this.scheduler = new Scheduler(config);
    this.inputs = [new StepInputBuilder(layout, config.maxSeqs, config.maxTokensPerStep), new StepInputBuilder(layout, config.maxSeqs, config.maxTokensPerStep)];
    this.samplingRows = [new SamplingRows(config.maxSeqs), new SamplingRows(config.maxSeqs)];
    this.planAhead = (options.planAhead ?? true) && backend.feedsBackTokens === true;
  }

  generate(request: GenerationRequest): GenerationStream {
    if (this.closed) throw new EngineRequestError("engine", "the engine is closed");
    if (this.failure) throw new EngineRequestError("engine", `the engine stopped after an error: ${this.failure.message}`);
    const id = request.id ?? `req-${nextRequestId++}`;
    this.validate(id, request);
    const live = new LiveRequest(id, request, this.tokenizer);
    this.scheduler.add({ id, promptIds: request.promptIds, maxTokens: request.maxTokens, stopTokenIds: request.stopTokenIds ?? [] });
    this.requests.set(id, live);
    if (request.signal) {
      const onAbort = () => this.end(this.scheduler.abort(id), live);
      if (request.signal.aborted) queueMicrotask(onAbort);
      else {
        request.signal.addEventListener("abort", onAbort, { once: true });
        live.detachAbort = () => request.signal!.removeEventListener("abort", onAbort);
      }
    }
    this.loop ??= this.run().finally(() => (this.loop = undefined));
    return { id, done: live.done, [Symbol.asyncIterator]: () => live.stream() };
  }

  /** Settings the scheduler does not check; the scheduler checks ids, prompt and maxTokens. */
  private validate(id: string, r: GenerationRequest): void {
    const field = (name: string, ok: boolean, what: string) => {
      if (!ok) throw new EngineRequestError(name, `request "${id}": ${name} ${what}`);
    };
    field("temperature", r.temperature === undefined || (Number.isFinite(r.temperature) && r.temperature >= 0), `must be a finite number ≥ 0, got ${r.temperature}`);
    field("topK", r.topK === undefined || (Number.isInteger(r.topK) && r.topK >= 0), `must be a whole number ≥ 0, got ${r.topK}`);
    field("topP", r.topP === undefined || (r.topP > 0 && r.topP <= 1), `must be in (0, 1], got ${r.topP}`);
    field("seed", r.seed === undefined || (Number.isInteger(r.seed) && r.seed >= 0), `must be a whole number ≥ 0, got ${r.seed}`);
    field("logprobs", r.logprobs === undefined || (Number.isInteger(r.logprobs) && r.logprobs >= 0 && r.logprobs <= MAX_TOP_LOGPROBS), `must be a whole number in [0, ${MAX_TOP_LOGPROBS}], got ${r.logprobs}`);
    field("stopStrings", r.stopStrings === undefined || r.stopStrings.length === 0 || this.tokenizer !== undefined, `need a tokenizer, and this model's vocabulary has none`);
    field("stopStrings", (r.stopStrings ?? []).every((s) => typeof s === "string" && s.length > 0), `must be non-empty strings`);
    const vocab = this.model.vocabSize;
    const bad = r.promptIds.findIndex((t) => !(Number.isInteger(t) && t >= 0 && t < vocab));
    if (bad >= 0) throw new EngineRequestError("promptIds", `prompt id ${r.promptIds[bad]} is outside the model's vocabulary of ${vocab} tokens (at position ${bad})`);
  }

  /**
   * Runs steps until no request is left (or the engine closes): one in flight while the last one's tokens are
   * delivered, and, where the scheduler can plan it (decodes only), the next one queued behind it with its tokens fed
   * back on the device, so the device does not wait for the host between them.
   */
  private async run(): Promise<void> {
    try {
      await new Promise<void>((resolve) => setImmediate(resolve)); // let the submissions of this tick into the first step
      let step = this.closed ? undefined : this.launch();
      let ahead: LaunchedStep | undefined;
      while (step) {
        ahead ??= this.closed ? undefined : this.launchAhead(step);
        // the event loop is free while the device computes: submissions, aborts, and consumers of the last tokens
        await new Promise<void>((resolve) => setImmediate(resolve));
        const result = await step.result;
        if ("error" in result) throw result.error;
        const deliveries = this.complete(step, result.out);
        try {
          step = ahead ?? (this.closed ? undefined : this.launch());
          ahead = undefined;
        } finally {
          this.deliver(deliveries);
        }
      }
    } catch (err) {
      // a failing step (a device error) ends every request with the error; the engine refuses new ones
      this.failure = err instanceof Error ? err : new Error(String(err));
      for (const [id, live] of [...this.requests]) this.end(this.scheduler.finish(id, "error", undefined, this.failure.message), live);
    }
  }

  /** Plans the next step and queues it on the backend; undefined when nothing is left to run. */
  private launch(): LaunchedStep | undefined {
    const plan = this.scheduler.schedule();
    return plan ? this.queue(plan) : undefined;
  }

  /**
   * Plans the step after `step` while it runs (Scheduler.scheduleAhead) and queues it behind it, its tokens fed back
   * on the device; undefined when the backend cannot, the scheduler does not, or a request of `step` reads its
   * logits (they would be overwritten by the step queued behind before they are read).
   */
  private launchAhead(step: LaunchedStep): LaunchedStep | undefined {
    if (!this.planAhead || step.sampling.some((live) => live !== undefined && wantsLogits(live))) return undefined;
    const plan = this.scheduler.scheduleAhead();
    return plan ? this.queue(plan) : undefined;
  }

  /** Builds a planned step's inputs (the next of the two input sets) and queues it on the backend. */
  private queue(plan: StepPlan): LaunchedStep {
    const sampling: (LiveRequest | undefined)[] = [];
    for (const s of plan.seqs) if (s.sample) sampling.push(this.requests.get(s.id));
    const turn = this.launches++ % 2;
    const inputs = { ...this.inputs[turn]!.build(plan), ...this.samplingRows[turn]!.build(sampling) };
    // rows whose logits will be read: a backend of several processes fetches them with the step
    const logitRows: number[] = [];
    sampling.forEach((live, r) => {
      if (live && wantsLogits(live)) logitRows.push(r);
    });
    let pending: Promise<StepOutputs>;
    try {
      pending = this.backend.step(inputs, { ...(logitRows.length ? { logitRows } : {}), ...(plan.feedback ? { feedback: plan.feedback } : {}) });
    } catch (err) {
      pending = Promise.reject(err);
    }
    // settled into a value at once, so a step that fails while the loop yields is never an unhandled rejection
    return { plan, sampling, result: pending.then((out) => ({ out }), (error: unknown) => ({ error })) };
  }

  /**
   * A step's results, as far as they decide the next step: the scheduler advances (stop tokens, maxTokens), rows
   * whose logits were not finite end with an error, and stop strings are checked (their requests' text decoded);
   * every request that ended is ended here, its blocks freed. Returns the tokens to deliver, in order.
   */
  private complete(step: LaunchedStep, out: StepOutputs): Delivery[] {
    const { plan, sampling } = step;
    this.deviceMs += out.deviceMs ?? 0;
    const logprobs = new Map<string, { logprob: number; top: TokenLogprob[] }>();
    const rawLogits = new Map<string, Float64Array>();
    const sampled = new Array<number>(sampling.length);
    for (let r = 0; r < sampling.length; r++) {
      const token = out.tokens[r]!;
      sampled[r] = Math.max(token, 0);
      const live = sampling[r];
      if (!live) continue;
      // rows whose logits were not finite end their request with an error before the scheduler sees the token
      if (token < 0) {
        this.end(this.scheduler.finish(live.id, "error", undefined, `step ${plan.step}: the logits of request "${live.id}" hold NaN or Inf`), live);
        continue;
      }
      const row = wantsLogits(live) ? out.logits(r) : undefined;
      if (live.request.logprobs !== undefined) logprobs.set(live.id, logprobsOf(row!, token, live.request.logprobs));
      if (live.request.logits) rawLogits.set(live.id, row!);
    }
    const result = this.scheduler.complete(plan, sampled);
    const finishing = new Map<string, FinishedRequest>();
    for (const f of result.finished) finishing.set(f.id, f);
    const now = performance.now();
    const deliveries: Delivery[] = [];
    const ended = new Map<LiveRequest, FinishedRequest>();
    for (const { id, token } of result.tokens) {
      const live = this.requests.get(id);
      if (!live) continue;
      live.firstTokenAt ??= now;
      live.lastTokenAt = now;
      live.generated++;
      const lp = logprobs.get(id);
      const logits = rawLogits.get(id);
      const stops = live.request.stopStrings;
      if (stops !== undefined && stops.length > 0) {
        // the next step must not hold a request that a stop string ends now: decode and check its text here
        let text = live.decoder && !this.tokenizer!.isSpecial(token) ? live.decoder.push(token) : "";
        const stop = this.stopStringIn(live, text);
        if (stop) {
          deliveries.push({ kind: "token", live, token, text: stop.text, last: false, logprobs: lp, logits });
          // a token that reaches maxTokens (or a stop token) and completes a stop string: the stop string ended it
          const already = finishing.get(id);
          ended.set(live, already ? { ...already, reason: "stop", stoppedBy: stop.stop } : this.scheduler.finish(id, "stop", stop.stop)!);
          continue;
        }
        if (finishing.has(id)) text += live.decoder?.flush() ?? "";
        deliveries.push({ kind: "token", live, token, text, last: false, logprobs: lp, logits });
        continue;
      }
      deliveries.push({ kind: "token", live, token, text: undefined, last: finishing.has(id), logprobs: lp, logits });
    }
    for (const f of result.finished) {
      const live = this.requests.get(f.id);
      if (live && !ended.has(live)) ended.set(live, f);
    }
    // ended now (blocks freed above, the request leaves the engine), its summary delivered after its last token
    for (const [live, f] of ended) this.end(f, live, deliveries);
    return deliveries;
  }

  /** Pushes a completed step's tokens to their streams (decoding the text not decoded yet) and resolves the summaries of the requests that ended. */
  private deliver(deliveries: readonly Delivery[]): void {
    for (const d of deliveries) {
      if (d.kind === "end") {
        d.live.settle(d.summary);
        continue;
      }
      const { live, token } = d;
      let text = d.text;
      if (text === undefined) {
        // special tokens (harmony's markup) carry no text; a request's last token also releases what is held back
        text = live.decoder && !this.tokenizer!.isSpecial(token) ? live.decoder.push(token) : "";
        if (d.last) text += live.decoder?.flush() ?? "";
      }
      live.push({ token, text, ...(d.logprobs ? { logprob: d.logprobs.logprob, topLogprobs: d.logprobs.top } : {}), ...(d.logits ? { logits: d.logits } : {}) });
    }
  }

  /** A stop string completed by `text` (appended to what came before): the text up to it, and the string. */
  private stopStringIn(live: LiveRequest, text: string): { text: string; stop: string } | undefined {
    const stops = live.request.stopStrings;
    if (!stops || stops.length === 0 || text === "") return undefined;
    const before = live.tail.length;
    live.tail += text;
    let first: { at: number; stop: string } | undefined;
    for (const stop of stops) {
      const at = live.tail.indexOf(stop);
      if (at >= 0 && (!first || at < first.at)) first = { at, stop };
    }
    if (first) return { text: live.tail.slice(before, Math.max(before, first.at)), stop: first.stop };
    const keep = Math.max(...stops.map((s) => s.length)) - 1;
    if (live.tail.length > keep) live.tail = live.tail.slice(live.tail.length - keep);
    return undefined;
  }

  /**
   * Ends a request in the engine at once (the scheduler has freed its blocks; it leaves the request map and is
   * counted) and settles its stream: now, or, given the deliveries of the step that ended it, after its last token.
   */
  private end(f: FinishedRequest | undefined, live: LiveRequest, deliveries?: Delivery[]): void {
    if (live.finished) return;
    live.finished = true;
    live.detachAbort?.();
    this.requests.delete(live.id);
    const reason = f?.reason ?? "abort";
    this.finishedCounts[reason]++;
    const first = live.firstTokenAt;
    const summary: GenerationSummary = {
      id: live.id,
      finishReason: reason,
      promptTokens: f?.promptTokens ?? live.request.promptIds.length,
      completionTokens: f?.completionTokens ?? live.generated,
      cachedPromptTokens: f?.cachedPromptTokens ?? 0,
      ...(f?.stoppedBy !== undefined ? { stoppedBy: f.stoppedBy } : {}),
      ...(f?.error !== undefined ? { error: f.error } : {}),
      ...(first !== undefined ? { timeToFirstTokenMs: first - live.submitted } : {}),
      ...(first !== undefined && live.generated > 1 ? { timePerOutputTokenMs: (live.lastTokenAt! - first) / (live.generated - 1) } : {}),
    };
    if (deliveries) deliveries.push({ kind: "end", live, summary });
    else live.settle(summary);
  }

  stats(): EngineStats {
    return { ...this.scheduler.stats(), finished: { ...this.finishedCounts }, deviceMs: this.deviceMs };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, live] of [...this.requests]) this.end(this.scheduler.abort(id), live);
    await this.loop;
    await this.backend.dispose();
  }
}

/** Whether a request reads its logits (log-probabilities or raw logits) with each token. */
function wantsLogits(live: LiveRequest): boolean {
  return live.request.logprobs !== undefined || live.request.logits === true;
}

/** The chosen token's log-probability under the model's distribution (log-softmax of the raw logits) and the `top` most likely. */
export function logprobsOf(logits: ArrayLike<number>, token: number, top: number): { logprob: number; top: TokenLogprob[] } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const best: TokenLogprob[] = [];
  if (top > 0) {
    for (let i = 0; i < logits.length; i++) {
      const lp = logits[i]! - lse;
      if (best.length < top || lp > best[best.length - 1]!.logprob) {
        best.push({ token: i, logprob: lp });
        best.sort((a, b) => b.logprob - a.logprob || a.token - b.token);
        if (best.length > top) best.pop();
      }
    }
  }
  return { logprob: logits[token]! - lse, top: best };
}

/** Stop tokens of a model: its EOS ids, plus harmony's <|return|> and <|call|> for the o200k_harmony vocabulary. */
export function defaultStopTokens(model: EngineModelInfo): number[] {
  return [...new Set([...model.eosTokenIds, ...(model.tokenizer === "o200k_harmony" ? HARMONY_STOP_TOKENS : [])])];
}
