import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY } from "../../models/gpt-oss/config.js";
import { registerInspectCommand, type InspectReport } from "../../src/cli/inspect.js";
import { formatBytes } from "../../src/format.js";
import { captureCli } from "./capture.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";

const cli = () => captureCli(registerInspectCommand);

let root: string;
let good: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "tsgc-inspect-"));
  good = join(root, "good");
  await writeRandomGptOssCheckpoint(good, GPT_OSS_TINY, { seed: 5 });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("tsgc inspect", () => {
  it("lists tensors with dtype, shape and bytes, totals, and that the checkpoint matches its config", async () => {
    const c = cli();
    await c.run("inspect", good);
    const text = c.out.join("");
    expect(text).toContain(`checkpoint ${good}: 1 file (model.safetensors)`);
    expect(text).toMatch(/model\.layers\.0\.mlp\.experts\.gate_up_proj\s+BF16\s+\[4, 64, 64\]\s+32768\n/);
    expect(text).toMatch(/model\.embed_tokens\.weight\s+BF16\s+\[128, 64\]\s+16384\n/);
    expect(text).toContain("config.json: gpt-oss, 2 layers, hidden 64, 4 experts (top 2), vocab 128, unquantized experts");
    expect(text).toContain("matches config.json: yes");
    expect(text).toMatch(/total: \d+ tensors, \d+ bytes \([\d.]+ KiB\), [\d,]+ parameters; by dtype: BF16 /);
  });

  it("--json gives the same report as data", async () => {
    const c = cli();
    await c.run("inspect", good, "--json");
    const report = JSON.parse(c.out.join("")) as InspectReport;
    expect(report.matchesConfig).toBe(true);
    expect(report.totals.tensors).toBe(report.tensors.length);
    expect(report.totals.bytes).toBe(report.tensors.reduce((n, t) => n + t.bytes, 0));
    expect(report.tensors.find((t) => t.name === "model.norm.weight")).toEqual({
      name: "model.norm.weight",
      dtype: "BF16",
      shape: [64],
      bytes: 128,
      file: "model.safetensors",
    });
    expect(report.config).toEqual({ layers: 2, hiddenSize: 64, experts: 4, expertsPerToken: 2, vocabSize: 128, expertFormat: "bf16" });
  });

  it("a truncated checkpoint is a precise error, never a crash", async () => {
    const dir = join(root, "truncated");
    await writeRandomGptOssCheckpoint(dir, GPT_OSS_TINY, { seed: 6 });
    const file = join(dir, "model.safetensors");
    await truncate(file, (await stat(file)).size - 3);
    const c = cli();
    await expect(c.run("inspect", dir)).rejects.toThrow(
      new RegExp(`^${file}: file is truncated: tensor "lm_head\\.weight" needs data bytes \\d+–\\d+ but the data section holds \\d+ bytes`),
    );
    const j = cli();
    await expect(j.run("inspect", dir, "--json")).rejects.toThrow(/file is truncated/);
    expect(JSON.parse(j.out.join(""))).toMatchObject({ dir, error: expect.stringMatching(/file is truncated/) });
  });

  it("a checkpoint that does not fit its config lists every problem and fails", async () => {
    const dir = join(root, "mismatch");
    await writeRandomGptOssCheckpoint(dir, GPT_OSS_TINY, { seed: 7 });
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    config.num_local_experts = 8;
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    const c = cli();
    await expect(c.run("inspect", dir)).rejects.toThrow(`${dir}: checkpoint does not match its config.json (12 problems, listed above)`);
    const text = c.out.join("");
    expect(text).toContain("matches config.json: no (12 problems)");
    expect(text).toContain('tensor "model.layers.0.mlp.router.weight" has shape [4, 64] but the config needs [8, 64]');
    expect(text).toContain('tensor "model.layers.1.mlp.experts.down_proj_bias" has shape [4, 64] but the config needs [8, 64]');
  });

  it("a missing or invalid config.json is reported after the tensors", async () => {
    const dir = join(root, "badconfig");
    await writeRandomGptOssCheckpoint(dir, GPT_OSS_TINY, { seed: 8 });
    await writeFile(join(dir, "config.json"), '{"hidden_size": 64}');
    const c = cli();
    await expect(c.run("inspect", dir)).rejects.toThrow(/config\.json: intermediate_size: /);
    expect(c.out.join("")).toContain("matches config.json: unknown (no valid config.json)");
    await rm(join(dir, "config.json"));
    await expect(cli().run("inspect", dir)).rejects.toThrow(`${join(dir, "config.json")}: file not found`);
  });

  it("a directory without weights is an error naming what is missing", async () => {
    await expect(cli().run("inspect", join(root, "nowhere"))).rejects.toThrow(`${join(root, "nowhere")}: no such directory`);
  });

  it("formats byte counts", () => {
    expect([formatBytes(999), formatBytes(16384), formatBytes(1.27e9), formatBytes(65.4e9)]).toEqual(["999 B", "16.0 KiB", "1.18 GiB", "60.9 GiB"]);
  });
});

describe("tsgc program", () => {
  it("registers inspect and quantize", async () => {
    const { buildProgram } = await import("../../src/cli/main.js");
    const names = buildProgram().commands.map((c) => c.name());
    expect(names).toContain("inspect");
    expect(names).toContain("quantize");
  });
});
