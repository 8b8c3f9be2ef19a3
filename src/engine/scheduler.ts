// Continuous batching: which tokens of which sequences each `step` runs, over the paged KV cache (kv-manager.ts).
//
// The engine loop is: plan = schedule(); run the model on stepInputs(plan); sample one token per sampling
// sequence; complete(plan, tokens). Requests may be added, aborted or finished (stop strings) at any time,
// including while a step is in flight. While one step is in flight, scheduleAhead() may plan the next one, whose
// sequences decode the tokens that step samples (fed back on the device); steps complete in the order planned.
//
// A step, in priority order (every running sequence is older than every waiting one, and older goes first):
//   1. every running sequence with one token left to compute (a decode) gets it;
//   2. running sequences in the middle of a prompt continue, each with as much of the rest of its prompt as the
//      token budget and the free blocks allow (chunked prefill);
//   3. waiting sequences are admitted first come first served while budget, sequence slots and blocks last; each
//      takes its cached prompt prefix and a first chunk sized like in 2. The first that does not fit stops
//      admission (no overtaking, so a long prompt is never starved by short ones). Nothing is admitted in a step
//      that had to preempt: the pool is tight, and the blocks just freed are what the running sequences need next.
// A chunk is cut short only where the budget or some group's free blocks run out, and then nothing after it is
// admitted; so at most one sequence is ever mid-prompt, the newest, last in the plan.
// When a running sequence cannot get blocks for even one token, the most recently admitted running sequence is
// preempted (possibly itself): its blocks are freed and it goes back to the front of the waiting queue, to be
// recomputed from its prompt plus what it has generated so far (the prefix cache usually makes that cheap).
// Repeat until it fits. Every request ever added ends with a reason: a sequence keeps the invariant that it fits
// the pool alone (checked when it is added and after every token: otherwise it ends with "error"), so the oldest
// running sequence always progresses once everything newer is preempted.
//
// A step costs O(running + admitted) plus the blocks it allocates, hashes and releases; admission also looks up
// the head's prompt blocks in the prefix cache (hashed once per request, kept across preemptions).

import { EngineOverloadedError, EngineRequestError, type EngineStats, type FinishReason } from "./api.js";
import { BlockHashChain } from "./block-pool.js";
import { type BlockCounts, type KvGroupConfig, KvManager, type KvSequence, type PrefixMatch } from "./kv-manager.js";

export interface SchedulerConfig {
  /** Tokens per KV block. */
  readonly blockSize: number;
  /** The KV groups and their pool sizes, in the order block tables are listed in a plan. */
  readonly groups: readonly KvGroupConfig[];
  /** Most sequences one step runs; also the most running at once. */
  readonly maxSeqs: number;
  /** Most tokens one step runs; at least maxSeqs, so that every running sequence can decode each step. */
  readonly maxTokensPerStep: number;
  /** Most tokens one sequence holds, prompt and output. */
  readonly maxContext: number;
  /** Share the KV blocks of identical prompt prefixes (default true). */
  readonly prefixCaching?: boolean;
  /** Most requests waiting for admission; `add` throws EngineOverloadedError past it (default: no bound). */
  readonly maxWaiting?: number;
}

/** What the scheduler needs of a request (sampling is the engine's business). */
export interface SchedulerRequest {
  readonly id: string;
  readonly promptIds: readonly number[];
  /** Most tokens to generate. */
  readonly maxTokens: number;
  readonly stopTokenIds?: readonly number[];
}

/** One sequence's part of a step. */
export interface ScheduledSeq {
  readonly id: string;
  /** Tokens already in the pool: this step's first position (`context_lens`). */
  readonly start: number;
  /** The tokens this step computes, at positions start … start + tokenIds.length − 1. */
  readonly tokenIds: readonly number[];
  /** Whether the last of these tokens is the sequence's last known token, so its logits give the next token. */
  readonly sample: boolean;
  /**
   * Per group, in config order: the sequence's block table, with blocks for every position this step writes.
   * These are the scheduler's live tables: read them before the next `complete`.
   */
  readonly blockTables: readonly (readonly number[])[];
}

