// The package as a user gets it: every name the README lists under `import { … } from "tsgc"` (the API section,
// the generation example, the library table, the runtime's) is exported, by the source and by the built
// package resolved by its name; a GPU Device opens from the package; `npm pack` ships the built code, the
// native sources and the kernel templates, and no tests or benchmarks.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as tsgc from "tsgc";
import { describeGpu, REPO_ROOT } from "./tiers.js";

/** What README.md tells users to import from "tsgc". */
const README_IMPORTS = [
  // ## API
  "defineModel", "interpret", "interpretStep", "hostTensor", "randomParams", "compile", "runPipeline", "PlanExecutor",
  "printGraph", "graphToJson", "graphFromJson", "verifyGraph", "gptOssModel", "GPT_OSS_20B", "GPT_OSS_120B", "GPT_OSS_TINY",
  "parseGptOssConfig", "loadParams", "gptOssLayout", "openEngine", "EngineRequestError", "EngineOverloadedError", "planBackend",
  "interpreterBackend", "STEP_NAMES", "createOpenAiServer",
  // ## Generating
  "streamCheckpoint",
  // ## Checkpoints, quantization and tokenizer (the library table)
  "loadGptOssConfig", "gptOssCheckpointTensors", "openCheckpoint", "Checkpoint", "validateGptOssCheckpoint", "openGptOssCheckpoint",
  "CheckpointMismatchError", "writeSafetensors", "SafetensorsWriter", "writeCheckpoint", "writeCheckpointTensors", "quantizeMxfp4",
  "dequantizeMxfp4", "quantizeCheckpoint", "writeRandomGptOssCheckpoint", "HarmonyTokenizer", "chatMessages", "encodeHarmony",
  // ## Native runtime and kernel cache
  "compileKernels", "Device",
] as const;

const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("the package's exports", () => {
  it("are every name README.md lists under import { … } from \"tsgc\"", () => {
    for (const name of README_IMPORTS) expect(readme, `README no longer mentions ${name}: update this list`).toContain(name);
    const exported = tsgc as Record<string, unknown>;
    expect(README_IMPORTS.filter((name) => exported[name] === undefined)).toEqual([]);
  });

  it("resolve by the package's name from the built code, as a dependent project imports them", () => {
    const project = mkdtempSync(join(tmpdir(), "tsgc-dependent-"));
    dirs.push(project);
    mkdirSync(join(project, "node_modules"));
    symlinkSync(REPO_ROOT, join(project, "node_modules", "tsgc"));
    writeFileSync(join(project, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(join(project, "check.js"), `
      const tsgc = await import("tsgc");
      const missing = ${JSON.stringify(README_IMPORTS)}.filter((name) => tsgc[name] === undefined);
      console.log(JSON.stringify({ missing, deviceOpen: typeof tsgc.Device.open, devices: typeof tsgc.deviceCount }));
    `);
    const out = JSON.parse(execFileSync(process.execPath, ["check.js"], { cwd: project, encoding: "utf8" })) as { missing: string[]; deviceOpen: string; devices: string };
    expect(out).toEqual({ missing: [], deviceOpen: "function", devices: "function" });
  });

  it("ships dist, the native sources and the templates, and no tests or benchmarks (package.json files)", () => {
    const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: REPO_ROOT, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    for (const needed of ["package.json", "README.md", "bin/tsgc.js", "binding.gyp", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/cli/main.js", "dist/runtime/native.js", "dist/models/gpt-oss/model.js", "runtime/native/addon.cc", "runtime/native/napi_util.h", "src/codegen/templates/gemv.cu.njk", "src/codegen/templates/common.cuh.njk"]) {
      expect(files, needed).toContain(needed);
    }
    expect(files.filter((f) => /^(dist\/)?(test|bench|examples)\/|^\.ci\/|\.test\.|^src\/.*\.ts$|^runtime\/[^/]*\.ts$/.test(f))).toEqual([]);
  });
});

describeGpu("a Device from the package", () => {
  it("opens GPU 0", () => {
    const device = tsgc.Device.open(0);
    expect(device.info.arch).toMatch(/^sm_\d+a?$/);
  });
});
