// `tsgc bench`: flags checked before any GPU work, both benchmarks in the help, `bench serve` on the CPU interpreter;
// on a GPU host, a full decode run of the tiny model.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeGpu, REPO_ROOT } from "../tiers.js";

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tsgc bench", () => {
  it("names a bad flag or model in one line", () => {
    const bad = tsgc("bench", "--batches", "0,x");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toBe('tsgc: --batches must be comma-separated positive integers, got "0,x"\n');
    expect(tsgc("bench", "gpt-oss-7b").stderr).toMatch(/^tsgc: unknown model "gpt-oss-7b"; built-in models: gpt-oss-20b, gpt-oss-120b, gpt-oss-tiny\n$/);
    expect(tsgc("bench", "--past", "-1").stderr).toContain('--past must be an integer >= 0, got "-1"');
    expect(tsgc("bench", "decode", "--past", "-1").stderr).toContain('--past must be an integer >= 0, got "-1"');
    // the plan's bounds take compile's and serve's flags, checked before any GPU work
    expect(tsgc("bench", "gpt-oss-tiny", "--batches", "1,3,8", "--max-batch", "2").stderr).toMatch(/^tsgc: --batches 3,8 exceed --max-batch 2\n$/);
    expect(tsgc("bench", "gpt-oss-tiny", "--past", "64", "--max-context", "64").stderr).toMatch(/^tsgc: --past 64 must be below --max-context 64\n$/);
    expect(tsgc("bench", "--max-batch", "0").stderr).toContain('--max-batch must be an integer >= 1, got "0"');
  });

  it("lists both benchmarks in its help, decode as the default", () => {
    const help = tsgc("bench", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/decode \[options\] \[model\]\s+\(the default\)/);
    expect(help.stdout).toMatch(/serve \[options\] \[model\]/);
    const serve = tsgc("bench", "serve", "--help").stdout;
    for (const flag of ["--num-requests", "--input-len", "--output-len", "--dataset", "--request-rate", "--concurrency", "--http", "--compare-http", "--warmup", "--json", "--device", "--kv-blocks"]) expect(serve).toContain(flag);
  });
});

describe("tsgc bench serve", () => {
  it("names a bad flag in one line, before loading anything", () => {
    const one = (...args: string[]) => tsgc("bench", "serve", "gpt-oss-tiny", "--device", "cpu", ...args).stderr;
    expect(one("--request-rate", "0")).toBe('tsgc: --request-rate must be a positive number of requests per second, or "inf", got "0"\n');
    expect(one("--dataset", "alpaca")).toBe('tsgc: --dataset must be fixed or sharegpt-like, got "alpaca"\n');
    expect(one("--num-requests", "2.5")).toBe('tsgc: --num-requests must be a positive integer, got "2.5"\n');
    expect(one("--seed", "4294967296")).toBe('tsgc: --seed must be below 2^32 (4294967296), got "4294967296"\n');
    expect(one("--http", "--compare-http")).toBe("tsgc: give --http or --compare-http, not both\n");
    expect(one("--input-len", "40", "--output-len", "30", "--max-context", "64")).toBe("tsgc: --input-len 40 and --output-len 30 need 70 positions, more than --max-context 64\n");
  });

  it("serves a workload through the engine's API and through HTTP on one engine, as one JSON object", () => {
    const r = tsgc("bench", "serve", "gpt-oss-tiny", "--device", "cpu", "--num-requests", "6", "--input-len", "12", "--output-len", "5", "--max-context", "32", "--request-rate", "500", "--compare-http", "--warmup", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect([out.model, out.device, out.maxContext, out.warmup]).toEqual(["gpt-oss-tiny", "cpu", 32, true]);
    expect(out.workload).toMatchObject({ dataset: "fixed", numRequests: 6, inputLen: 12, outputLen: 5, requestRate: 500, seed: 0, inputTokens: 72, outputTokens: 30 });
    for (const run of [out.direct, out.http]) {
      expect([run.completed, run.failed, run.outputTokens]).toEqual([6, 0, 30]);
      for (const b of Object.values(run.kvBlocks) as { usedAfter: number }[]) expect(b.usedAfter).toBe(0);
      expect(run.prefixHitTokens).toBe(0); // the second run's prompts are its own
    }
    expect([out.direct.mode, out.http.mode, out.direct.workloadHash]).toEqual(["direct", "http", out.workload.hash]);
    expect(out.http.workloadHash).not.toBe(out.workload.hash);
    expect(out.httpOverDirect).toBeCloseTo(out.http.outputTokensPerSecond / out.direct.outputTokensPerSecond, 9);
    expect(r.stderr).toContain("HTTP: 6/6 requests");
  });
});

describeGpu("tsgc bench on the GPU", () => {
  it("reports memory, generation and decode timings for the tiny model", () => {
    const r = tsgc("bench", "gpt-oss-tiny", "--past", "20", "--max-context", "64", "--batches", "1,3", "--max-batch", "4", "--replays", "5", "--prefill", "40", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.model).toBe("gpt-oss-tiny");
    expect(out.generate.finishReason).toBe("length");
    expect(out.generate.tokens).toHaveLength(32);
    expect(out.decode.map((d: { batch: number }) => d.batch)).toEqual([1, 3]);
    // the plan's batch bound is --max-batch, not the largest batch
    expect(out.maxBatch).toBe(4);
    for (const d of out.decode) expect(d.ms).toBeGreaterThan(0);
    expect(out.gpuMemory.inUseBytes).toBeGreaterThan(out.arena.plannedBytes);
    expect(out.kvPerSequence.at8k).toBe(8 * out.kvPerSequence.at1k);
    expect(out.kvPerSequence.sliding).toBeGreaterThan(0);
    expect(out.prefill.tokens).toBe(40);
  }, 300_000);

  it("serves a workload of the tiny model on GPU 0, every request to its output length", () => {
    const r = tsgc("bench", "serve", "gpt-oss-tiny", "--device", "cuda", "--num-requests", "32", "--input-len", "40", "--output-len", "16", "--max-context", "64", "--compare-http", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    for (const run of [out.direct, out.http]) expect([run.completed, run.failed, run.outputTokens]).toEqual([32, 0, 512]);
  }, 300_000);
});