export interface StepPlan {
  /** Counts the steps planned so far, from 0. */
  readonly step: number;
  readonly blockSize: number;
  /** Group names, in the order of each sequence's blockTables. */
  readonly groups: readonly string[];
  /** Decodes first, then prefill chunks; the sampling ones are the logit rows, in this order. */
  readonly seqs: readonly ScheduledSeq[];
  readonly numTokens: number;
  readonly numSampled: number;
  /** Requests preempted while planning this step: their blocks are freed and they wait to be recomputed. */
  readonly preempted: readonly string[];
  /**
   * A step planned ahead (scheduleAhead), while the step before it is still in flight: every sequence decodes the
   * token that step samples, which no one knows yet. Its token ids are FED_BACK_TOKEN; the backend takes token i
   * from sample row feedback[i] of the step before (on the device, without a round trip through the host).
   */
  readonly feedback?: readonly number[];
}

/** The token id a step planned ahead lists for the token the step before it samples (StepPlan.feedback). */
export const FED_BACK_TOKEN = -1;

/** A request that ended, with what the engine's GenerationSummary needs. */
export interface FinishedRequest {
  readonly id: string;
  readonly reason: FinishReason;
  /** The stop token id (reason "stop"), or what the caller passed to `finish`. */
  readonly stoppedBy?: number | string;
  /** With reason "error": what went wrong. */
  readonly error?: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens whose keys and values came from the prefix cache at the request's first admission. */
  readonly cachedPromptTokens: number;
}

export interface StepResult {
  /** The token each sampling sequence still live got, in plan order. */
  readonly tokens: readonly { readonly id: string; readonly token: number }[];
  /** Requests that ended in this step (after their last token above). */
  readonly finished: readonly FinishedRequest[];
  /** The plan's preempted requests. */
  readonly preempted: readonly string[];
}

export interface SchedulerStats extends Omit<EngineStats, "deviceMs"> {
  readonly blocks: Readonly<Record<string, BlockCounts>>;
}

type SeqState = "waiting" | "running" | "ended";

class Sequence {
  /** The prompt, then every generated token; only ever appended to. */
  readonly tokens: number[];
  readonly promptTokens: number;
  readonly stop: ReadonlySet<number>;
  readonly chain: BlockHashChain;
  state: SeqState = "waiting";
  /** The KV blocks while running. */
  kv: KvSequence | undefined;
  admittedOnce = false;
  cachedPromptTokens = 0;

  constructor(readonly request: SchedulerRequest, blockSize: number) {
    this.tokens = [...request.promptIds];
    this.promptTokens = this.tokens.length;
    this.stop = new Set(request.stopTokenIds ?? []);
    this.chain = new BlockHashChain(blockSize);
  }

  get id(): string {
    return this.request.id;
  }

  get generated(): number {
    return this.tokens.length - this.promptTokens;
  }
}

interface PendingStep {
  readonly plan: StepPlan;
  readonly seqs: readonly Sequence[];
}

const isTokenId = (t: number): boolean => Number.isInteger(t) && t >= 0 && t <= 0x7fffffff;

export class Scheduler {
  readonly kv: KvManager;
  private readonly config: Required<SchedulerConfig>;
  private readonly live = new Map<string, Sequence>();
  /** Admission order: the last is the newest (the first to be preempted). */
  private running: Sequence[] = [];
  private readonly waiting: Sequence[] = [];
  /** Steps planned and not completed, oldest first: one, or two when the second was planned ahead. */
  private pending: PendingStep[] = [];
  private stepsPlanned = 0;
  private stepsDone = 0;
  private stepsAhead = 0;
  private preemptions = 0;
  private prefixHitTokens = 0;
  private prefixQueryTokens = 0;
  private promptTokens = 0;
  private generatedTokens = 0;
  private readonly finishedCounts: Record<FinishReason, number> = { stop: 0, length: 0, abort: 0, error: 0 };

