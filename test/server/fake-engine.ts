// A deterministic Engine for the server's tests: it checks requests as the real engine promises to (an
// EngineRequestError naming the field), queues them behind a running limit (EngineOverloadedError past the
// waiting limit), and steps all running requests together on a timer, one token each per step. A request's KV
// blocks grow with its tokens (blockSize per block) and go back to the pool when it ends, however it ends, so a
// test can assert that every block is free afterwards. Tokens come from `respond` (a script), else from a hash
// of the prompt; log-probabilities are made up but deterministic.
import {
  EngineOverloadedError,
  EngineRequestError,
  type Engine,
  type EngineModelInfo,
  type EngineStats,
  type FinishReason,
  type GenerationRequest,
  type GenerationStream,
  type GenerationSummary,
  type TokenOutput,
} from "../../src/engine/api.js";
import { HarmonyTokenizer, O200K_HARMONY_VOCAB_SIZE, StreamingDecoder } from "../../src/generate/tokenizer.js";

export interface FakeEngineOptions {
  readonly name?: string;
  /** "o200k_harmony" (the default) or none: a tiny vocabulary that only token ids can address. */
  readonly tokenizer?: "o200k_harmony" | null;
  readonly vocabSize?: number;
  readonly maxContext?: number;
  readonly eosTokenIds?: readonly number[];
  /** The tokens to generate for a request, before maxTokens and stop ids cut them; running out ends it with "stop". */
  readonly respond?: (request: GenerationRequest) => readonly number[];
  /** Milliseconds between steps. */
  readonly stepMs?: number;
  readonly maxRunning?: number;
  readonly maxWaiting?: number;
  readonly blockSize?: number;
  readonly totalBlocks?: number;
  /** Ends a request with finishReason "error" after this many tokens. */
  readonly failAfterTokens?: number;
}

interface Sequence {
  readonly request: GenerationRequest;
  readonly id: string;
  readonly script: readonly number[] | undefined;
  readonly stream: FakeStream;
  readonly decoder: StreamingDecoder | undefined;
  readonly submittedAt: number;
  generated: number;
  blocks: number;
  firstTokenAt?: number;
  onAbort?: () => void;
  ended: boolean;
}

/** FNV-1a over the prompt, then xorshift: the default "model". */
function hashTokens(prompt: readonly number[], count: number, vocab: number, avoidFrom: number): number[] {
  let h = 0x811c9dc5;
  for (const t of prompt) h = Math.imul(h ^ t, 0x01000193) >>> 0;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    h ^= h << 13;
    h >>>= 0;
    h ^= h >>> 17;
    h ^= h << 5;
    h >>>= 0;
    out.push(h % Math.min(vocab, avoidFrom));
  }
  return out;
}

class FakeStream implements GenerationStream {
  readonly done: Promise<GenerationSummary>;
  private readonly queue: TokenOutput[] = [];
  private ended = false;
  private wake: (() => void) | undefined;
  private resolveDone!: (s: GenerationSummary) => void;

  constructor(readonly id: string) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  push(token: TokenOutput): void {
    this.queue.push(token);
    this.wake?.();
  }

  end(summary: GenerationSummary, dropQueued: boolean): void {
    if (this.ended) return;
    if (dropQueued) this.queue.length = 0;
    this.ended = true;
    this.wake?.();
    this.resolveDone(summary);
  }

  [Symbol.asyncIterator](): AsyncIterator<TokenOutput> {
    return {
      next: async () => {
        while (this.queue.length === 0 && !this.ended) await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        const value = this.queue.shift();
        return value !== undefined ? { value, done: false } : { value: undefined, done: true };
      },
      return: async () => ({ value: undefined, done: true }),
    };
  }
}

export class FakeEngine implements Engine {
  readonly model: EngineModelInfo;
  /** Every request submitted (accepted or not), in order. */
  readonly requests: GenerationRequest[] = [];
  /** The most blocks in use at once. */
  peakBlocks = 0;

  private readonly o: Required<Pick<FakeEngineOptions, "stepMs" | "maxRunning" | "maxWaiting" | "blockSize" | "totalBlocks">> & FakeEngineOptions;
  private readonly tokenizer: HarmonyTokenizer | undefined;
  private readonly running = new Set<Sequence>();
  private readonly waiting: Sequence[] = [];
  private usedBlocks = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private nextId = 0;
  private counts = { steps: 0, promptTokens: 0, generatedTokens: 0, prefixQueryTokens: 0 };
  private readonly finished: Record<FinishReason, number> = { stop: 0, length: 0, abort: 0, error: 0 };

