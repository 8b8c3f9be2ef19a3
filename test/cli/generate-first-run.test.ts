// `tsgc generate` / `tsgc run` as a new user meets it: defaults that fit the machine, a banner saying what runs,
// refusals before any work (host memory, context bounds, vocabulary, malformed ids), text streamed without
// splitting characters, and compile progress on a cold GPU run.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { gptOssModel } from "../../models/gpt-oss/model.js";
import { contextBound, parsePromptIds, progressPrinter, resolveDevice } from "../../src/cli/generate.js";
import { compile } from "../../src/compile/compile.js";
import { checkInterpreterMemory, interpreterHostBytes } from "../../src/engine/open.js";
import { defineModel } from "../../src/ir/builder.js";
import { randomParams } from "../../src/loader/random-params.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { clearKernelMemo } from "../../runtime/kernel-cache.js";
import { describeNvrtc, gpuCount, REPO_ROOT } from "../tiers.js";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "tsgc-first-run-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" });
  return { code: r.status, hung: r.signal === "SIGKILL", stdout: r.stdout, stderr: r.stderr };
}

describe("tsgc run, the README's first command", () => {
  it("says what it is (model, device, what the numbers are) before the tokens", () => {
    // one pipe for both streams, to see the order a terminal shows
    const r = spawnSync("sh", ["-c", `"${process.execPath}" bin/tsgc.js run --max-new-tokens 3 2>&1`], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stdout).toBe(0);
    const lines = r.stdout.trim().split("\n");
    const device = gpuCount() > 0 ? "GPU 0 (a compiled plan, bf16)" : "the CPU reference interpreter (f32)";
    expect(lines[0]).toBe(`gpt-oss-tiny with seeded random weights (seed 0: untrained, its tokens are noise) on ${device}, greedy decoding`);
    expect(lines[1]).toBe("prompt: token ids 1,2,3; printing up to 3 new token ids (0‥127), one per line:");
    expect(lines.slice(2).filter((l) => /^\d+$/.test(l))).toHaveLength(3); // (on a GPU, compile progress comes first)
    expect(lines.at(-1)).toMatch(/^3 tokens in \d+ ms \([\d.]+ tokens\/s\) on /);
  });

  it("defaults to cuda and bf16 where a GPU is present, cpu and f32 where not", () => {
    expect(resolveDevice({}, 1)).toEqual({ device: "cuda", dtype: "bf16" });
    expect(resolveDevice({}, 0)).toEqual({ device: "cpu", dtype: "f32" });
    expect(resolveDevice({ device: "cpu" }, 2)).toEqual({ device: "cpu", dtype: "f32" });
    expect(resolveDevice({ device: "cuda", dtype: "f32" }, 1)).toEqual({ device: "cuda", dtype: "f32" });
    const r = tsgc("run", "--max-new-tokens", "1", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject(gpuCount() > 0 ? { device: "cuda", dtype: "bf16" } : { device: "cpu", dtype: "f32" });
  });
});

describe("refusals before any work", () => {
  it("the interpreter refuses a model whose weights do not fit host memory, with the estimate and the --device cuda hint", () => {
    const tiny = gptOssModel(GPT_OSS_TINY, { dtype: "f32", maxTokensPerStep: 16, maxContext: 16 });
    const params = randomParams(tiny, 1);
    const pools = { fullSlots: 64, slidingSlots: 32 };
    const stateElements = tiny.states.reduce((n, s) => n + s.shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : pools[d as keyof typeof pools]), 1), 0);
    expect(interpreterHostBytes(tiny, pools)).toBe(8 * (Object.values(params).reduce((n, t) => n + t.data.length, 0) + stateElements));
    const bytes = interpreterHostBytes(tiny, pools);
    expect(() => checkInterpreterMemory(bytes, "gpt-oss-tiny", 1 << 16, 1 << 30)).toThrow(
      /^gpt-oss-tiny on the CPU reference interpreter \(--device cpu\) needs [\d.]+ KiB of host memory for its weights \(8 bytes a value\), more than the 64\.0 KiB free of 1\.00 GiB; run it on a GPU with --device cuda$/,
    );
    expect(() => checkInterpreterMemory(bytes, "gpt-oss-tiny", 1 << 30, 1 << 30)).not.toThrow();
    // gpt-oss-120b needs about a terabyte there: refused at once instead of filling memory for minutes
    const r = tsgc("run", "gpt-oss-120b", "--device", "cpu", "--max-new-tokens", "1", "--json");
    expect(r.hung).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^tsgc: gpt-oss-120b on the CPU reference interpreter \(--device cpu\) needs [\d.]+ (GiB|TiB) of host memory .*; run it on a GPU with --device cuda\n$/);
  });

  it("--prompt on a model without the o200k vocabulary says so instead of blaming token 200006", () => {
    const r = tsgc("run", "--prompt", "hi");
    expect(r.stderr).toBe("tsgc: --prompt needs a model with the o200k_harmony vocabulary (201088 tokens); gpt-oss-tiny has 128: give token ids with --prompt-ids\n");
  });

  it("--prompt-ids takes decimal integers only", () => {
    expect(parsePromptIds(" 1, 2 ,3")).toEqual([1, 2, 3]);
    expect(() => parsePromptIds("1,,2")).toThrow('--prompt-ids must be comma-separated non-negative integers, got "1,,2": item 2 is empty');
    expect(() => parsePromptIds("0x10,1e1")).toThrow('item 1 ("0x10") is not a decimal integer');
    expect(() => parsePromptIds("1e1")).toThrow('item 1 ("1e1") is not a decimal integer');
    expect(() => parsePromptIds("-1")).toThrow(/item 1/);
    expect(() => parsePromptIds("1,")).toThrow("item 2 is empty");
    expect(tsgc("run", "--prompt-ids", "1,,2").stderr).toContain("item 2 is empty");
  });

  it("--max-new-tokens past the context is refused by name, not by the interpreter's typed arrays", () => {
    expect(tsgc("run", "--max-new-tokens", "1e9").stderr).toBe('tsgc: --max-new-tokens must be a positive integer, got "1e9"\n');
    expect(tsgc("run", "--max-new-tokens", "1000000000").stderr).toBe(
      "tsgc: --max-new-tokens 1000000000: the prompt (3 tokens) and 1000000000 new tokens need 1000000002 positions, more than gpt-oss-tiny's max_position_embeddings (4096)\n",
    );
  });

  it("max_position_embeddings bounds the context of a checkpoint", async () => {
    const short = { ...GPT_OSS_TINY, maxPositionEmbeddings: 8 };
    expect(contextBound(short, "m", 3, 6)).toBe(8);
    expect(contextBound(GPT_OSS_TINY, "m", 3, 6)).toBe(64);
    expect(() => contextBound(short, "m", 3, 30)).toThrow("--max-new-tokens 30: the prompt (3 tokens) and 30 new tokens need 32 positions, more than m's max_position_embeddings (8)");
    expect(() => contextBound(GPT_OSS_TINY, "m", 3, 30, 16)).toThrow("need 32 positions, more than --max-context 16");
    const dir = join(root, "short");
    await writeRandomGptOssCheckpoint(dir, short, { seed: 2 });
    const refused = tsgc("generate", "--checkpoint", dir, "--device", "cpu", "--max-new-tokens", "30", "--json");
    expect(refused.stderr).toContain("more than");
    expect(refused.code).not.toBe(0);
    const fits = tsgc("generate", "--checkpoint", dir, "--device", "cpu", "--max-new-tokens", "6", "--json");
    expect(fits.code, fits.stderr).toBe(0);
    expect((JSON.parse(fits.stdout) as { tokens: number[] }).tokens.length).toBeLessThanOrEqual(6);
  });
});

describeNvrtc("a cold GPU run", () => {
  it("shows compile progress, and a warm one says the plan came from the cache", async () => {
    clearKernelMemo();
    const cacheDir = join(root, "cache");
    const graph = defineModel("first-run", (b) => {
      const t = b.sym("tokens", 8);
      const w = b.param("w", "f32", [24, 12]);
      b.entry("forward", (e) => e.output("y", b.sigmoid(b.linear(e.input("x", "f32", [t, 12]), w))));
    });
    const run = async (into: string[]) => {
      const print = progressPrinter(false, (t) => void into.push(t), false);
      await compile(graph, { arch: "sm_80", cacheDir, onEvent: (event) => print({ kind: "compile", event }) });
    };
    const cold: string[] = [];
    await run(cold);
    expect(cold[0]).toBe("compiling the plan (the first run compiles every kernel; later runs load them from the cache)\n");
    expect(cold.at(-1)).toMatch(/^kernels \d+ ready\n$/);
    const warm: string[] = [];
    await run(warm);
    expect(warm[0]).toMatch(/^plan: from cache/);
  });
});
