// The scheduler's policies on small hand-checked cases: one request's life, chunked prefill behind decodes,
// first-come-first-served admission, preemption of the newest sequence and its recomputation from the front of
// the queue, finish reasons (stop, length at maxTokens and maxContext, error when a sequence outgrows the pool),
// aborts waiting, running and in flight, prefix-cache sharing and stats, request validation and misuse.
import { describe, expect, it } from "vitest";
import { EngineOverloadedError, EngineRequestError } from "../../src/engine/api.js";
import { FED_BACK_TOKEN, Scheduler, type SchedulerConfig, type StepPlan, type StepResult } from "../../src/engine/scheduler.js";

const config = (over: Partial<SchedulerConfig> = {}): SchedulerConfig => ({
  blockSize: 4,
  groups: [{ name: "full", numBlocks: 16 }],
  maxSeqs: 4,
  maxTokensPerStep: 64,
  maxContext: 64,
  ...over,
});

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

/** Plans and completes one step; sampled tokens count up from 100 (never a stop token unless asked). */
function makeStepper(s: Scheduler): (token?: (id: string) => number) => { plan: StepPlan; result: StepResult } {
  let next = 100;
  return (token = () => next++) => {
    const plan = s.schedule();
    if (plan === undefined) throw new Error("nothing to schedule");
    s.audit();
    const result = s.complete(plan, plan.seqs.filter((q) => q.sample).map((q) => token(q.id)));
    s.audit();
    return { plan, result };
  };
}

const brief = (plan: StepPlan): [string, number, number, boolean][] => plan.seqs.map((q) => [q.id, q.start, q.tokenIds.length, q.sample]);

