// The plan cache's integrity: a damaged or edited plans/*.json is never served (checksum bound to the key,
// kernel sources checked against their sourceHash), it is reported once and recompiled, and the good plan
// replaces it; `cache verify` checks plans, `cache clear` removes them, `cache ls` lists them.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { compile } from "../../src/compile/compile.js";
import {
  clearCachedPlans, decodePlanEntry, encodePlanEntry, listCachedPlans, planCachePath, readCachedPlan, writeCachedPlan,
} from "../../src/compile/plan-cache.js";
import type { Plan } from "../../src/lower/plan.js";
import { defineModel } from "../../src/ir/builder.js";
import type { Graph } from "../../src/ir/graph.js";
import { registerCacheCommand } from "../../src/cli/cache.js";
import { runVerbs } from "../cli/capture.js";
import { clearKernelMemo } from "../../runtime/kernel-cache.js";
import { describeNvrtc } from "../tiers.js";

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "tsgc-plan-cache-"));
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(root, { recursive: true, force: true });
});

/** A small model (three kernels), different per `width` so each test has its own plan key. */
function smallModel(width: number): Graph {
  return defineModel(`plan-cache-${width}`, (b) => {
    const tokens = b.sym("tokens", 16);
    const norm = b.param("norm.weight", "f32", [width]);
    const up = b.param("up.weight", "f32", [2 * width, width]);
    b.entry("forward", (e) => {
      const x = e.input("x", "f32", [tokens, width]);
      const h = b.linear(b.rmsNorm(x, norm, 1e-5), up);
      e.output("y", b.mul(h, b.sigmoid(h)));
    });
  });
}

async function planOf(width: number): Promise<Plan> {
  return (await compile(smallModel(width), { arch: "sm_80", cacheDir: false, nvrtc: "skip" })).plan;
}

const KEY = "c".repeat(64);
const OTHER_KEY = "d".repeat(64);

function captureWarnings(): string[] {
  const warnings: string[] = [];
  vi.spyOn(process, "emitWarning").mockImplementation((w: string | Error) => void warnings.push(String(w)));
  return warnings;
}

describe("plan cache entries", () => {
  it("round-trip, and a plan is served only under the key it was filed under", async () => {
    const plan = await planOf(8);
    writeCachedPlan(root, KEY, plan);
    expect(readCachedPlan(root, KEY, plan.graphHash)).toEqual(plan);
    // the same file copied under another key is refused: its checksum is bound to the key
    writeFileSync(planCachePath(root, OTHER_KEY), readFileSync(planCachePath(root, KEY)));
    const warnings = captureWarnings();
    expect(readCachedPlan(root, OTHER_KEY)).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/ignoring a damaged cached plan .*dddddddd.*\.json \(filed under dddddddddddd… but made for cccccccccccc…\); recompiling/);
  });

  it("refuses an edited arena offset (checksum mismatch), with one warning naming the file", async () => {
    const plan = await planOf(8);
    writeCachedPlan(root, KEY, plan);
    const path = planCachePath(root, KEY);
    writeFileSync(path, readFileSync(path, "utf8").replace(/"activationOffset":(\d+)/, (_, n: string) => `"activationOffset":${Number(n) + 256}`));
    const warnings = captureWarnings();
    expect(readCachedPlan(root, KEY)).toBeUndefined();
    expect(warnings).toEqual([expect.stringContaining(`ignoring a damaged cached plan ${path} (checksum mismatch`)]);
  });

  it("refuses an edited kernel source even with a recomputed checksum (its sourceHash no longer matches)", async () => {
    const plan = await planOf(8);
    const kernels = plan.kernels.map((k, i) => (i === 0 ? { ...k, source: k.source.replace("{", "{ /* injected */") } : k));
    mkdirSync(join(root, "plans"));
    writeFileSync(planCachePath(root, KEY), encodePlanEntry(KEY, { ...plan, kernels }));
    expect(() => decodePlanEntry(readFileSync(planCachePath(root, KEY), "utf8"), KEY)).toThrow(/kernel 0 .*does not hash to its sourceHash/);
    captureWarnings();
    expect(readCachedPlan(root, KEY)).toBeUndefined();
  }, 10_000);

  it("refuses a plan of another graph filed under the key", async () => {
    const plan = await planOf(8);
    writeCachedPlan(root, KEY, plan);
    const warnings = captureWarnings();
    expect(readCachedPlan(root, KEY, "e".repeat(64))).toBeUndefined();
    expect(warnings[0]).toMatch(/made for graph/);
  });

  it("are listed with their model, verified, and cleared (temp files too), never following a link", async () => {
    const plan = await planOf(8);
    writeCachedPlan(root, KEY, plan);
    writeCachedPlan(root, OTHER_KEY, plan); // good plan, wrong key below
    const other = planCachePath(root, OTHER_KEY);
    writeFileSync(other, readFileSync(other, "utf8").slice(0, 100));
    writeFileSync(`${planCachePath(root, KEY)}.tmp-1-0-abcd`, "half");
    const listing = listCachedPlans(root);
    expect(listing.map((l) => [l.relativePath, l.problem === undefined])).toEqual([
      [`plans/${KEY}.json`, true],
      [`plans/${KEY}.json.tmp-1-0-abcd`, false],
      [`plans/${OTHER_KEY}.json`, false],
    ]);
    expect(listing[0]).toMatchObject({ model: "plan-cache-8", arch: "sm_80", kernels: plan.kernels.length });
    expect(clearCachedPlans(root)).toBe(3);
    expect(readdirSync(join(root, "plans"))).toEqual([]);
  });
});

