// `tsgc generate` on a built-in model with seeded random weights (CPU interpreter): JSON output, seeded
// sampling, and clear one-line errors for bad prompts.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../tiers.js";

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tsgc generate (built-in model, cpu)", () => {
  it("prints tokens and timing as JSON, and samples the same tokens for the same seed", () => {
    const args = ["generate", "gpt-oss-tiny", "--prompt-ids", "1,2,3", "--max-new-tokens", "5", "--device", "cpu", "--json", "--temperature", "1.2", "--top-k", "20", "--top-p", "0.9"];
    const a = tsgc(...args, "--seed", "4");
    expect(a.code, a.stderr).toBe(0);
    const out = JSON.parse(a.stdout) as { tokens: number[]; ms: number };
    expect(out.tokens).toHaveLength(5);
    expect(typeof out.ms).toBe("number");
    expect(JSON.parse(tsgc(...args, "--seed", "4").stdout).tokens).toEqual(out.tokens);
  });

  it("rejects prompt ids outside the vocabulary and malformed ids in one line, without a stack trace", () => {
    const overflow = tsgc("generate", "--prompt-ids", "1,500", "--max-new-tokens", "2");
    expect(overflow.code).not.toBe(0);
    expect(overflow.stderr.trim().split("\n").at(-1)).toBe("tsgc: prompt id 500 is outside the model's vocabulary of 128 tokens (at position 1)");
    const malformed = tsgc("generate", "--prompt-ids", "1,x");
    expect(malformed.code).not.toBe(0);
    expect(malformed.stderr).toContain('--prompt-ids must be comma-separated non-negative integers, got "1,x"');
    expect(malformed.stderr).not.toMatch(/\n\s+at /);
  });
});
