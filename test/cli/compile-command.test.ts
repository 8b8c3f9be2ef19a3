// `tsgc compile` as a user runs it: a child process on the built CLI.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { GPT_OSS_TINY, gptOssConfigToJson } from "../../models/gpt-oss/config.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../tiers.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), "tsgc-cli-compile-"));
  dirs.push(d);
  return d;
};

function tsgc(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", env: { ...process.env, ...env }, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tsgc compile", () => {
  it("writes CUDA sources and says so when NVRTC is missing", () => {
    const dir = temp();
    const r = tsgc(["compile", "gpt-oss-tiny", "--json", "--no-cache", "--arch", "sm_80", "--emit-cuda", join(dir, "cuda")], { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" });
    expect(r.code, r.stderr).toBe(0);
    const stats = JSON.parse(r.stdout);
    expect(stats.kernelsCompiled).toBe(false);
    expect(stats.fusedOps.pagedAttention).toBe(2);
    expect(stats.buckets.step.map((b: { bounds: { tokens: number } }) => b.bounds.tokens)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256]);
    expect(readdirSync(join(dir, "cuda")).filter((f) => f.endsWith(".cu"))).toHaveLength(stats.kernels);
  });

  it("fails with one clear line when NVRTC is missing and no sources were asked for", () => {
    const r = tsgc(["compile", "gpt-oss-tiny", "--no-cache", "--arch", "sm_80"], { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^tsgc: \d+ of \d+ kernels are not in the cache for sm_80 and cannot be compiled here:\nlibnvrtc/m);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("loads a TypeScript model file that imports tsgc and a sibling .ts module", () => {
    const dir = temp();
    const r = tsgc(["compile", "test/fixtures/user-model.ts", "--dtype", "f32", "--no-cache", "--arch", "sm_80", "--emit-cuda", dir, "--out", dir, "--json"], { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" });
    expect(r.code, r.stderr).toBe(0);
    const stats = JSON.parse(r.stdout);
    expect(stats.model).toBe("user-mlp");
    expect(stats.fusedOps.fusedRmsNorm).toBe(1);
    expect(existsSync(join(dir, "plan.json"))).toBe(true);
  });

  it("builds gpt-oss from a config.json (--config) and prints the memory summary", () => {
    const dir = temp();
    const config = join(dir, "config.json");
    writeFileSync(config, JSON.stringify(gptOssConfigToJson({ ...GPT_OSS_TINY, numLayers: 4, layerTypes: ["sliding_attention", "full_attention", "sliding_attention", "full_attention"] })));
    const r = tsgc(["compile", "gpt-oss", "--config", config, "--no-cache", "--arch", "sm_80", "--emit-cuda", join(dir, "cuda")], { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/pagedAttention 4/);
    expect(r.stdout).toMatch(/^ {2}step: activations .* \(peak live .*, naive sum .*\); buckets of tokens: ≤1 \d+ launches, ≤2/m);
    // the bounds: --max-step-tokens sets the ladder, --max-batch and --max-context the rest
    const bounded = tsgc(["compile", "gpt-oss", "--config", config, "--no-cache", "--arch", "sm_80", "--emit-cuda", join(dir, "cuda2"), "--json", "--max-step-tokens", "8", "--max-batch", "4", "--max-context", "64"], { TSGC_NVRTC_LIBRARY: "/nonexistent/libnvrtc.so" });
    expect(bounded.code, bounded.stderr).toBe(0);
    expect(JSON.parse(bounded.stdout).buckets.step.map((b: { bounds: Record<string, number> }) => [b.bounds["tokens"], b.bounds["seqs"]])).toEqual([[1, 1], [2, 2], [4, 4], [8, 4]]);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ ...JSON.parse(readFileSync(config, "utf8")), rope_scaling: { rope_type: "linear", factor: 2 } }));
    expect(tsgc(["compile", "gpt-oss", "--config", bad]).stderr).toMatch(/rope_scaling\.rope_type/);
  });

  it("reports a model file's syntax and shape errors with their line, also outside a project that installs tsgc", () => {
    const dir = temp();
    writeFileSync(join(dir, "syntax.ts"), "export default (o) => { const x: = 1 }\n");
    writeFileSync(
      join(dir, "shapes.ts"),
      'import { defineModel } from "tsgc";\nexport default defineModel("bad", (b) => {\n  const t = b.sym("tokens", 8);\n  b.entry("e", (e) => {\n    const x = e.input("x", "f32", [t, 4]);\n    e.output("y", b.matmul(x, x));\n  });\n});\n',
    );
    expect(tsgc(["compile", join(dir, "syntax.ts"), "--no-cache"]).stderr).toContain("syntax.ts: 1:34: Type expected.");
    const shapes = tsgc(["compile", join(dir, "shapes.ts"), "--no-cache"]);
    expect(shapes.code).not.toBe(0);
    expect(shapes.stderr).toMatch(/matmul: contraction dims differ: 4 vs tokens \(operands: f32\[tokens, 4\], f32\[tokens, 4\]\) at .*shapes\.ts:6:\d+/);
  });

  it("names a bad model argument", () => {
    expect(tsgc(["compile", "no-such-model"]).stderr).toContain('unknown model "no-such-model"');
    expect(tsgc(["compile", "missing.ts"]).stderr).toContain("model file missing.ts does not exist");
    expect(tsgc(["compile", "gpt-oss-tiny", "--arch", "hopper"]).stderr).toContain('--arch must look like sm_90 or sm_90a, got "hopper"');
  });
});
