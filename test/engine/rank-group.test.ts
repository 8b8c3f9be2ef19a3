// The process group of a sharded model with fake CPU ranks (one child process per rank, the interpreter inside,
// collectives combined by the parent): the protocol GPU ranks use, without GPUs. The ranks as processes give the
// tokens and logits of the ranks in one process and of the unsharded model; a rank that dies, stops answering, or
// fails ends the group with an error naming the rank and what it was doing, and the engine's requests end with it.
// Needs the built worker (dist/src/engine/rank-worker.js: `npm run build`, which `npm test` runs first).
import { describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { poolSlotsSymbol } from "../../src/engine/contract.js";
import { openEngine } from "../../src/engine/open.js";
import { RankGroup, type RankWorkerSpec } from "../../src/engine/rank-group.js";
import { resolveStrategy } from "../../src/passes/shard.js";
import { drain, freshStepInputs } from "./reference.js";
import { gptOssLayout } from "../../models/gpt-oss/model.js";

const BOUNDS = { dtype: "f32" as const, maxContext: 48, maxSeqs: 4, maxStepTokens: 16 };
const OPTIONS = { dtype: "f32" as const, maxContext: 48, maxSeqsPerStep: 4, maxTokensPerStep: 16, blockSize: 16 };
const layout = gptOssLayout(GPT_OSS_TINY, OPTIONS);
const LOAD = Object.fromEntries(layout.groups.map((g) => [poolSlotsSymbol(g.name), 8 * layout.blockSize]));
const spec = (tp: number, extra: Partial<Extract<RankWorkerSpec, { kind: "interpreter" }>> = {}): RankWorkerSpec => ({
  kind: "interpreter",
  build: { config: GPT_OSS_TINY, options: OPTIONS, name: "gpt-oss-tiny" },
  strategy: resolveStrategy({ ranks: tp }),
  loadSymbols: LOAD,
  seed: 2,
  ...extra,
});

const REQUESTS = [
  { promptIds: [3, 1, 4, 1, 5, 9, 2, 6], maxTokens: 5, logits: true },
  { promptIds: [27, 18], maxTokens: 5, temperature: 0.7, topK: 8, seed: 4, logits: true },
];

describe("rank processes (fake CPU ranks)", () => {
  it("2 ranks as processes give the tokens and logits of the ranks in one process, and of the unsharded model", async () => {
    const run = async (o: { tp?: number; rankProcesses?: boolean }) => {
      const opened = await openEngine({ device: "cpu", model: "gpt-oss-tiny", seed: 2, ...BOUNDS, ...o });
      try {
        if (o.rankProcesses) expect(opened.rankGroup!.pids).toHaveLength(2);
        return await Promise.all(REQUESTS.map((r) => drain(opened.engine.generate(r))));
      } finally {
        await opened.engine.close();
      }
    };
    const whole = await run({});
    const inProcess = await run({ tp: 2 });
    const processes = await run({ tp: 2, rankProcesses: true });
    processes.forEach((p, i) => {
      expect(p.tokens).toEqual(whole[i]!.tokens);
      expect(p.tokens).toEqual(inProcess[i]!.tokens);
      // the same computation and collectives, whether the ranks are processes or not: bit-identical
      p.logits.forEach((l, t) => expect(Array.from(l)).toEqual(Array.from(inProcess[i]!.logits[t]!)));
    });
  });

  it("a rank killed mid-generation ends the group: the requests end with an error naming the rank, new ones are refused", async () => {
    const opened = await openEngine({ device: "cpu", model: "gpt-oss-tiny", seed: 2, ...BOUNDS, tp: 2, rankProcesses: true });
    const [pid0, pid1] = opened.rankGroup!.pids as [number, number];
    const stream = opened.engine.generate({ promptIds: [1, 2, 3], maxTokens: 40 });
    let seen = 0;
    for await (const _ of stream) if (++seen === 2) process.kill(pid1, "SIGKILL");
    const summary = await stream.done;
    expect(summary.finishReason).toBe("error");
    // killed while it computes a step, or between two steps (the engine's loop yields between them)
    expect(summary.error).toMatch(new RegExp(`rank 1 \\(pid ${pid1}\\) was killed by SIGKILL while (computing step \\d+|idle); the process group is closed`));
    expect(() => opened.engine.generate({ promptIds: [1], maxTokens: 1 })).toThrow(/rank 1 .* was killed by SIGKILL/);
    await opened.engine.close();
    // the other rank is gone too (killed by the group; reaped within moments)
    const alive = () => {
      try {
        process.kill(pid0, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let waited = 0; alive() && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(alive()).toBe(false);
  });

  it("a rank that stops answering: the collective's deadline, then the step's", async () => {
    for (const [timeouts, message] of [
      [{ collectiveTimeoutMs: 400, stepTimeoutMs: 60_000 }, /collective allReduce #0 of step 1 timed out after 400 ms: rank 1 did not reach it/],
      [{ collectiveTimeoutMs: 60_000, stepTimeoutMs: 400 }, /ranks 0, 1 did not finish step 1 within 400 ms \(rank 0: (waiting in allReduce #0 of step 1|computing step 1); rank 1: computing step 1\); the process group is closed/],
    ] as const) {
      const group = await RankGroup.start({ ranks: 2, spec: spec(2), ...timeouts });
      const inputs = freshStepInputs(layout, [5, 6, 7]);
      const first = await group.step(inputs, [2]);
      expect(first.tokens).toHaveLength(3);
      expect(first.logits.get(2)).toHaveLength(GPT_OSS_TINY.vocabSize);
      process.kill(group.pids[1]!, "SIGSTOP");
      await expect(group.step(inputs)).rejects.toThrow(message);
      await expect(group.step(inputs)).rejects.toThrow(message); // every later call: the same error
      await group.close(1000);
    }
  });

  it("a rank that fails while preparing reports why", async () => {
    await expect(RankGroup.start({ ranks: 2, spec: spec(2, { checkpoint: "/nonexistent/tsgc-checkpoint" }) })).rejects.toThrow(/rank [01] \(pid \d+\) failed while preparing: .*\/nonexistent\/tsgc-checkpoint/);
  });
});
