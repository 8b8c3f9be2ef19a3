// Careless and hostile paths given to the CLI, as a user runs it (a child process on the built CLI): each
// is one `tsgc:` line naming the path or the flag, found before any work, never a bare errno, a stack
// trace or a hang. Named pipes are refused without blocking; symlinks to regular files (Hugging Face
// snapshots) keep working.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GPT_OSS_TINY, gptOssConfigToJson } from "../../models/gpt-oss/config.js";
import { writeRandomGptOssCheckpoint } from "../../src/loader/random-checkpoint.js";
import { REPO_ROOT } from "../tiers.js";

let root: string;
let good: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "tsgc-file-errors-"));
  good = join(root, "good");
  await writeRandomGptOssCheckpoint(good, GPT_OSS_TINY, { seed: 5 });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tsgc(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin/tsgc.js"), ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 30_000, killSignal: "SIGKILL" });
  return { code: r.status, hung: r.signal === "SIGKILL", stdout: r.stdout, stderr: r.stderr };
}

/** The command failed with exactly one `tsgc:` line, and no raw errno text. */
function expectOneLineError(r: ReturnType<typeof tsgc>, expected: string): void {
  expect(r.hung, "the command blocked").toBe(false);
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stderr).toBe(`${expected}\n`);
  expect(r.stderr).not.toMatch(/\bE[A-Z]{3,}\b:/);
}

function checkpointDir(name: string, weights: (dir: string) => void): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(gptOssConfigToJson(GPT_OSS_TINY)));
  weights(join(dir, "model.safetensors"));
  return dir;
}

function mkfifo(path: string): void {
  const r = spawnSync("mkfifo", [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr.toString()}`);
}

describe("checkpoint files", () => {
  it("a named pipe as model.safetensors is refused at once by inspect and generate", () => {
    const dir = checkpointDir("fifo", mkfifo);
    const file = join(dir, "model.safetensors");
    expectOneLineError(tsgc("inspect", dir), `tsgc: ${file}: cannot open (it is a named pipe, not a regular file)`);
    expectOneLineError(tsgc("generate", "--checkpoint", dir, "--max-new-tokens", "1"), `tsgc: ${file}: cannot open (it is a named pipe, not a regular file)`);
  });

  it("a shard linked to a file that is not safetensors says so without printing its bytes", () => {
    const secret = join(root, "secret.txt");
    writeFileSync(secret, "root:x:0:0:root:/root:/bin/bash\n");
    const dir = checkpointDir("not-safetensors", (file) => symlinkSync(secret, file));
    const file = join(dir, "model.safetensors");
    const asNumber = Buffer.from("root:x:0").readBigUInt64LE(0).toString();
    const r = tsgc("inspect", dir);
    expectOneLineError(r, `tsgc: ${file} (a link to ${secret}): not a safetensors file (no JSON header after the 8-byte length)`);
    expect(r.stderr).not.toContain(asNumber);
  });

  it("a symlink to a real safetensors file (a Hugging Face snapshot) works", () => {
    const dir = checkpointDir("snapshot", (file) => symlinkSync(join(good, "model.safetensors"), file));
    const r = tsgc("inspect", dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("matches config.json: yes");
  });

  it("a directory where a file belongs names it", () => {
    const dir = checkpointDir("dir-as-file", (file) => mkdirSync(file));
    expectOneLineError(tsgc("inspect", dir), `tsgc: ${join(dir, "model.safetensors")}: cannot open (it is a directory, not a regular file)`);
    const configDir = join(root, "config-dir");
    mkdirSync(join(configDir, "config.json"), { recursive: true });
    expectOneLineError(tsgc("generate", "--checkpoint", configDir), `tsgc: ${join(configDir, "config.json")}: cannot read (it is a directory, not a regular file)`);
  });

  it("--checkpoint FILE and inspect FILE name the file, not FILE/config.json", () => {
    const file = join(root, "plain-file");
    writeFileSync(file, "x");
    expectOneLineError(tsgc("generate", "--checkpoint", file), `tsgc: --checkpoint ${file}: it is a regular file, not a directory`);
    expectOneLineError(tsgc("inspect", file), `tsgc: ${file}: it is a regular file, not a checkpoint directory (config.json + model.safetensors)`);
  });
});

describe("output paths, checked before any work", () => {
  it("compile --out EXISTING_FILE", () => {
    const file = join(root, "out-file");
    writeFileSync(file, "x");
    const r = tsgc("compile", "test/fixtures/user-model.ts", "--arch", "sm_80", "--no-cache", "--out", file);
    expectOneLineError(r, `tsgc: --out ${file}: it is a regular file, not a directory`);
  });

  it("compile --config DIR", () => {
    const dir = join(root, "config-as-dir");
    mkdirSync(dir);
    expectOneLineError(tsgc("compile", "gpt-oss", "--config", dir, "--arch", "sm_80"), `tsgc: --config ${dir}: it is a directory, not a regular file`);
  });

  it("generate --logits-out into a missing directory, before generating", () => {
    const target = join(root, "missing", "logits.json");
    const r = tsgc("generate", "--max-new-tokens", "2", "--device", "cpu", "--logits-out", target);
    expectOneLineError(r, `tsgc: --logits-out ${target}: the directory ${join(root, "missing")} does not exist`);
    expect(r.stdout).toBe("");
  });

  it("cache export DIR", () => {
    const dir = join(root, "export-dir");
    mkdirSync(dir);
    expectOneLineError(tsgc("cache", "--dir", join(root, "cache"), "export", dir), `tsgc: cannot write ${dir}: it is a directory, not a regular file`);
    expect(readdirSync(root).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });
});
