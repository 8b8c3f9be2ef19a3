// A deterministic stand-in for the paged decoder, and a driver that runs the scheduler against it while checking
// every step. The fake model reads and writes a simulated KV pool through exactly the step inputs
// (step-inputs.ts) the real one gets, so a wrong block table, pool row, shared block or sliding release changes
// its tokens or fails loudly.
//
// The model: position p of a sequence has a prefix key k(p) = mix(v_0(p − 1), token p, p), like a deep model's
// hidden state (it depends on the whole prefix), where group g stores v_g(p) = mix(k(p), g) at p; v_0(p − 1) is
// read back from group 0's pool (or from the step's own tokens). The next token after position p is a digest, over every
// group, of the values at the positions p sees there (all j ≤ p on a full group, p − window < j ≤ p on a windowed
// one), mod the vocabulary. `referenceRun` computes the same tokens straight from the token list, without a pool.

import { expect } from "vitest";
import { NO_BLOCK } from "../../src/engine/block-pool.js";
import { blockTableInput, kvSlotsInput, STEP_NAMES, type StepInputs, type StepTensor } from "../../src/engine/contract.js";
import type { KvGroupConfig } from "../../src/engine/kv-manager.js";
import { FED_BACK_TOKEN, type FinishedRequest, Scheduler, type SchedulerConfig, type SchedulerRequest, type SchedulerStats, type StepPlan } from "../../src/engine/scheduler.js";
import { stepInputs } from "../../src/engine/step-inputs.js";
import { EngineRequestError } from "../../src/engine/api.js";

const ROOT_KEY = 0x2545f491;

