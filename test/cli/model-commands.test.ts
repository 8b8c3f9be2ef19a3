// The model verbs of the CLI, run in-process through commander.
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildProgram, run } from "../../src/cli/main.js";

function capture(): { out: () => string; err: () => string } {
  let out = "";
  let err = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  return { out: () => out, err: () => err };
}

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = 0;
});

describe("tsgc CLI", () => {
  it("lists its commands in --help", () => {
    const help = buildProgram().helpInformation();
    for (const verb of ["models", "ir", "compile", "generate\\|run", "bench", "cache", "inspect", "quantize"]) expect(help).toMatch(new RegExp(`^  ${verb}\\b`, "m"));
  });

  it("runs the default model on the cpu reference interpreter, deterministically", async () => {
    const io = capture();
    await run(["node", "tsgc", "run", "--json", "--max-new-tokens", "4", "--seed", "3"]);
    const first = JSON.parse(io.out());
    expect(first.model).toBe("gpt-oss-tiny");
    expect(first.tokens).toHaveLength(4);
    expect(first.tokens.every((t: number) => Number.isInteger(t) && t >= 0 && t < 128)).toBe(true);
    vi.restoreAllMocks();
    const io2 = capture();
    await run(["node", "tsgc", "run", "--json", "--max-new-tokens", "4", "--seed", "3"]);
    expect(JSON.parse(io2.out()).tokens).toEqual(first.tokens);
  });

  it("prints the IR as text, JSON and a summary", async () => {
    const io = capture();
    await run(["node", "tsgc", "ir", "gpt-oss-tiny", "--summary"]);
    expect(io.out()).toMatch(/^gpt-oss-tiny: \d+ nodes, 37 params, entries step/);
    vi.restoreAllMocks();
    const io2 = capture();
    await run(["node", "tsgc", "ir", "--json"]);
    expect(JSON.parse(io2.out()).format).toBe("tsgc-ir");
  });

  it("rejects bad arguments with one clear line and a non-zero exit", async () => {
    const io = capture();
    await run(["node", "tsgc", "run", "--prompt-ids", "1,x"]);
    expect(io.err()).toContain("--prompt-ids must be comma-separated non-negative integers");
    expect(process.exitCode).not.toBe(0);
    process.exitCode = 0;
    await run(["node", "tsgc", "run", "--prompt-ids", "500"]);
    expect(io.err()).toContain("prompt id 500 is outside the model's vocabulary of 128");
    await run(["node", "tsgc", "ir", "llama-7b"]);
    expect(io.err()).toContain('unknown model "llama-7b"; built-in models: gpt-oss-20b, gpt-oss-120b, gpt-oss-tiny');
  });
});