  constructor(options: FakeEngineOptions = {}) {
    const harmony = options.tokenizer !== null;
    this.o = { stepMs: 1, maxRunning: 8, maxWaiting: 256, blockSize: 16, totalBlocks: 1 << 16, ...options };
    this.tokenizer = harmony ? HarmonyTokenizer.instance() : undefined;
    this.model = {
      name: options.name ?? (harmony ? "fake-gpt-oss" : "fake-tiny"),
      vocabSize: options.vocabSize ?? (harmony ? O200K_HARMONY_VOCAB_SIZE : 128),
      maxContext: options.maxContext ?? 4096,
      ...(harmony ? { tokenizer: "o200k_harmony" as const } : {}),
      eosTokenIds: options.eosTokenIds ?? (harmony ? [200002, 199999, 200012] : [0]),
      device: "cpu",
    };
  }

  generate(request: GenerationRequest): GenerationStream {
    this.requests.push(request);
    if (this.closed) throw new Error("the engine is closed");
    this.check(request);
    // Requests waiting once the free running slots are filled (admission happens at the next step).
    const queued = this.waiting.length + this.running.size - this.o.maxRunning;
    if (queued >= this.o.maxWaiting) throw new EngineOverloadedError(queued);
    const id = request.id ?? `fake-${this.nextId++}`;
    const seq: Sequence = {
      request,
      id,
      script: this.o.respond?.(request),
      stream: new FakeStream(id),
      decoder: this.tokenizer !== undefined ? new StreamingDecoder(this.tokenizer) : undefined,
      submittedAt: performance.now(),
      generated: 0,
      blocks: 0,
      ended: false,
    };
    this.counts.promptTokens += request.promptIds.length;
    this.counts.prefixQueryTokens += request.promptIds.length;
    if (request.signal?.aborted) {
      this.end(seq, "abort");
      return seq.stream;
    }
    seq.onAbort = () => this.end(seq, "abort");
    request.signal?.addEventListener("abort", seq.onAbort, { once: true });
    this.waiting.push(seq);
    this.schedule();
    return seq.stream;
  }

  stats(): EngineStats {
    return {
      running: this.running.size,
      waiting: this.waiting.length,
      blocks: { full: { used: this.usedBlocks, free: this.o.totalBlocks - this.usedBlocks, total: this.o.totalBlocks } },
      preemptions: 0,
      prefixHitTokens: 0,
      prefixQueryTokens: this.counts.prefixQueryTokens,
      steps: this.counts.steps,
      stepsAhead: 0,
      promptTokens: this.counts.promptTokens,
      generatedTokens: this.counts.generatedTokens,
      finished: { ...this.finished },
      deviceMs: 0,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const seq of [...this.waiting, ...this.running]) this.end(seq, "abort");
  }