  constructor(config: SchedulerConfig) {
    const whole = (name: string, v: number): void => {
      if (!Number.isInteger(v) || v < 1) throw new Error(`scheduler: ${name} must be a positive whole number, got ${v}`);
    };
    whole("maxSeqs", config.maxSeqs);
    whole("maxTokensPerStep", config.maxTokensPerStep);
    whole("maxContext", config.maxContext);
    if (config.maxContext < 2) throw new Error(`scheduler: maxContext ${config.maxContext} leaves no room to generate after a prompt`);
    if (config.maxTokensPerStep < config.maxSeqs) throw new Error(`scheduler: maxTokensPerStep (${config.maxTokensPerStep}) must be at least maxSeqs (${config.maxSeqs}), so every running sequence can decode each step`);
    const maxWaiting = config.maxWaiting ?? Infinity;
    if (!(maxWaiting >= 0)) throw new Error(`scheduler: maxWaiting must be ≥ 0, got ${maxWaiting}`);
    this.config = { ...config, prefixCaching: config.prefixCaching ?? true, maxWaiting };
    this.kv = new KvManager({ blockSize: config.blockSize, groups: config.groups, prefixCaching: this.config.prefixCaching });
  }

  /**
   * Queues a request. Throws EngineRequestError (nothing queued) for a malformed request, a prompt longer than
   * maxContext − 1 (one token must be left to generate) or one the KV pool cannot hold even alone; throws
   * EngineOverloadedError when maxWaiting requests already wait.
   */
  add(request: SchedulerRequest): void {
    const { id, promptIds, maxTokens } = request;
    if (typeof id !== "string" || id === "") throw new EngineRequestError("id", "a request needs a non-empty id");
    if (this.live.has(id)) throw new EngineRequestError("id", `request "${id}" is already running or waiting`);
    if (promptIds.length === 0) throw new EngineRequestError("promptIds", `request "${id}": the prompt is empty`);
    const bad = promptIds.findIndex((t) => !isTokenId(t));
    if (bad >= 0) throw new EngineRequestError("promptIds", `request "${id}": prompt token ${bad} is ${promptIds[bad]}, not a token id`);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new EngineRequestError("maxTokens", `request "${id}": maxTokens must be a positive whole number, got ${maxTokens}`);
    const badStop = (request.stopTokenIds ?? []).find((t) => !isTokenId(t));
    if (badStop !== undefined) throw new EngineRequestError("stopTokenIds", `request "${id}": stop token ${badStop} is not a token id`);
    const limit = this.config.maxContext - 1;
    if (promptIds.length > limit) throw new EngineRequestError("promptIds", `request "${id}": the prompt has ${promptIds.length} tokens; at most ${limit} fit (maxContext ${this.config.maxContext}, less one to generate)`);
    const short = this.kv.shortfallAlone(promptIds.length);
    if (short !== undefined) throw new EngineRequestError("promptIds", `request "${id}": the prompt's ${promptIds.length} tokens need ${short.need} KV blocks in group "${short.group}", whose pool has ${short.have}`);
    if (this.waiting.length >= this.config.maxWaiting) throw new EngineOverloadedError(this.waiting.length);
    const seq = new Sequence(request, this.config.blockSize);
    this.live.set(id, seq);
    this.waiting.push(seq);
  }

  /** Whether a request is waiting or running. */
  has(id: string): boolean {
    return this.live.has(id);
  }

