// The serving engine: continuous batching over a paged KV cache (the Engine of api.ts).
//
//   generate(request) → validated, queued in the scheduler, returns a stream at once
//   the step loop (one at a time, started when work arrives, ended when none is left):
//     plan = scheduler.schedule() → stepInputs(plan) + each sampling row's settings and uniform draw
//     → backend.step (the GPU samples every row; logits reach the host only for rows that want log-probabilities)
//     → scheduler.complete(plan, tokens) → each request's token, text (UTF-8 safe), stop strings, finish
//     → yield to the event loop, next step
// Each request samples with its own seeded generator, one draw per generated token, so its tokens do not depend on
// what it is batched with (nor on preemption: recomputed tokens are not drawn again). Aborts (AbortSignal) and stop
// strings end a request between steps and free its blocks at once.

import { HARMONY_STOP_TOKENS, HarmonyTokenizer, StreamingDecoder } from "../generate/tokenizer.js";
import { hostTensor, seededRandom } from "../ir/host-tensor.js";
import {
  type Engine, type EngineModelInfo, EngineRequestError, type EngineStats, type FinishReason, type GenerationRequest, type GenerationStream,
  type GenerationSummary, type TokenLogprob, type TokenOutput,
} from "./api.js";
import type { StepBackend } from "./backend.js";
import { type PagedDecoderLayout, STEP_NAMES } from "./contract.js";
import { type FinishedRequest, Scheduler, type SchedulerConfig, type StepPlan } from "./scheduler.js";
import { stepInputs } from "./step-inputs.js";

export interface EngineOptions {
  /** Most requests waiting for admission (generate throws EngineOverloadedError past it). Default 4096. */
  readonly maxWaiting?: number;
  /** Share KV blocks of identical prompt prefixes. Default true. */
  readonly prefixCaching?: boolean;
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
  resolveDone!: (s: GenerationSummary) => void;
  wake: (() => void) | undefined;
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

export class ServingEngine implements Engine {
  private readonly scheduler: Scheduler;
  private readonly requests = new Map<string, LiveRequest>();
  private readonly tokenizer: HarmonyTokenizer | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  private readonly finishedCounts: Record<FinishReason, number> = { stop: 0, length: 0, abort: 0, error: 0 };
  private failure: Error | undefined;

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

  /** Runs steps until no request is left (or the engine closes). */
  private async run(): Promise<void> {
    try {
      for (;;) {
        await new Promise<void>((resolve) => setImmediate(resolve)); // let submissions and aborts in between
        if (this.closed) return;
        const plan = this.scheduler.schedule();
        if (!plan) return;
        await this.step(plan);
      }
    } catch (err) {
      // a failing step (a device error) ends every request with the error; the engine refuses new ones
      this.failure = err instanceof Error ? err : new Error(String(err));
      for (const [id, live] of [...this.requests]) this.end(this.scheduler.finish(id, "error", undefined, this.failure.message), live);
    }
  }