  private check(r: GenerationRequest): void {
    const vocab = this.model.vocabSize;
    if (r.promptIds.length === 0) throw new EngineRequestError("promptIds", "the prompt is empty");
    r.promptIds.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new EngineRequestError("promptIds", `token id ${t} at position ${i} is outside the vocabulary of ${vocab} tokens`);
    });
    if (!Number.isInteger(r.maxTokens) || r.maxTokens < 1) throw new EngineRequestError("maxTokens", `must be a positive integer, got ${r.maxTokens}`);
    if (r.promptIds.length + r.maxTokens > this.model.maxContext) {
      throw new EngineRequestError("maxTokens", `the prompt (${r.promptIds.length} tokens) and ${r.maxTokens} new tokens exceed the context of ${this.model.maxContext} tokens`);
    }
    if (r.temperature !== undefined && !(r.temperature >= 0)) throw new EngineRequestError("temperature", `must be >= 0, got ${r.temperature}`);
    if (r.topP !== undefined && !(r.topP > 0 && r.topP <= 1)) throw new EngineRequestError("topP", `must be in (0, 1], got ${r.topP}`);
    if (r.topK !== undefined && !(Number.isInteger(r.topK) && r.topK >= 0)) throw new EngineRequestError("topK", `must be a non-negative integer, got ${r.topK}`);
    if (r.logprobs !== undefined && !(r.logprobs >= 0 && r.logprobs <= 20)) throw new EngineRequestError("logprobs", `must be in 0..20, got ${r.logprobs}`);
    (r.stopTokenIds ?? []).forEach((t) => {
      if (!(t >= 0 && t < vocab)) throw new EngineRequestError("stopTokenIds", `token id ${t} is outside the vocabulary of ${vocab} tokens`);
    });
    // The server matches stop strings itself; a fake that ignored them would hide a server that relied on them.
    if ((r.stopStrings ?? []).length > 0) throw new EngineRequestError("stopStrings", "the fake engine matches no stop strings");
  }

  private schedule(): void {
    if (this.timer !== undefined || (this.running.size === 0 && this.waiting.length === 0)) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.step();
      this.schedule();
    }, this.o.stepMs);
  }

  private blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.o.blockSize);
  }

  private step(): void {
    this.counts.steps++;
    while (this.waiting.length > 0 && this.running.size < this.o.maxRunning) {
      const seq = this.waiting[0]!;
      const need = this.blocksFor(seq.request.promptIds.length + 1);
      if (this.usedBlocks + need > this.o.totalBlocks) break;
      this.waiting.shift();
      this.allocate(seq, need);
      this.running.add(seq);
    }
    for (const seq of [...this.running]) this.emit(seq);
  }

  private allocate(seq: Sequence, total: number): boolean {
    const more = total - seq.blocks;
    if (more <= 0) return true;
    if (this.usedBlocks + more > this.o.totalBlocks) return false;
    this.usedBlocks += more;
    seq.blocks = total;
    this.peakBlocks = Math.max(this.peakBlocks, this.usedBlocks);
    return true;
  }

  private emit(seq: Sequence): void {
    const r = seq.request;
    if (this.o.failAfterTokens !== undefined && seq.generated >= this.o.failAfterTokens) {
      this.end(seq, "error", undefined, "the fake engine failed as configured");
      return;
    }
    let token: number;
    if (seq.script !== undefined) {
      const next = seq.script[seq.generated];
      if (next === undefined) {
        this.end(seq, "stop");
        return;
      }
      token = next;
    } else {
      token = hashTokens([...r.promptIds, seq.generated], 1, this.model.vocabSize, this.tokenizer !== undefined ? 199998 : this.model.vocabSize)[0]!;
    }
    if (!this.allocate(seq, this.blocksFor(r.promptIds.length + seq.generated + 1))) return; // pool full: wait a step
    seq.generated++;
    seq.firstTokenAt ??= performance.now();
    this.counts.generatedTokens++;
    const logprob = -((token % 97) + 1) / 100;
    const output: TokenOutput = {
      token,
      text: seq.decoder?.push(token) ?? "",
      ...(r.logprobs !== undefined ? { logprob } : {}),
      ...(r.logprobs !== undefined && r.logprobs > 0
        ? { topLogprobs: Array.from({ length: r.logprobs }, (_, k) => ({ token: (token + k) % this.model.vocabSize, logprob: k === 0 ? logprob : logprob - k })) }
        : {}),
    };
    seq.stream.push(output);
    if ((r.stopTokenIds ?? []).includes(token)) this.end(seq, "stop", token);
    else if (seq.generated >= r.maxTokens) this.end(seq, "length");
  }

  private end(seq: Sequence, reason: FinishReason, stoppedBy?: number, error?: string): void {
    if (!this.running.delete(seq)) {
      const at = this.waiting.indexOf(seq);
      if (at >= 0) this.waiting.splice(at, 1);
    }
    this.usedBlocks -= seq.blocks;
    seq.blocks = 0;
    if (seq.onAbort !== undefined) seq.request.signal?.removeEventListener("abort", seq.onAbort);
    if (seq.ended) return;
    seq.ended = true;
    this.finished[reason]++;
    const now = performance.now();
    seq.stream.end(
      {
        id: seq.id,
        finishReason: reason,
        promptTokens: seq.request.promptIds.length,
        completionTokens: seq.generated,
        cachedPromptTokens: 0,
        ...(stoppedBy !== undefined ? { stoppedBy } : {}),
        ...(error !== undefined ? { error } : {}),
        ...(seq.firstTokenAt !== undefined ? { timeToFirstTokenMs: seq.firstTokenAt - seq.submittedAt } : {}),
        ...(seq.generated > 1 && seq.firstTokenAt !== undefined ? { timePerOutputTokenMs: (now - seq.firstTokenAt) / (seq.generated - 1) } : {}),
      },
      reason === "abort",
    );
    this.schedule();
  }
}