  /** Plans the next step (see the header); undefined when nothing is running or waiting. */
  schedule(): StepPlan | undefined {
    if (this.pending.length > 0) throw new Error(`step ${this.pending[0]!.plan.step} is still in flight: complete it before planning another`);
    if (this.running.length === 0 && this.waiting.length === 0) return undefined;
    const chunks = new Map<Sequence, number>(); // insertion order is plan order
    const preempted: string[] = [];
    let budget = this.config.maxTokensPerStep;

    /** Preempts the newest running sequence; false when that was `seq` itself. */
    const preemptNewestFor = (seq: Sequence): boolean => {
      const victim = this.running[this.running.length - 1]!;
      budget += chunks.get(victim) ?? 0;
      chunks.delete(victim);
      this.preempt(victim);
      preempted.push(victim.id);
      return victim !== seq;
    };

    // 1. decodes, oldest first
    for (const seq of [...this.running]) {
      if (seq.state !== "running") continue; // preempted for an older one just now
      const kv = seq.kv!;
      if (seq.tokens.length - kv.computed !== 1) continue;
      let fits = true;
      while (fits && !this.kv.allocate(kv, kv.computed + 1)) fits = preemptNewestFor(seq);
      if (!fits) continue;
      chunks.set(seq, 1);
      budget--;
    }
    // 2. prefill chunks of running sequences, oldest first
    for (const seq of [...this.running]) {
      if (budget === 0) break;
      if (seq.state !== "running" || chunks.has(seq)) continue;
      const kv = seq.kv!;
      let room = this.kv.capacity(kv) - kv.computed;
      let fits = true;
      while (fits && room < 1) {
        fits = preemptNewestFor(seq);
        room = this.kv.capacity(kv) - kv.computed;
      }
      if (!fits) continue;
      const chunk = Math.min(seq.tokens.length - kv.computed, budget, room);
      if (!this.kv.allocate(kv, kv.computed + chunk)) throw new Error("internal: a chunk within capacity failed to allocate");
      chunks.set(seq, chunk);
      budget -= chunk;
    }
    // 3. admissions, first come first served; none in a step that had to preempt (the pool is tight: admitting
    //    now would only take the blocks the running sequences need next, or readmit what was just preempted)
    while (preempted.length === 0 && this.waiting.length > 0 && budget > 0 && this.running.length < this.config.maxSeqs) {
      const seq = this.waiting[0]!;
      const kv = this.kv.newSequence();
      const match: PrefixMatch = this.kv.matchPrefix(seq.tokens, seq.chain);
      const room = this.kv.capacity(kv, match) - match.tokens;
      if (room < 1) break; // the head waits for blocks; nobody overtakes it
      this.waiting.shift();
      this.kv.admit(kv, match);
      const chunk = Math.min(seq.tokens.length - match.tokens, budget, room);
      if (!this.kv.allocate(kv, match.tokens + chunk)) throw new Error("internal: an admission within capacity failed to allocate");
      seq.kv = kv;
      seq.state = "running";
      this.running.push(seq);
      chunks.set(seq, chunk);
      budget -= chunk;
      if (this.config.prefixCaching) {
        // per admission: a recomputation after preemption looks its tokens up again (and usually hits)
        this.prefixQueryTokens += seq.tokens.length;
        this.prefixHitTokens += match.tokens;
      }
      if (!seq.admittedOnce) {
        seq.admittedOnce = true;
        seq.cachedPromptTokens = match.tokens;
        this.promptTokens += seq.promptTokens;
      }
    }

    const seqs: ScheduledSeq[] = [];
    const planned: Sequence[] = [];
    let numTokens = 0;
    let numSampled = 0;
    for (const [seq, chunk] of chunks) {
      const kv = seq.kv!;
      const start = kv.computed;
      const sample = start + chunk === seq.tokens.length;
      seqs.push({ id: seq.id, start, tokenIds: seq.tokens.slice(start, start + chunk), sample, blockTables: [...kv.tables] });
      planned.push(seq);
      numTokens += chunk;
      if (sample) numSampled++;
    }
    // every running sequence gets a token (budget ≥ maxSeqs ≥ running) and, with none running, the queue's head
    // fits the empty pool (it fits alone): an empty plan would mean the loop can never progress
    if (seqs.length === 0) throw new Error(`internal: step ${this.stepsPlanned} planned nothing with ${this.running.length} running and ${this.waiting.length} waiting`);
    const plan: StepPlan = {
      step: this.stepsPlanned++,
      blockSize: this.config.blockSize,
      groups: this.config.groups.map((g) => g.name),
      seqs,
      numTokens,
      numSampled,
      preempted,
    };
    this.pending.push({ plan, seqs: planned });
    return plan;
  }

