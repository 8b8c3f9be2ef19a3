// `--tp N` and `--ep` on the engine verbs: `tsgc generate --tp N --device cpu` runs N simulated ranks and gives the
// tokens of `--tp 1`, from built-in random weights and from a checkpoint each rank reads its slices of (bf16/f32 and
// MXFP4 experts); bad combinations are refused by name; without N GPUs, `--device cuda` says so. `tsgc compile --tp N`
// compiles the ranks' plans (into the caches GPU ranks read).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { quantizeCheckpoint } from "../../src/loader/quantize-checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { gpuCount, REPO_ROOT } from "../tiers.js";

let root: string;
let checkpoint: string;
let mxfp4: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-parallel-"));
  checkpoint = join(root, "tiny");
  mxfp4 = join(root, "tiny-mxfp4");
  await writeRandomGptOssCheckpoint(checkpoint, GPT_OSS_TINY, { seed: 21, std: 0.2, dtype: "F32" });
  await quantizeCheckpoint(checkpoint, mxfp4);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 300_000, env: { ...process.env, TSGC_CACHE_DIR: join(root, "cache") } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tokensOf = (...args: string[]) => {
  const r = tsgc("generate", "--device", "cpu", "--prompt-ids", "3,1,4,1,5", "--prompt-ids", "9,2,6", "--max-new-tokens", "6", "--json", ...args);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { tokens: number[][] }).tokens;
};

describe("tsgc generate --tp", () => {
  it("--tp 2 --device cpu gives the tokens of --tp 1 (built-in random weights), and so do --tp 4 --ep and --tp 4 --ep 2", () => {
    const one = tokensOf();
    expect(tokensOf("--tp", "2")).toEqual(one);
    expect(tokensOf("--tp", "4", "--ep")).toEqual(one);
    expect(tokensOf("--tp", "4", "--ep", "2")).toEqual(one);
  });

  it("each rank reads its slices of a checkpoint: the same tokens and logits within 1e-6 (f32, and MXFP4 experts)", () => {
    for (const dir of [checkpoint, mxfp4]) {
      const one = join(root, "one.json");
      const two = join(root, "two.json");
      expect(tokensOf("--checkpoint", dir, "--logits-out", one)).toEqual(tokensOf("--checkpoint", dir, "--tp", "2", "--ep", "--logits-out", two));
      const a = JSON.parse(readFileSync(one, "utf8")).logits as number[][];
      const b = JSON.parse(readFileSync(two, "utf8")).logits as number[][];
      expect(b).toHaveLength(a.length);
      a.forEach((row, i) => expect(Math.max(...row.map((v, j) => Math.abs(v - b[i]![j]!))) / Math.max(...row.map(Math.abs))).toBeLessThan(1e-6));
    }
  });

  it("refuses --ep without --tp, expert groups that do not divide the ranks, and --tp 0", () => {
    for (const [args, message] of [
      [["--ep"], "--ep needs --tp N with N > 1"],
      [["--tp", "4", "--ep", "3"], "--ep 3 must divide --tp 4"],
      [["--tp", "0"], "--tp must be a positive integer"],
    ] as const) {
      const r = tsgc("generate", "--device", "cpu", "--prompt-ids", "1,2", "--max-new-tokens", "1", ...args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(message);
    }
  });

  it.skipIf(gpuCount() >= 2)("--device cuda with fewer GPUs than ranks says so", () => {
    const r = tsgc("generate", "--device", "cuda", "--tp", "2", "--prompt-ids", "1,2", "--max-new-tokens", "1");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--tp 2 needs 2 GPUs \(one process per GPU\), this machine has [01]/);
  });
});

describe("tsgc compile --tp", () => {
  it("compiles one rank's plan (--rank) and reports its collectives; refuses a rank outside the set", () => {
    const out = join(root, "plans");
    const r = tsgc("compile", "gpt-oss-tiny", "--tp", "2", "--ep", "--rank", "1", "--max-step-tokens", "16", "--json", "--out", out, "--emit-cuda", join(root, "cuda"));
    expect(r.code, r.stderr).toBe(0);
    const { ranks } = JSON.parse(r.stdout) as { ranks: { rank: number; ranks: number; collectives: Record<string, number>; fusedOps: Record<string, number> }[] };
    expect(ranks.map((x) => [x.rank, x.ranks, x.collectives])).toEqual([[1, 2, { step: 7 }]]);
    expect(ranks[0]!.fusedOps).toMatchObject({ pagedAttention: 2, moeExperts: 2 });
    const plan = JSON.parse(readFileSync(join(out, "plan.rank1.json"), "utf8")) as { params: { name: string; slice?: unknown }[] };
    expect(plan.params.find((p) => p.name === "lm_head.weight")!.slice).toEqual({ full: [128, 64], axes: [{ axis: 0, ranges: [[64, 128]] }] });
    for (const [args, message] of [[["--tp", "2", "--rank", "2"], "--rank 2 is not one of the 2 ranks"], [["--rank", "0"], "--ep and --rank need --tp N"]] as const) {
      const bad = tsgc("compile", "gpt-oss-tiny", ...args);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain(message);
    }
  });
});
