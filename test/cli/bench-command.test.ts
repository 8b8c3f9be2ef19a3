// `tsgc bench`: flags checked before any GPU work; on a GPU host, a full run of the tiny model.
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
  });
});

describeGpu("tsgc bench on the GPU", () => {
  it("reports memory, generation and decode timings for the tiny model", () => {
    const r = tsgc("bench", "gpt-oss-tiny", "--past", "20", "--context", "64", "--batches", "1,3", "--replays", "5", "--prefill", "40", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.model).toBe("gpt-oss-tiny");
    expect(out.logitsFinite).toBe(true);
    expect(out.generate.tokens).toHaveLength(32);
    expect(out.decode.map((d: { batch: number }) => d.batch)).toEqual([1, 3]);
    for (const d of out.decode) expect(d.ms).toBeGreaterThan(0);
    expect(out.gpuMemory.inUseBytes).toBeGreaterThan(out.arena.bytes);
    expect(out.kvCache.perSequence1k.sliding).toBe(out.kvCache.perSequence8k.sliding);
    expect(out.kvCache.perSequence8k.full).toBe(8 * out.kvCache.perSequence1k.full);
    expect(out.prefill.tokens).toBe(40);
  }, 300_000);
});