describe("Scheduler", () => {
  it("runs a lone request: the prompt in one step, then one token a step until maxTokens; all blocks free after", () => {
    const s = new Scheduler(config());
    s.add({ id: "a", promptIds: range(1, 6), maxTokens: 3 });
    const step = makeStepper(s);
    let r = step();
    expect(r.plan.seqs).toEqual([{ id: "a", start: 0, tokenIds: range(1, 6), sample: true, blockTables: [[0, 1]] }]);
    expect(r.result.tokens).toEqual([{ id: "a", token: 100 }]);
    r = step();
    expect(brief(r.plan)).toEqual([["a", 6, 1, true]]);
    expect(r.plan.seqs[0]!.tokenIds).toEqual([100]);
    r = step();
    expect(r.plan.seqs[0]!.tokenIds).toEqual([101]);
    expect(r.result.finished).toEqual([{ id: "a", reason: "length", promptTokens: 6, completionTokens: 3, cachedPromptTokens: 0 }]);
    expect(s.schedule()).toBeUndefined();
    const stats = s.stats();
    // 8 of its 9 tokens were computed (the last sampled one never is): two full blocks stay cached
    expect(stats.blocks["full"]).toEqual({ used: 0, free: 16, total: 16, cached: 2 });
    expect({ steps: stats.steps, promptTokens: stats.promptTokens, generatedTokens: stats.generatedTokens, length: stats.finished.length }).toEqual({ steps: 3, promptTokens: 6, generatedTokens: 3, length: 1 });
    expect(s.has("a")).toBe(false);
  });

  it("splits a long prompt into chunks within the token budget, after the running decodes", () => {
    const s = new Scheduler(config({ maxTokensPerStep: 8, maxSeqs: 2 }));
    const step = makeStepper(s);
    s.add({ id: "a", promptIds: range(1, 3), maxTokens: 10 });
    expect(brief(step().plan)).toEqual([["a", 0, 3, true]]);
    s.add({ id: "b", promptIds: range(50, 20), maxTokens: 10 });
    expect(brief(step().plan)).toEqual([["a", 3, 1, true], ["b", 0, 7, false]]);
    expect(brief(step().plan)).toEqual([["a", 4, 1, true], ["b", 7, 7, false]]);
    const last = step().plan;
    expect(brief(last)).toEqual([["a", 5, 1, true], ["b", 14, 6, true]]);
    expect(last.seqs[1]!.tokenIds).toEqual(range(64, 6));
    expect(brief(step().plan)).toEqual([["a", 6, 1, true], ["b", 20, 1, true]]);
  });

  it("admits first come first served, in as big a first chunk as the free blocks hold, and lets nobody overtake", () => {
    const s = new Scheduler(config({ groups: [{ name: "full", numBlocks: 8 }], maxContext: 32 }));
    const step = makeStepper(s);
    s.add({ id: "a", promptIds: range(1, 20), maxTokens: 4 }); // 5 blocks
    s.add({ id: "b", promptIds: range(30, 16), maxTokens: 4 }); // 3 blocks are left: 12 of its tokens
    s.add({ id: "c", promptIds: [9], maxTokens: 1 });
    const first = step().plan;
    expect(brief(first)).toEqual([["a", 0, 20, true], ["b", 0, 12, false]]);
    expect(s.stats().waiting).toBe(1); // c waits behind b although one token would fit a step
  });

  it("preempts the newest running sequence when a decode needs a block, and recomputes it first from its prompt and output", () => {
    const s = new Scheduler(config({ blockSize: 2, groups: [{ name: "full", numBlocks: 6 }], maxContext: 40 }));
    const step = makeStepper(s);
    for (const id of ["x", "y", "z"]) s.add({ id, promptIds: [1, 2], maxTokens: 6 });
    expect(brief(step().plan)).toEqual([["x", 0, 2, true], ["y", 0, 2, true], ["z", 0, 2, true]]);
    step(); // positions 2: a second block each, the pool is full
    step(); // positions 3: same blocks
    s.add({ id: "w", promptIds: [3, 4, 5], maxTokens: 2 });
    const { plan, result } = step(); // positions 4: x needs a block
    expect(plan.preempted).toEqual(["z"]);
    expect(result.preempted).toEqual(["z"]);
    expect(brief(plan)).toEqual([["x", 4, 1, true], ["y", 4, 1, true]]); // and no admission in a step that preempted
    expect(s.stats()).toMatchObject({ running: 2, waiting: 2, preemptions: 1 });
    // z's tokens so far: its prompt and three outputs; it is recomputed before w is admitted
    const zTokens = [1, 2, ...[0, 1, 2].map((k) => 102 + 3 * k)];
    let zPlan: StepPlan | undefined;
    for (let i = 0; i < 20 && zPlan === undefined; i++) {
      const p = step().plan;
      expect(p.seqs.some((q) => q.id === "w")).toBe(false);
      if (p.seqs.some((q) => q.id === "z")) zPlan = p;
    }
    const z = zPlan!.seqs.find((q) => q.id === "z")!;
    expect(z.start % 2).toBe(0);
    expect([...zTokens.slice(0, z.start), ...z.tokenIds]).toEqual(zTokens);
    expect(z.sample).toBe(true);
    for (let i = 0; i < 40 && s.stats().running + s.stats().waiting > 0; i++) step();
    expect(s.stats()).toMatchObject({ running: 0, waiting: 0, finished: { length: 4 } });
    expect(s.stats().blocks["full"]!.used).toBe(0);
  });

  it("preempts the newest sequence even when a middle one needs the block, and the newest may be the one in need", () => {
    const s = new Scheduler(config({ blockSize: 2, groups: [{ name: "full", numBlocks: 5 }], maxContext: 40 }));
    const step = makeStepper(s);
    s.add({ id: "x", promptIds: [1, 2, 3], maxTokens: 9 }); // 2 blocks, position 3 fits its second
    s.add({ id: "y", promptIds: [1, 2], maxTokens: 9 });
    s.add({ id: "z", promptIds: [4, 5], maxTokens: 9 });
    step();
    const { plan } = step(); // y takes the last block; z needs one too and is the newest: it goes itself
    expect(plan.preempted).toEqual(["z"]);
    expect(brief(plan)).toEqual([["x", 3, 1, true], ["y", 2, 1, true]]);
  });

  it("admits nothing in a step that preempted, not even the blocks the preempted sequence just freed", () => {
    const s = new Scheduler(config({ blockSize: 2, groups: [{ name: "full", numBlocks: 5 }], maxContext: 40, prefixCaching: false }));
    const step = makeStepper(s);
    s.add({ id: "x", promptIds: [1, 2, 3, 4], maxTokens: 9 });
    s.add({ id: "z", promptIds: [5, 6, 7, 8, 9], maxTokens: 9 });
    step(); // 2 + 3 blocks: the pool is full
    const { plan } = step(); // x's position 4 needs a block: z goes, 3 blocks free, x takes 1
    expect(plan.preempted).toEqual(["z"]);
    expect(brief(plan)).toEqual([["x", 4, 1, true]]);
    expect(s.stats().blocks["full"]).toMatchObject({ used: 3, free: 2 });
    expect(brief(step().plan)).toEqual([["x", 5, 1, true], ["z", 0, 4, false]]); // then z comes back, 2 blocks' worth
  });

  it("ends a sequence that outgrows the pool alone with an error, keeping the tokens it had", () => {
    const s = new Scheduler(config({ blockSize: 2, groups: [{ name: "full", numBlocks: 3 }], maxContext: 40 }));
    const step = makeStepper(s);
    s.add({ id: "a", promptIds: [1, 2], maxTokens: 100 });
    const finished = [];
    for (let i = 0; i < 10 && s.has("a"); i++) finished.push(...step().result.finished);
    expect(finished).toEqual([
      { id: "a", reason: "error", error: 'request "a" needs 4 KV blocks in group "full" for its 7 tokens; the pool has 3', promptTokens: 2, completionTokens: 5, cachedPromptTokens: 0 },
    ]);
    expect(s.stats().finished.error).toBe(1);
  });

  it("finishes on a stop token (reported and counted) and at maxContext", () => {
    const s = new Scheduler(config({ maxContext: 8 }));
    const step = makeStepper(s);
    s.add({ id: "stops", promptIds: [1], maxTokens: 50, stopTokenIds: [101, 999] });
    s.add({ id: "long", promptIds: range(1, 5), maxTokens: 50 });
    const ends = [];
    for (let i = 0; i < 10 && s.stats().running + s.stats().waiting > 0; i++) ends.push(...step((id) => (id === "stops" ? 100 + i : 7)).result.finished);
    expect(ends).toEqual([
      { id: "stops", reason: "stop", stoppedBy: 101, promptTokens: 1, completionTokens: 2, cachedPromptTokens: 0 },
      { id: "long", reason: "length", promptTokens: 5, completionTokens: 3, cachedPromptTokens: 0 },
    ]);
  });

  it("aborts: a waiting request leaves the queue, a running one frees its blocks at once, one in flight has its token dropped", () => {
    const s = new Scheduler(config({ maxSeqs: 2 }));
    const step = makeStepper(s);
    s.add({ id: "a", promptIds: range(1, 9), maxTokens: 10 });
    s.add({ id: "b", promptIds: range(1, 5), maxTokens: 10 });
    s.add({ id: "c", promptIds: [1], maxTokens: 10 });
    step();
    expect(s.abort("c")).toEqual({ id: "c", reason: "abort", promptTokens: 1, completionTokens: 0, cachedPromptTokens: 0 });
    expect(s.stats().waiting).toBe(0);
    expect(s.stats().blocks["full"]!.used).toBe(5);
    expect(s.abort("b")?.completionTokens).toBe(1);
    expect(s.stats().blocks["full"]!.used).toBe(3);
    const plan = s.schedule()!;
    expect(s.abort("a")?.reason).toBe("abort");
    expect(s.stats().blocks["full"]!.used).toBe(0);
    expect(s.complete(plan, [123])).toEqual({ tokens: [], finished: [], preempted: [] });
    expect(s.abort("a")).toBeUndefined();
    expect(s.schedule()).toBeUndefined();
    s.add({ id: "d", promptIds: [1, 2], maxTokens: 5 });
    step();
    expect(s.finish("d", "stop", "</s>")).toMatchObject({ id: "d", reason: "stop", stoppedBy: "</s>", completionTokens: 1 });
    expect(s.stats().finished).toEqual({ stop: 1, length: 0, abort: 3, error: 0 });
  });

  it("shares a cached prompt prefix: the second request computes only the rest, and the stats count the hit", () => {
    const s = new Scheduler(config());
    const step = makeStepper(s);
    s.add({ id: "a", promptIds: range(1, 10), maxTokens: 5 });
    step();
    s.add({ id: "b", promptIds: [...range(1, 8), 77, 78, 79], maxTokens: 1 });
    const { plan, result } = step();
    expect(brief(plan)).toEqual([["a", 10, 1, true], ["b", 8, 3, true]]);
    expect(plan.seqs[1]!.blockTables[0]!.slice(0, 2)).toEqual(plan.seqs[0]!.blockTables[0]!.slice(0, 2));
    expect(s.kv.pools[0]!.refCount(plan.seqs[0]!.blockTables[0]![0]!)).toBe(1); // b finished in this step
    expect(result.finished).toEqual([{ id: "b", reason: "length", promptTokens: 11, completionTokens: 1, cachedPromptTokens: 8 }]);
    expect(s.stats()).toMatchObject({ prefixHitTokens: 8, prefixQueryTokens: 21 });
  });

  it("runs a 64k-token sequence: full blocks grow with it, sliding blocks stay flat between steps", () => {
    const B = 16;
    // the sliding pool holds one window (9 blocks) plus a whole prefill chunk's blocks, all written in the step
    const s = new Scheduler({ blockSize: B, groups: [{ name: "full", numBlocks: 4100 }, { name: "sliding", numBlocks: 9 + 8192 / B + 1, window: 128 }], maxSeqs: 4, maxTokensPerStep: 8192, maxContext: 65536 });
    const step = makeStepper(s);
    s.add({ id: "long", promptIds: range(0, 65_000), maxTokens: 5 });
    const chunks: number[] = [];
    let finished = false;
    for (let i = 0; i < 20 && !finished; i++) {
      const { plan, result } = step();
      chunks.push(plan.seqs[0]!.tokenIds.length);
      finished = result.finished.length > 0;
      if (!finished) {
        const counts = s.stats().blocks;
        expect(counts["sliding"]!.used).toBeLessThanOrEqual(9);
        expect(counts["full"]!.used).toBe(Math.ceil(chunks.reduce((a, b) => a + b, 0) / B)); // every computed position
      }
    }
    expect(chunks).toEqual([...new Array<number>(7).fill(8192), 65_000 - 7 * 8192, 1, 1, 1, 1]);
    expect(finished).toBe(true);
  });

  it("never runs more than maxSeqs sequences", () => {
    const s = new Scheduler(config({ maxSeqs: 2, maxTokensPerStep: 2 }));
    const step = makeStepper(s);
    for (let i = 0; i < 5; i++) s.add({ id: `r${i}`, promptIds: [i + 1], maxTokens: 3 });
    for (let i = 0; i < 30 && s.stats().running + s.stats().waiting > 0; i++) {
      const { plan } = step();
      expect(plan.seqs.length).toBeLessThanOrEqual(2);
      expect(s.stats().running).toBeLessThanOrEqual(2);
    }
    expect(s.stats().finished.length).toBe(5);
  });

  it("refuses bad requests with the field named, and a full queue with EngineOverloadedError", () => {
    const s = new Scheduler(config({ maxContext: 20, groups: [{ name: "full", numBlocks: 4 }], maxWaiting: 1 }));
    const refuse = (request: Parameters<Scheduler["add"]>[0], field: string, message: RegExp): void => {
      let err: unknown;
      try {
        s.add(request);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EngineRequestError);
      expect((err as EngineRequestError).field).toBe(field);
      expect((err as EngineRequestError).message).toMatch(message);
    };
    refuse({ id: "", promptIds: [1], maxTokens: 1 }, "id", /non-empty id/);
    refuse({ id: "e", promptIds: [], maxTokens: 1 }, "promptIds", /the prompt is empty/);
    refuse({ id: "e", promptIds: [1, -2], maxTokens: 1 }, "promptIds", /prompt token 1 is -2, not a token id/);
    refuse({ id: "e", promptIds: [1, 2.5], maxTokens: 1 }, "promptIds", /prompt token 1 is 2.5/);
    refuse({ id: "e", promptIds: [1], maxTokens: 0 }, "maxTokens", /positive whole number, got 0/);
    refuse({ id: "e", promptIds: [1], maxTokens: 1, stopTokenIds: [Number.NaN] }, "stopTokenIds", /stop token NaN/);
    refuse({ id: "e", promptIds: range(0, 20), maxTokens: 1 }, "promptIds", /the prompt has 20 tokens; at most 19 fit \(maxContext 20, less one to generate\)/);
    refuse({ id: "e", promptIds: range(0, 17), maxTokens: 1 }, "promptIds", /the prompt's 17 tokens need 5 KV blocks in group "full", whose pool has 4/);
    s.add({ id: "ok", promptIds: range(0, 16), maxTokens: 100 }); // exactly the pool: accepted
    refuse({ id: "ok", promptIds: [1], maxTokens: 1 }, "id", /"ok" is already running or waiting/);
    expect(() => s.add({ id: "more", promptIds: [1], maxTokens: 1 })).toThrow(EngineOverloadedError);
    expect(s.stats().waiting).toBe(1);
  });

  it("refuses misuse: planning twice, completing another plan, a wrong count or a bad token", () => {
    const s = new Scheduler(config());
    s.add({ id: "a", promptIds: [1, 2], maxTokens: 3 });
    const plan = s.schedule()!;
    expect(() => s.schedule()).toThrow(/step 0 is still in flight/);
    expect(() => s.complete({ ...plan }, [1])).toThrow(/step 0 is not the oldest step in flight/);
    expect(() => s.complete(plan, [])).toThrow(/samples 1 tokens, got 0/);
    expect(() => s.complete(plan, [1.5])).toThrow(/sampled token 1.5 for request "a" is not a token id/);
  });

  it("plans a decode step ahead while one is in flight: its tokens fed back, completed in order, only when nothing waits", () => {
    const s = new Scheduler(config());
    s.add({ id: "a", promptIds: range(1, 6), maxTokens: 10, stopTokenIds: [7] });
    s.add({ id: "b", promptIds: range(20, 3), maxTokens: 2 });
    s.add({ id: "c", promptIds: range(40, 3), maxTokens: 10 });
    const first = s.schedule()!;
    // after the token in flight every request still has tokens to go (b: 1 of its 2): all three decode ahead
    const ahead = s.scheduleAhead()!;
    expect(ahead.seqs.map((q) => [q.id, q.start, q.tokenIds, q.sample])).toEqual([["a", 6, [FED_BACK_TOKEN], true], ["b", 3, [FED_BACK_TOKEN], true], ["c", 3, [FED_BACK_TOKEN], true]]);
    expect(ahead.feedback).toEqual([0, 1, 2]);
    expect(ahead.step).toBe(first.step + 1);
    s.audit();
    expect(s.scheduleAhead()).toBeUndefined(); // two in flight already
    expect(() => s.schedule()).toThrow(/step 0 is still in flight/);
    expect(() => s.complete(ahead, [1, 2, 3])).toThrow(/step 1 is not the oldest step in flight/);
    // a ends with a stop token in the first step, c is aborted meanwhile: their rows of the step ahead are ignored
    s.complete(first, [7, 50, 60]);
    expect(s.abort("c")?.reason).toBe("abort");
    s.audit();
    // b's next token is its last (maxTokens 2): the step after the one ahead leaves it out
    const after = s.scheduleAhead();
    expect(after).toBeUndefined(); // b is the only one left and it ends with the token in flight
    const done = s.complete(ahead, [8, 51, 61]);
    expect(done.tokens).toEqual([{ id: "b", token: 51 }]);
    expect(done.finished.map((f) => [f.id, f.reason])).toEqual([["b", "length"]]);
    s.audit();
    expect(s.schedule()).toBeUndefined();
    expect(s.stats().blocks["full"]!.used).toBe(0);
  });

  it("plans ahead with requests waiting only while every slot stays taken; nothing while a prefill continues", () => {
    // every slot taken, and a's token in flight is not its last: a decodes ahead, b still waits
    const waiting = new Scheduler(config({ maxSeqs: 1 }));
    waiting.add({ id: "a", promptIds: [1, 2], maxTokens: 2 });
    waiting.add({ id: "b", promptIds: [3], maxTokens: 5 });
    const first = waiting.schedule()!;
    const ahead = waiting.scheduleAhead()!;
    expect(ahead.seqs.map((q) => [q.id, q.start, q.tokenIds])).toEqual([["a", 2, [FED_BACK_TOKEN]]]);
    expect(waiting.stats().waiting).toBe(1);
    waiting.complete(first, [9]);
    // a's token in flight is its last (maxTokens 2): its slot frees, so nothing is planned ahead and b is admitted next
    expect(waiting.scheduleAhead()).toBeUndefined();
    expect(waiting.complete(ahead, [10]).finished.map((f) => f.id)).toEqual(["a"]);
    expect(waiting.schedule()!.seqs.map((q) => q.id)).toEqual(["b"]);
    waiting.audit();
    // a free slot: the waiting request is admitted by the next step, not planned around
    const free = new Scheduler(config({ maxSeqs: 2, groups: [{ name: "full", numBlocks: 1 }] }));
    free.add({ id: "a", promptIds: [1, 2], maxTokens: 2 });
    free.add({ id: "b", promptIds: range(10, 3), maxTokens: 1 });
    expect(free.schedule()!.seqs.map((q) => q.id)).toEqual(["a"]); // b waits for blocks
    expect(free.scheduleAhead()).toBeUndefined();
    const chunked = new Scheduler(config({ maxTokensPerStep: 4 }));
    chunked.add({ id: "a", promptIds: range(1, 10), maxTokens: 5 });
    expect(chunked.schedule()!.seqs[0]!.sample).toBe(false);
    expect(chunked.scheduleAhead()).toBeUndefined();
  });

  it("refuses a configuration that cannot decode every running sequence each step", () => {
    expect(() => new Scheduler(config({ maxSeqs: 8, maxTokensPerStep: 4 }))).toThrow(/maxTokensPerStep \(4\) must be at least maxSeqs \(8\)/);
    expect(() => new Scheduler(config({ maxContext: 1 }))).toThrow(/maxContext 1 leaves no room/);
    expect(() => new Scheduler(config({ groups: [{ name: "full", numBlocks: 0 }] }))).toThrow(/positive whole number of blocks/);
  });
});