  /**
   * Plans the step after the one in flight before that one completes, so the device can start it as soon as it
   * finishes, with no host round trip between them: every sequence of the step in flight decodes the token it is
   * about to sample (StepPlan.feedback). Only where that is what `schedule` would plan anyway, whatever the tokens
   * are: every sequence of the step in flight samples (no prefill continues), and no request waits for admission or
   * recomputation, or they wait for a slot that none of these tokens frees: every slot is taken and no sequence of
   * the step in flight ends with its token whatever it is. (A stop token that ends one frees its slot a step late:
   * the waiting head is admitted in the step after the one planned ahead.) Sequences that end with the token in flight whatever
   * it is (maxTokens, maxContext) are left out, and so are, from the first one whose block does not fit, the
   * newer ones (they decode in the step after, planned as usual). A sequence that a stop token, a stop string or an
   * abort ends meanwhile has its row of this step ignored at `complete`; its blocks are freed as usual, and the
   * device, running steps in order, is done with them before any later step can reuse them.
   * Undefined (nothing planned) when the step in flight does not qualify or no sequence is left.
   */
  scheduleAhead(): StepPlan | undefined {
    if (this.pending.length !== 1) return undefined;
    const before = this.pending[0]!;
    if (before.plan.seqs.some((e) => !e.sample)) return undefined;
    // the sequences that go on whatever their tokens in flight are: index in the step in flight, positions computed
    // once it completes (its token the sequence's last, at `at`)
    const goingOn: { readonly i: number; readonly at: number }[] = [];
    before.plan.seqs.forEach((entry, i) => {
      const seq = before.seqs[i]!;
      const at = entry.start + entry.tokenIds.length;
      if (seq.state === "running" && this.endAt(seq, seq.generated + 1, at + 1) === undefined) goingOn.push({ i, at });
    });
    // requests waiting (1000 sent at once to 512 slots) are admitted as soon as a slot frees: plan ahead only while
    // every slot stays taken
    if (this.waiting.length > 0 && (this.running.length < this.config.maxSeqs || goingOn.length < before.plan.seqs.length)) return undefined;
    const seqs: ScheduledSeq[] = [];
    const planned: Sequence[] = [];
    const feedback: number[] = [];
    for (const { i, at } of goingOn) {
      const seq = before.seqs[i]!;
      if (!this.kv.allocate(seq.kv!, at + 1)) break;
      seqs.push({ id: seq.id, start: at, tokenIds: [FED_BACK_TOKEN], sample: true, blockTables: [...seq.kv!.tables] });
      planned.push(seq);
      feedback.push(i); // every sequence of the step in flight samples: its row is its index
    }
    if (seqs.length === 0) return undefined;
    const plan: StepPlan = {
      step: this.stepsPlanned++,
      blockSize: this.config.blockSize,
      groups: this.config.groups.map((g) => g.name),
      seqs,
      numTokens: seqs.length,
      numSampled: seqs.length,
      preempted: [],
      feedback,
    };
    this.pending.push({ plan, seqs: planned });
    this.stepsAhead++;
    return plan;
  }

  /**
   * Records a step's results: `sampled` holds one token per sampling sequence of `plan`, in plan order (a token
   * for a request that ended while the step ran is ignored). Advances every sequence, ends those that reached a
   * stop token, maxTokens or maxContext (or can no longer fit the pool), frees their blocks, releases dead sliding
   * blocks and caches newly completed blocks.
   */
  complete(plan: StepPlan, sampled: readonly number[]): StepResult {
    const pending = this.pending[0];
    if (pending === undefined || pending.plan !== plan) throw new Error(`step ${plan.step} is not the oldest step in flight`);
    if (sampled.length !== plan.numSampled) throw new Error(`step ${plan.step} samples ${plan.numSampled} tokens, got ${sampled.length}`);
    this.pending.shift();
    this.stepsDone++;
    const tokens: { id: string; token: number }[] = [];
    const finished: FinishedRequest[] = [];
    let row = 0;
    plan.seqs.forEach((entry, i) => {
      const seq = pending.seqs[i]!;
      const token = entry.sample ? sampled[row++]! : undefined;
      if (seq.state !== "running") return; // aborted or finished while the step ran
      this.kv.commit(seq.kv!, entry.start + entry.tokenIds.length, seq.tokens, seq.chain);
      if (token === undefined) return;
      if (!isTokenId(token)) throw new Error(`step ${plan.step}: sampled token ${token} for request "${seq.id}" is not a token id`);
      seq.tokens.push(token);
      this.generatedTokens++;
      tokens.push({ id: seq.id, token });
      const end = this.endOf(seq, token);
      if (end !== undefined) finished.push(this.end(seq, end.reason, end.stoppedBy, end.error));
    });
    return { tokens, finished, preempted: plan.preempted };
  }

