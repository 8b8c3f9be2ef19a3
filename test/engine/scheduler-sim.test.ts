// Seeded random workloads through the scheduler and the fake paged model (sim.ts): random arrivals, prompt and
// output lengths, shared prefixes, stop tokens, aborts (between steps and while a step is in flight), pools small
// enough that preemption is frequent and some requests outgrow them. Every request's tokens must equal the
// pool-free reference and the same request run alone with an ample pool; every step is audited; everything is
// free at the end; and each configuration must actually exercise what it is there for.
import { describe, expect, it } from "vitest";
import type { SchedulerConfig } from "../../src/engine/scheduler.js";
import { seededRandom } from "../../src/ir/host-tensor.js";
import { expectMatchesReference, runWorkload, type SimRequest, type WorkloadResult } from "./sim.js";

const VOCAB = 48;
const STOP = 5;

function randomRequests(seed: number, n: number, maxPrompt: number, maxOutput: number, abortRate: number): SimRequest[] {
  const rand = seededRandom(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const sharedPrefixes = Array.from({ length: 3 }, () => Array.from({ length: int(4, Math.min(60, maxPrompt - 1)) }, () => int(0, VOCAB - 1)));
  return Array.from({ length: n }, (_, i) => {
    const shared = rand() < 0.6 ? sharedPrefixes[int(0, 2)]! : [];
    const own = Array.from({ length: int(1, Math.max(1, maxPrompt - shared.length)) }, () => int(0, VOCAB - 1));
    const arrival = rand() < 0.3 ? 0 : int(0, 80);
    const aborted = rand() < abortRate;
    const maxTokens = int(1, maxOutput);
    return {
      id: `r${i}`,
      promptIds: [...shared, ...own],
      maxTokens,
      ...(rand() < 0.5 ? { stopTokenIds: [STOP] } : {}),
      arrival,
      ...(aborted ? { ...(rand() < 0.3 ? { abortAt: arrival + int(0, 30) } : { abortAfterTokens: int(0, maxTokens - 1) }), abortInFlight: rand() < 0.5 } : {}),
    };
  });
}

/** The same request alone, with pools large enough for anything. */
function aloneWithAmplePool(config: SchedulerConfig, r: SimRequest): WorkloadResult {
  const blocks = Math.ceil(config.maxContext / config.blockSize) + 2;
  const ample: SchedulerConfig = { ...config, groups: config.groups.map((g) => ({ ...g, numBlocks: Math.max(g.numBlocks, blocks) })) };
  const { abortAt: _a, abortAfterTokens: _t, abortInFlight: _b, ...plain } = r;
  return runWorkload(ample, [{ ...plain, arrival: 0 }], VOCAB, 1000);
}

interface Case {
  readonly name: string;
  readonly config: SchedulerConfig;
  readonly requests: number;
  readonly maxPrompt: number;
  readonly maxOutput: number;
  /** What a run of this case must have exercised, summed over its seeds. */
  readonly expects: readonly ("preemption" | "prefixHits" | "errors" | "rejections" | "aborts" | "runningAborts" | "inFlightAborts")[];
}

const cases: readonly Case[] = [
  {
    name: "B 4, full + sliding window 10 (not a multiple of B), tight pools",
    config: { blockSize: 4, groups: [{ name: "full", numBlocks: 40 }, { name: "sliding", numBlocks: 12, window: 10 }], maxSeqs: 6, maxTokensPerStep: 24, maxContext: 160 },
    requests: 40,
    maxPrompt: 90,
    maxOutput: 40,
    expects: ["preemption", "prefixHits", "aborts", "runningAborts", "inFlightAborts"],
  },
  {
    name: "B 16, full + sliding window 32, pool of a few sequences",
    config: { blockSize: 16, groups: [{ name: "full", numBlocks: 14 }, { name: "sliding", numBlocks: 9, window: 32 }], maxSeqs: 8, maxTokensPerStep: 64, maxContext: 160 },
    requests: 40,
    maxPrompt: 100,
    maxOutput: 50,
    expects: ["preemption", "prefixHits", "aborts", "runningAborts", "inFlightAborts"],
  },
  {
    name: "B 8, window 128 longer than any sequence, prefix caching off",
    config: { blockSize: 8, groups: [{ name: "full", numBlocks: 30 }, { name: "sliding", numBlocks: 30, window: 128 }], maxSeqs: 5, maxTokensPerStep: 20, maxContext: 120, prefixCaching: false },
    requests: 30,
    maxPrompt: 70,
    maxOutput: 40,
    expects: ["preemption", "aborts", "runningAborts", "inFlightAborts"],
  },
  {
    name: "full group only, one sequence a step, budget 1 token over the slots",
    config: { blockSize: 4, groups: [{ name: "full", numBlocks: 40 }], maxSeqs: 1, maxTokensPerStep: 2, maxContext: 100 },
    requests: 12,
    maxPrompt: 30,
    maxOutput: 20,
    expects: ["prefixHits"],
  },
  {
    name: "a full pool smaller than the context: some prompts refused, some requests outgrow the pool",
    config: { blockSize: 4, groups: [{ name: "full", numBlocks: 12 }, { name: "sliding", numBlocks: 4, window: 8 }], maxSeqs: 4, maxTokensPerStep: 16, maxContext: 160 },
    requests: 30,
    maxPrompt: 60,
    maxOutput: 40,
    expects: ["preemption", "errors", "rejections"],
  },
  {
    name: "three groups: full, window 6 and window 20, B 4",
    config: { blockSize: 4, groups: [{ name: "full", numBlocks: 36 }, { name: "local", numBlocks: 8, window: 6 }, { name: "sliding", numBlocks: 10, window: 20 }], maxSeqs: 6, maxTokensPerStep: 30, maxContext: 120 },
    requests: 30,
    maxPrompt: 70,
    maxOutput: 30,
    expects: ["preemption", "prefixHits", "aborts", "runningAborts", "inFlightAborts"],
  },
  {
    name: "a sliding group only (window 12, B 4): sequences longer than the pool",
    config: { blockSize: 4, groups: [{ name: "sliding", numBlocks: 10, window: 12 }], maxSeqs: 4, maxTokensPerStep: 12, maxContext: 200 },
    requests: 20,
    maxPrompt: 80,
    maxOutput: 80,
    expects: ["preemption", "prefixHits"],
  },
];

const SEEDS = [1, 2, 3];

describe("scheduler against the fake paged model, random workloads", () => {
  for (const c of cases) {
    it(c.name, () => {
      let preemptions = 0;
      let prefixHits = 0;
      let errors = 0;
      let rejections = 0;
      let aborts = 0;
      let runningAborts = 0;
      let inFlightAborts = 0;
      for (const seed of SEEDS) {
        const requests = randomRequests(seed * 101 + c.requests, c.requests, c.maxPrompt, c.maxOutput, c.expects.includes("aborts") ? 0.25 : 0);
        const result = runWorkload(c.config, requests, VOCAB, 20_000);
        expectMatchesReference(c.config, requests, result, VOCAB);
        // the same workload with each next step planned while the last is in flight, its token ids fed back
        const ahead = runWorkload(c.config, requests, VOCAB, 20_000, { ahead: true });
        expectMatchesReference(c.config, requests, ahead, VOCAB);
        expect(new Map([...ahead.outcomes].filter(([, o]) => o.reason !== "abort")), "planning ahead changed an outcome").toEqual(new Map([...result.outcomes].filter(([, o]) => o.reason !== "abort")));
        // a refusal is exactly a prompt that cannot fit the context or the pool alone
        const fullBlocks = Math.min(...c.config.groups.filter((g) => g.window === undefined).map((g) => g.numBlocks));
        for (const r of requests) {
          const refuse = r.promptIds.length > c.config.maxContext - 1 || Math.ceil(r.promptIds.length / c.config.blockSize) > fullBlocks;
          expect(result.rejected.has(r.id), `request ${r.id} (${r.promptIds.length} prompt tokens) refused?`).toBe(refuse);
        }
        // the same request alone with an ample pool gives the same tokens (when it was not aborted or cut short)
        for (const r of requests) {
          const got = result.outcomes.get(r.id);
          if (got === undefined || got.reason === "abort" || got.reason === "error") continue;
          expect(aloneWithAmplePool(c.config, r).outcomes.get(r.id)!.tokens, `request ${r.id} alone`).toEqual(got.tokens);
        }
        const s = result.stats;
        expect(s.finished.stop + s.finished.length + s.finished.abort + s.finished.error).toBe(result.outcomes.size);
        expect(s.generatedTokens).toBe([...result.outcomes.values()].reduce((n, o) => n + o.tokens.length, 0));
        expect(s.prefixHitTokens).toBeLessThanOrEqual(s.prefixQueryTokens);
        if (c.config.prefixCaching === false) expect(s.prefixQueryTokens).toBe(0);
        preemptions += s.preemptions;
        prefixHits += s.prefixHitTokens;
        errors += s.finished.error;
        rejections += result.rejected.size;
        aborts += s.finished.abort;
        runningAborts += result.runningAborts;
        inFlightAborts += result.inFlightAborts;
      }
      const seen = { preemption: preemptions, prefixHits, errors, rejections, aborts, runningAborts, inFlightAborts };
      for (const what of c.expects) expect(seen[what], `${what} never happened in this case`).toBeGreaterThan(0);
      if (!c.expects.includes("errors")) expect(errors).toBe(0);
      if (!c.expects.includes("rejections")) expect(rejections).toBe(0);
    });
  }
});
