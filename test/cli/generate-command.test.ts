// `tsgc generate` on a checkpoint directory: the CPU reference, and (GPU tier) the compiled plan agreeing with it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { quantizeCheckpoint } from "../../src/loader/quantize-checkpoint.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { describeGpu, REPO_ROOT } from "../tiers.js";

let root: string;
let checkpoint: string;
let mxfp4: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-generate-"));
  checkpoint = join(root, "tiny");
  mxfp4 = join(root, "tiny-mxfp4");
  await writeRandomGptOssCheckpoint(checkpoint, GPT_OSS_TINY, { seed: 12, std: 0.2, dtype: "F32" });
  await quantizeCheckpoint(checkpoint, mxfp4);
});

/** Max relative difference of two --logits-out files' logits. */
function logitsDiff(fileA: string, fileB: string): number {
  const a = JSON.parse(readFileSync(fileA, "utf8")).logits as number[][];
  const b = JSON.parse(readFileSync(fileB, "utf8")).logits as number[][];
  expect(b).toHaveLength(a.length);
  return Math.max(...a.map((row, i) => Math.max(...row.map((v, j) => Math.abs(v - b[i]![j]!))) / Math.max(...row.map(Math.abs))));
}
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tsgc generate --checkpoint", () => {
  it("generates from a checkpoint on the cpu reference interpreter", () => {
    const r = tsgc("generate", "--checkpoint", checkpoint, "--prompt-ids", "3,1,4,1,5,9,2,6", "--max-new-tokens", "6", "--device", "cpu", "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toHaveLength(6);
    expect(out.device).toBe("cpu");
    expect(out.dtype).toBe("f32");
  });

  it("--dequantize runs an MXFP4 checkpoint with dense experts, as the packed form computes (f32)", () => {
    const args = ["generate", "--checkpoint", mxfp4, "--prompt-ids", "3,1,4,1,5,9,2,6", "--max-new-tokens", "5", "--device", "cpu", "--json"];
    const packed = tsgc(...args, "--logits-out", join(root, "packed.json"));
    const dense = tsgc(...args, "--dequantize", "--logits-out", join(root, "dense.json"));
    expect(dense.code, dense.stderr).toBe(0);
    expect(JSON.parse(dense.stdout).tokens).toEqual(JSON.parse(packed.stdout).tokens);
    expect(logitsDiff(join(root, "packed.json"), join(root, "dense.json"))).toBeLessThan(1e-12);
  });

  it("names a checkpoint that does not fit, and bad options", () => {
    expect(tsgc("generate", "--checkpoint", join(root, "nope"), "--json").stderr).toMatch(/^tsgc: .*nope/m);
    expect(tsgc("generate", "--top-p", "0").stderr).toContain('--top-p must be in (0, 1], got "0"');
    expect(tsgc("generate", "--device", "tpu").stderr).toContain('--device must be cuda or cpu, got "tpu"');
  });
});

describeGpu("tsgc generate --device cuda", () => {
  it("gives the cpu reference's tokens and logits (f32)", () => {
    const args = ["generate", "--checkpoint", checkpoint, "--prompt-ids", "3,1,4,1,5,9,2,6,5,3", "--max-new-tokens", "8", "--json"];
    const cpuLogits = join(root, "cpu.json");
    const gpuLogits = join(root, "gpu.json");
    const cpu = tsgc(...args, "--device", "cpu", "--logits-out", cpuLogits);
    // f32 on both: cuda's default dtype is bf16
    const gpu = tsgc(...args, "--device", "cuda", "--dtype", "f32", "--logits-out", gpuLogits);
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(JSON.parse(gpu.stdout).tokens).toEqual(JSON.parse(cpu.stdout).tokens);
    const a = JSON.parse(readFileSync(cpuLogits, "utf8")).logits as number[][];
    const b = JSON.parse(readFileSync(gpuLogits, "utf8")).logits as number[][];
    a.forEach((row, i) => {
      const ref = Math.max(...row.map(Math.abs));
      const err = Math.max(...row.map((v, j) => Math.abs(v - b[i]![j]!)));
      expect(err / ref).toBeLessThan(1e-4);
    });
  }, 300_000);

  it("streams an MXFP4 checkpoint dequantized into dense experts (--dequantize) as the cpu reference computes", () => {
    const args = ["generate", "--checkpoint", mxfp4, "--dequantize", "--prompt-ids", "3,1,4,1,5,9,2,6,5,3", "--max-new-tokens", "6", "--json"];
    const cpu = tsgc(...args, "--device", "cpu", "--logits-out", join(root, "dq-cpu.json"));
    const gpu = tsgc(...args, "--device", "cuda", "--dtype", "f32", "--logits-out", join(root, "dq-gpu.json"));
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(JSON.parse(gpu.stdout).tokens).toEqual(JSON.parse(cpu.stdout).tokens);
    expect(logitsDiff(join(root, "dq-cpu.json"), join(root, "dq-gpu.json"))).toBeLessThan(1e-4);
  }, 300_000);
});