const tsgcCache = (...args: string[]) => runVerbs([registerCacheCommand], ...args);

describe("tsgc cache and plans", () => {
  it("verify reports a damaged plan and fails; --delete removes it; ls lists plans; clear removes them", async () => {
    const plan = await planOf(8);
    writeCachedPlan(root, KEY, plan);
    writeCachedPlan(root, OTHER_KEY, plan);
    const damaged = planCachePath(root, OTHER_KEY);
    writeFileSync(damaged, readFileSync(damaged, "utf8").replace(/"activationOffset":(\d+)/, (_, n: string) => `"activationOffset":${Number(n) + 256}`));
    const ls = await tsgcCache("cache", "--dir", root, "ls");
    expect(ls.out).toMatch(new RegExp(`plan ${KEY.slice(0, 16)}\\s+sm_80\\s+${plan.kernels.length} kernels .*plan-cache-8`));
    expect(ls.out).toMatch(/0 kernels, 1 plans, .* in .*; 1 damaged/);
    const verify = await tsgcCache("cache", "--dir", root, "verify");
    expect(verify.out).toContain(`BAD  plans/${OTHER_KEY}.json: checksum mismatch`);
    expect(verify.error).toContain("1 damaged cache entries");
    expect((await tsgcCache("cache", "--dir", root, "verify", "--delete")).error).toBeUndefined();
    expect((await tsgcCache("cache", "--dir", root, "verify")).out).toContain("1 good, 0 damaged");
    expect((await tsgcCache("cache", "--dir", root, "clear")).out).toContain("removed 1 files (0 kernels, 1 plans)");
    expect(listCachedPlans(root)).toEqual([]);
  });
});

describeNvrtc("compile and a damaged cached plan", () => {
  it("recompiles an edited plan with one warning, and the good plan replaces it", async () => {
    clearKernelMemo();
    const cold = await compile(smallModel(24), { arch: "sm_80", cacheDir: root });
    const [file] = readdirSync(join(root, "plans"));
    const path = join(root, "plans", file!);
    writeFileSync(path, readFileSync(path, "utf8").replace(/"activationOffset":(\d+)/, (_, n: string) => `"activationOffset":${Number(n) + 256}`));
    const warnings = captureWarnings();
    const again = await compile(smallModel(24), { arch: "sm_80", cacheDir: root });
    expect(again.stats.planCacheHit).toBe(false);
    expect(again.plan.arena).toEqual(cold.plan.arena);
    expect(warnings).toEqual([expect.stringContaining(`ignoring a damaged cached plan ${path}`)]);
    const third = await compile(smallModel(24), { arch: "sm_80", cacheDir: root });
    expect(third.stats.planCacheHit).toBe(true);
    expect(third.plan).toEqual(cold.plan);
  });
});