  /** Ends a request at once with finishReason "abort" (waiting: it leaves the queue). Undefined if it is not live. */
  abort(id: string): FinishedRequest | undefined {
    return this.finish(id, "abort");
  }

  /** Ends a request for a reason the engine found (a stop string, an abort, an error); frees its blocks at once. */
  finish(id: string, reason: FinishReason, stoppedBy?: number | string, error?: string): FinishedRequest | undefined {
    const seq = this.live.get(id);
    return seq === undefined ? undefined : this.end(seq, reason, stoppedBy, error);
  }

  stats(): SchedulerStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      blocks: this.kv.counts(),
      preemptions: this.preemptions,
      prefixHitTokens: this.prefixHitTokens,
      prefixQueryTokens: this.prefixQueryTokens,
      steps: this.stepsDone,
      stepsAhead: this.stepsAhead,
      promptTokens: this.promptTokens,
      generatedTokens: this.generatedTokens,
      finished: { ...this.finishedCounts },
    };
  }

  /** Throws on the first broken block-accounting invariant (KvManager.audit); for tests and debugging. */
  audit(): void {
    for (const seq of this.running) if (seq.state !== "running" || seq.kv === undefined) throw new Error(`request "${seq.id}" is in the running list as ${seq.state}`);
    for (const seq of this.waiting) if (seq.state !== "waiting" || seq.kv !== undefined) throw new Error(`request "${seq.id}" waits but is ${seq.state} or holds blocks`);
    if (this.running.length + this.waiting.length !== this.live.size) throw new Error(`${this.live.size} live requests but ${this.running.length} running and ${this.waiting.length} waiting`);
    if (this.running.length > this.config.maxSeqs) throw new Error(`${this.running.length} running, more than maxSeqs ${this.config.maxSeqs}`);
    this.kv.audit(
      this.running.map((s) => s.kv!),
      this.pending.length === 0,
    );
  }

  /** Why a sequence that just got `token` ends now, if it does. */
  private endOf(seq: Sequence, token: number): { reason: FinishReason; stoppedBy?: number; error?: string } | undefined {
    if (seq.stop.has(token)) return { reason: "stop", stoppedBy: token };
    return this.endAt(seq, seq.generated, seq.tokens.length);
  }

  /** Why a sequence with `generated` tokens generated and `length` in all ends whatever its last token is, if it does. */
  private endAt(seq: Sequence, generated: number, length: number): { reason: FinishReason; error?: string } | undefined {
    if (generated >= seq.request.maxTokens || length >= this.config.maxContext) return { reason: "length" };
    const short = this.kv.shortfallAlone(length);
    if (short !== undefined) return { reason: "error", error: `request "${seq.id}" needs ${short.need} KV blocks in group "${short.group}" for its ${length} tokens; the pool has ${short.have}` };
    return undefined;
  }

  private preempt(seq: Sequence): void {
    this.kv.free(seq.kv!);
    seq.kv = undefined;
    seq.state = "waiting";
    this.running = this.running.filter((s) => s !== seq);
    this.waiting.unshift(seq);
    this.preemptions++;
  }

  private end(seq: Sequence, reason: FinishReason, stoppedBy?: number | string, error?: string): FinishedRequest {
    if (seq.state === "running") {
      this.kv.free(seq.kv!);
      seq.kv = undefined;
      this.running = this.running.filter((s) => s !== seq);
    } else if (seq.state === "waiting") {
      this.waiting.splice(this.waiting.indexOf(seq), 1);
    }
    seq.state = "ended";
    this.live.delete(seq.id);
    this.finishedCounts[reason]++;
    return {
      id: seq.id,
      reason,
      ...(stoppedBy !== undefined ? { stoppedBy } : {}),
      ...(error !== undefined ? { error } : {}),
      promptTokens: seq.promptTokens,
      completionTokens: seq.generated,
      cachedPromptTokens: seq.cachedPromptTokens,
    };
  }
}