  private async step(plan: StepPlan): Promise<void> {
    const sampling = plan.seqs.filter((s) => s.sample).map((s) => this.requests.get(s.id));
    const rows = sampling.length;
    const temperature = new Float32Array(rows);
    const topK = new Int32Array(rows);
    const topP = new Float32Array(rows);
    const uniform = new Float32Array(rows);
    sampling.forEach((live, r) => {
      const q = live?.request;
      temperature[r] = q?.temperature ?? 0;
      topK[r] = q?.topK ?? 0;
      topP[r] = q?.topP ?? 1;
      // one draw per generated token, whatever the batch (greedy rows draw too, so a request's draws never shift)
      uniform[r] = live ? live.rand() : 0;
    });
    const inputs = {
      ...stepInputs(plan, this.layout),
      [STEP_NAMES.temperature]: hostTensor("f32", [rows], temperature),
      [STEP_NAMES.topK]: hostTensor("i32", [rows], topK),
      [STEP_NAMES.topP]: hostTensor("f32", [rows], topP),
      [STEP_NAMES.uniform]: hostTensor("f32", [rows], uniform),
    };
    // rows whose logits will be read: a backend of several processes fetches them with the step
    const logitRows = sampling.flatMap((live, r) => (live && (live.request.logprobs !== undefined || live.request.logits === true) ? [r] : []));
    const out = await this.backend.step(inputs, logitRows.length ? { logitRows } : {});
    // rows whose logits were not finite end their request with an error before the scheduler sees the token
    const logprobs = new Map<string, { logprob: number; top: TokenLogprob[] }>();
    const rawLogits = new Map<string, Float64Array>();
    sampling.forEach((live, r) => {
      if (!live) return;
      const token = out.tokens[r]!;
      if (token < 0) {
        this.end(this.scheduler.finish(live.id, "error", undefined, `step ${plan.step}: the logits of request "${live.id}" hold NaN or Inf`), live);
        return;
      }
      const needLogits = live.request.logprobs !== undefined || live.request.logits === true;
      const row = needLogits ? out.logits(r) : undefined;
      if (live.request.logprobs !== undefined) logprobs.set(live.id, logprobsOf(row!, token, live.request.logprobs));
      if (live.request.logits) rawLogits.set(live.id, row!);
    });
    const result = this.scheduler.complete(plan, Array.from(out.tokens, (t) => Math.max(t, 0)));
    const finishing = new Map(result.finished.map((f) => [f.id, f]));
    const now = performance.now();
    for (const { id, token } of result.tokens) {
      const live = this.requests.get(id);
      if (!live) continue;
      live.firstTokenAt ??= now;
      live.lastTokenAt = now;
      live.generated++;
      const lp = logprobs.get(id);
      const logits = rawLogits.get(id);
      const withLogprobs = (text: string): TokenOutput => ({ token, text, ...(lp ? { logprob: lp.logprob, topLogprobs: lp.top } : {}), ...(logits ? { logits } : {}) });
      // special tokens (harmony's markup) carry no text; a request's last token also releases what is held back
      let text = live.decoder && !this.tokenizer!.isSpecial(token) ? live.decoder.push(token) : "";
      const stop = this.stopStringIn(live, text);
      if (stop) {
        live.push(withLogprobs(stop.text));
        this.end(this.scheduler.finish(id, "stop", stop.stop), live);
        continue;
      }
      if (finishing.has(id)) text += live.decoder?.flush() ?? "";
      live.push(withLogprobs(text));
    }
    for (const f of result.finished) {
      const live = this.requests.get(f.id);
      if (live) this.end(f, live);
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

  private end(f: FinishedRequest | undefined, live: LiveRequest): void {
    if (live.ended) return;
    live.ended = true;
    live.detachAbort?.();
    this.requests.delete(live.id);
    const reason = f?.reason ?? "abort";
    this.finishedCounts[reason]++;
    const first = live.firstTokenAt;
    live.resolveDone({
      id: live.id,
      finishReason: reason,
      promptTokens: f?.promptTokens ?? live.request.promptIds.length,
      completionTokens: f?.completionTokens ?? live.generated,
      cachedPromptTokens: f?.cachedPromptTokens ?? 0,
      ...(f?.stoppedBy !== undefined ? { stoppedBy: f.stoppedBy } : {}),
      ...(f?.error !== undefined ? { error: f.error } : {}),
      ...(first !== undefined ? { timeToFirstTokenMs: first - live.submitted } : {}),
      ...(first !== undefined && live.generated > 1 ? { timePerOutputTokenMs: (live.lastTokenAt! - first) / (live.generated - 1) } : {}),
    });
    live.wake?.();
  }

  stats(): EngineStats {
    return { ...this.scheduler.stats(), finished: { ...this.finishedCounts } };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, live] of [...this.requests]) this.end(this.scheduler.abort(id), live);
    await this.loop;
    await this.backend.dispose();
  }
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