function mix(a: number, b: number): number {
  let h = Math.imul(a ^ Math.imul(b, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

const prefixKey = (prev: number, token: number, position: number): number => mix(mix(prev, token), position);
const groupValue = (key: number, group: number): number => mix(key, group + 1);
const firstVisible = (p: number, window: number | undefined): number => (window === undefined ? 0 : Math.max(0, p - window + 1));

/** The model's next token after position p, from the values it sees per group. */
function nextToken(groups: readonly KvGroupConfig[], p: number, valueAt: (group: number, j: number) => number, vocab: number): number {
  let digest = 0x811c9dc5;
  groups.forEach((g, gi) => {
    for (let j = firstVisible(p, g.window); j <= p; j++) digest = mix(digest, valueAt(gi, j));
  });
  return (digest >>> 0) % vocab;
}

export interface SimRequest extends SchedulerRequest {
  /** Step at which the request is added. */
  readonly arrival: number;
  /** Step at which the request is aborted, if any (waiting or running). */
  readonly abortAt?: number;
  /** Abort once the request has generated this many tokens (mid-stream). */
  readonly abortAfterTokens?: number;
  /** Abort between planning the step and completing it, instead of before planning it. */
  readonly abortInFlight?: boolean;
}

export interface RunOutcome {
  readonly tokens: readonly number[];
  readonly reason: FinishedRequest["reason"];
  readonly error?: string;
}

/** What the scheduler must produce for a request: greedy tokens of the fake model and the finish reason. */
export function referenceRun(config: SchedulerConfig, request: SchedulerRequest, vocab: number): RunOutcome {
  const tokens = [...request.promptIds];
  const keys: number[] = [];
  const stop = new Set(request.stopTokenIds ?? []);
  const fullBlocks = Math.min(...config.groups.filter((g) => g.window === undefined).map((g) => g.numBlocks));
  const generated: number[] = [];
  for (;;) {
    for (let p = keys.length; p < tokens.length; p++) keys.push(prefixKey(p === 0 ? ROOT_KEY : groupValue(keys[p - 1]!, 0), tokens[p]!, p));
    const t = nextToken(config.groups, tokens.length - 1, (g, j) => groupValue(keys[j]!, g), vocab);
    tokens.push(t);
    generated.push(t);
    if (stop.has(t)) return { tokens: generated, reason: "stop" };
    if (generated.length >= request.maxTokens || tokens.length >= config.maxContext) return { tokens: generated, reason: "length" };
    if (Math.ceil(tokens.length / config.blockSize) > fullBlocks) return { tokens: generated, reason: "error", error: "pool" };
  }
}

/** The fake paged model: pool rows hold (position, value) per group. */
export class FakeModel {
  private readonly rowPosition: Int32Array[];
  private readonly rowValue: Int32Array[];

  constructor(
    private readonly config: SchedulerConfig,
    private readonly maxBlocksPerSeq: number,
    private readonly vocab: number,
  ) {
    this.rowPosition = config.groups.map((g) => new Int32Array(g.numBlocks * config.blockSize).fill(-1));
    this.rowValue = config.groups.map((g) => new Int32Array(g.numBlocks * config.blockSize));
  }

  /** Runs one step; returns the token of each logit row, in order. */
  step(inputs: StepInputs): number[] {
    const { groups, blockSize: B } = this.config;
    const MB = this.maxBlocksPerSeq;
    const get = (name: string): StepTensor["data"] => {
      const t = inputs[name];
      if (t === undefined) throw new Error(`the step has no input ${name}`);
      return t.data;
    };
    const ids = get(STEP_NAMES.ids);
    const positions = get(STEP_NAMES.positions);
    const tokenSeqs = get(STEP_NAMES.tokenSeqs);
    const contextLens = get(STEP_NAMES.contextLens);
    const logitRows = get(STEP_NAMES.logitRows);
    const tables = groups.map((g) => get(blockTableInput(g.name)));
    const slots = groups.map((g) => get(kvSlotsInput(g.name)));
    const readPool = (g: number, s: number, j: number): number => {
      const block = tables[g]![s * MB + Math.floor(j / B)]!;
      if (block === NO_BLOCK) throw new Error(`sequence ${s}: position ${j} is not in group ${groups[g]!.name}'s pool (no block)`);
      const row = block * B + (j % B);
      if (this.rowPosition[g]![row] !== j) throw new Error(`sequence ${s}: group ${groups[g]!.name} row ${row} holds position ${this.rowPosition[g]![row]}, not ${j}`);
      return this.rowValue[g]![row]!;
    };
    // the step's own keys, per token; a sequence's tokens are contiguous and in position order
    const stepKeys = new Int32Array(ids.length);
    const firstToken = new Map<number, number>();
    for (let t = 0; t < ids.length; t++) {
      const s = tokenSeqs[t]!;
      const p = positions[t]!;
      if (!firstToken.has(s)) {
        if (t > 0 && tokenSeqs[t - 1]! > s) throw new Error(`token ${t}: sequences are not in step order`);
        firstToken.set(s, t);
      }
      const first = firstToken.get(s)!;
      if (p !== contextLens[s]! + (t - first)) throw new Error(`token ${t}: position ${p}, expected ${contextLens[s]! + (t - first)} (contiguous from context_lens)`);
      const prev = p === 0 ? ROOT_KEY : p - 1 >= contextLens[s]! ? groupValue(stepKeys[t - 1]!, 0) : readPool(0, s, p - 1);
      stepKeys[t] = prefixKey(prev, ids[t]!, p);
    }
    const out: number[] = [];
    for (const t of logitRows) {
      const s = tokenSeqs[t]!;
      const p = positions[t]!;
      const ctx = contextLens[s]!;
      const first = firstToken.get(s)!;
      out.push(nextToken(groups, p, (g, j) => (j >= ctx ? groupValue(stepKeys[first + j - ctx]!, g) : readPool(g, s, j)), this.vocab));
    }
    // every read happens before this step's writes
    for (let t = 0; t < ids.length; t++) {
      groups.forEach((_, g) => {
        const row = slots[g]![t]!;
        if (row === -1) return;
        this.rowPosition[g]![row] = positions[t]!;
        this.rowValue[g]![row] = groupValue(stepKeys[t]!, g);
      });
    }
    return out;
  }
}

export interface WorkloadResult {
  readonly outcomes: ReadonlyMap<string, RunOutcome>;
  /** Requests `add` refused, with the field it named. */
  readonly rejected: ReadonlyMap<string, string>;
  readonly stats: SchedulerStats;
  readonly steps: number;
  /** Aborts of running sequences: between steps, and while the sequence's step was in flight. */
  readonly runningAborts: number;
  readonly inFlightAborts: number;
  readonly peakRunning: number;
  /** Steps planned ahead (scheduleAhead), with their token ids fed back from the step before. */
  readonly aheadSteps: number;
}

/**
 * Runs `requests` through a scheduler and the fake model until every one has ended, checking every step: the
 * scheduler's accounting (audit, in flight and between steps), that each sequence is fed exactly its known
 * tokens from where its computation stands (contiguous, each position once per computation, a recomputation
 * starting at a cached whole-block prefix), that the step writes only private blocks, and that nothing leaks.
 */
export function runWorkload(config: SchedulerConfig, requests: readonly SimRequest[], vocab: number, maxSteps: number, options: { readonly ahead?: boolean } = {}): WorkloadResult {
  const scheduler = new Scheduler(config);
  const maxBlocksPerSeq = Math.ceil(config.maxContext / config.blockSize);
  const layout = { blockSize: config.blockSize, maxBlocksPerSeq, groups: config.groups.map((g) => ({ name: g.name, layers: [], bytesPerBlock: 0 })) };
  const model = new FakeModel(config, maxBlocksPerSeq, vocab);
  const known = new Map<string, number[]>(); // prompt + tokens reported so far
  const generated = new Map<string, number[]>();
  const nextStart = new Map<string, number>(); // where the request's computation continues; absent: (re)admission
  const outcomes = new Map<string, RunOutcome>();
  const rejected = new Map<string, string>();
  const record = (f: FinishedRequest | undefined): void => {
    if (f === undefined) return;
    expect(outcomes.has(f.id), `request ${f.id} finished twice`).toBe(false);
    expect(f.completionTokens).toBe(generated.get(f.id)!.length);
    outcomes.set(f.id, { tokens: generated.get(f.id)!, reason: f.reason, ...(f.error !== undefined ? { error: f.error } : {}) });
    nextStart.delete(f.id);
  };
  const pendingArrivals = [...requests].sort((a, b) => a.arrival - b.arrival);
  let inFlightAborts = 0;
  let runningAborts = 0;
  const running = new Set<string>(); // in the last plan
  let peakRunning = 0;
  let step = 0;
  /** A step planned ahead (options.ahead) while the last one was in flight: it runs next, its ids fed back. */
  let ahead: { readonly plan: StepPlan; readonly inputs: StepInputs; readonly from: readonly number[] } | undefined;
  let aheadSteps = 0;
  /** Checks a plan against what each sequence has been fed; a step planned ahead decodes the token in flight. */
  const checkPlan = (plan: StepPlan, planned: "now" | "ahead"): StepInputs => {
    expect(plan.numTokens).toBeLessThanOrEqual(config.maxTokensPerStep);
    expect(plan.seqs.length).toBeLessThanOrEqual(config.maxSeqs);
    for (const id of plan.preempted) nextStart.delete(id);
    const ids = new Set<string>();
    for (const seq of plan.seqs) {
      expect(ids.has(seq.id), `request ${seq.id} twice in one step`).toBe(false);
      ids.add(seq.id);
      const tokens = known.get(seq.id)!;
      const expected = nextStart.get(seq.id);
      if (planned === "ahead") {
        // one token, the one the step in flight samples: after all of the sequence's known tokens
        expect(seq.start, `request ${seq.id} planned ahead does not continue where it stops`).toBe(expected);
        expect(seq.start).toBe(tokens.length);
        expect(seq.tokenIds).toEqual([FED_BACK_TOKEN]);
        expect(seq.sample).toBe(true);
      } else {
        if (expected === undefined) {
          expect(seq.start % config.blockSize, `request ${seq.id} resumes mid-block`).toBe(0);
          expect(seq.start).toBeLessThan(tokens.length);
        } else {
          expect(seq.start, `request ${seq.id} does not continue where it stopped`).toBe(expected);
        }
        expect(seq.tokenIds.length).toBeGreaterThan(0);
        expect(seq.tokenIds, `request ${seq.id} is fed the wrong tokens`).toEqual(tokens.slice(seq.start, seq.start + seq.tokenIds.length));
        expect(seq.sample).toBe(seq.start + seq.tokenIds.length === tokens.length);
      }
      nextStart.set(seq.id, seq.start + seq.tokenIds.length);
    }
    // chunking policy: a prompt is cut only where the budget or the blocks run out, and nothing is admitted after
    // that, so at most one sequence is mid-prompt: the last of the plan
    expect(plan.seqs.slice(0, -1).every((q) => q.sample), "a sequence other than the last stops mid-prompt").toBe(true);
    peakRunning = Math.max(peakRunning, plan.seqs.length);
    const inputs = stepInputs(plan, layout);
    // the step writes only blocks its sequence holds alone and that are not cached
    config.groups.forEach((g, gi) => {
      const pool = scheduler.kv.pools[gi]!;
      for (const row of inputs[kvSlotsInput(g.name)]!.data) {
        const block = Math.floor(row / config.blockSize);
        expect(pool.refCount(block), `group ${g.name}: a step writes block ${block}, which is shared`).toBe(1);
        expect(pool.hashOf(block), `group ${g.name}: a step writes block ${block}, which is cached`).toBeUndefined();
      }
    });
    return inputs;
  };
  for (; step < maxSteps; step++) {
    while (pendingArrivals.length > 0 && pendingArrivals[0]!.arrival <= step) {
      const r = pendingArrivals.shift()!;
      try {
        scheduler.add(r);
        known.set(r.id, [...r.promptIds]);
        generated.set(r.id, []);
      } catch (e) {
        if (!(e instanceof EngineRequestError)) throw e;
        rejected.set(r.id, e.field);
      }
    }
    const abortsNow = (r: SimRequest): boolean => r.abortAt === step || (r.abortAfterTokens !== undefined && (generated.get(r.id)?.length ?? -1) >= r.abortAfterTokens);
    for (const r of requests) {
      if (!abortsNow(r) || r.abortInFlight) continue;
      const f = scheduler.abort(r.id);
      if (f !== undefined && running.has(r.id)) runningAborts++;
      record(f);
    }
    let plan: StepPlan;
    let inputs: StepInputs;
    if (ahead !== undefined) {
      // planned last step, while that step was in flight: its token ids are the rows that step sampled
      ({ plan, inputs } = ahead);
      const ids = inputs[STEP_NAMES.ids]!.data;
      ahead.from.forEach((token, i) => (ids[i] = token));
      ahead = undefined;
    } else {
      const next = scheduler.schedule();
      if (next === undefined) {
        if (pendingArrivals.length === 0) break;
        continue;
      }
      plan = next;
      scheduler.audit();
      inputs = checkPlan(plan, "now");
    }
    running.clear();
    for (const seq of plan.seqs) running.add(seq.id);
    const planAhead = options.ahead ? scheduler.scheduleAhead() : undefined;
    const aheadInputs = planAhead ? checkPlan(planAhead, "ahead") : undefined;
    if (planAhead) {
      aheadSteps++;
      scheduler.audit();
    }
    for (const r of requests) {
      if (abortsNow(r) && r.abortInFlight && scheduler.has(r.id)) {
        record(scheduler.abort(r.id));
        if (running.has(r.id)) inFlightAborts++;
      }
    }
    const sampled = model.step(inputs);
    const result = scheduler.complete(plan, sampled);
    const sampledById = new Map<string, number>();
    let row = 0;
    for (const seq of plan.seqs) if (seq.sample) sampledById.set(seq.id, sampled[row++]!);
    for (const { id, token } of result.tokens) {
      expect(token).toBe(sampledById.get(id));
      known.get(id)!.push(token);
      generated.get(id)!.push(token);
    }
    for (const f of result.finished) record(f);
    if (planAhead) ahead = { plan: planAhead, inputs: aheadInputs!, from: planAhead.feedback!.map((r) => sampled[r]!) };
    scheduler.audit();
  }
  expect(step, "the workload did not finish within the step bound").toBeLessThan(maxSteps);
  const stats = scheduler.stats();
  expect(stats.running + stats.waiting).toBe(0);
  for (const [name, counts] of Object.entries(stats.blocks)) {
    expect(counts.used, `group ${name} still has blocks in use`).toBe(0);
    expect(counts.free).toBe(counts.total);
  }
  for (const r of requests) expect(outcomes.has(r.id) || rejected.has(r.id), `request ${r.id} was lost`).toBe(true);
  if (options.ahead) expect(aheadSteps, "no step was planned ahead").toBeGreaterThan(0);
  return { outcomes, rejected, stats, steps: step, runningAborts, inFlightAborts, peakRunning, aheadSteps };
}

/** Checks a run against the pool-free reference: equal tokens and reason, or a prefix of them when aborted. */
export function expectMatchesReference(config: SchedulerConfig, requests: readonly SimRequest[], result: WorkloadResult, vocab: number): void {
  for (const r of requests) {
    const got = result.outcomes.get(r.id);
    if (got === undefined) continue; // rejected: checked by the caller
    const ref = referenceRun(config, r, vocab);
    if (got.reason === "abort") {
      expect(ref.tokens.slice(0, got.tokens.length), `request ${r.id} (aborted)`).toEqual(got.tokens);
      expect(got.tokens.length).toBeLessThanOrEqual(ref.tokens.length);
    } else {
      expect(got.tokens, `request ${r.id}`).toEqual(ref.tokens);
      expect(got.reason, `request ${r.id}`).toBe(ref.reason);
    }
  }
}
