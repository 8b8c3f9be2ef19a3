// Test tiers (DESIGN.md, Testing): pure tests always run; NVRTC tests need the NVRTC library; GPU
// tests need CUDA devices. A tier whose capability is missing is skipped, with the reason in its
// name, unless the environment demands it: TSGC_REQUIRE_NVRTC=1 makes missing NVRTC a failure, and
// TSGC_REQUIRE_GPU=N (N ≥ 1) makes fewer than N GPUs a failure for tiers that need up to N.
//
//   import { describeNvrtc, describeGpu, describeGpus } from "../tiers.js";
//   describeNvrtc("my kernel compiles", () => { it(...) });
//   describeGpu("my kernel matches the interpreter", () => { it(...) });
//   describeGpus(2, "all-reduce", () => { it(...) });
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, it } from "vitest";
import { deviceInfo } from "../runtime/cuda.js";
import { native } from "../runtime/native.js";
import { lowerTarget } from "../src/lower/kernel.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Capability {
  ok: boolean;
  reason: string;
}

function probe(check: () => string): Capability {
  try {
    return { ok: true, reason: check() };
  } catch (err) {
    return { ok: false, reason: (err instanceof Error ? err.message : String(err)).split("\n").join(" ") };
  }
}

let nvrtcProbe: Capability | undefined;
let gpuProbe: (Capability & { count: number }) | undefined;

export function nvrtcStatus(): Capability {
  nvrtcProbe ??= probe(() => {
    const v = native().nvrtcVersion();
    return `NVRTC ${v.major}.${v.minor} (${v.libraryPath})`;
  });
  return nvrtcProbe;
}

/** Number of usable CUDA devices, 0 when there is no driver or no device. */
export function gpuCount(): number {
  if (gpuProbe === undefined) {
    let count = 0;
    const status = probe(() => {
      count = native().deviceCount();
      if (count === 0) throw new Error("the CUDA driver reports no devices");
      return `${count} CUDA device(s)`;
    });
    gpuProbe = { ...status, count };
  }
  return gpuProbe.count;
}

export function nvrtcAvailable(): boolean {
  return nvrtcStatus().ok;
}

export function gpuAvailable(): boolean {
  return gpuCount() > 0;
}

/** GPU 0's target has warpgroup MMA (sm_90a: an H100 or H200), so the wgmma kernel variants can run. */
export function gpuHasWgmma(): boolean {
  return gpuAvailable() && lowerTarget(deviceInfo(0).arch).wgmma;
}

export const requireNvrtc = process.env["TSGC_REQUIRE_NVRTC"] === "1";
/** How many GPUs the environment insists on (TSGC_REQUIRE_GPU=N); 0 when it insists on none. */
export const requiredGpus = Math.max(0, Number.parseInt(process.env["TSGC_REQUIRE_GPU"] ?? "0", 10) || 0);

// A tier that cannot run never evaluates its body: bodies may use the capability while collecting
// tests (e.g. ask NVRTC which architectures it supports), which would throw without it.
function tier(name: string, available: boolean, required: boolean, reason: string, requiredBy: string, body: () => void): void {
  if (available) {
    describe(name, body);
  } else if (required) {
    describe(name, () => {
      it(`has what it needs (${requiredBy})`, () => {
        throw new Error(`${requiredBy} is set but this tier cannot run: ${reason}`);
      });
    });
  } else {
    describe(name, () => {
      it.skip(`[skipped: ${reason}]`, () => {});
    });
  }
}

/** Tests that compile with the real NVRTC library. */
export function describeNvrtc(name: string, body: () => void): void {
  const status = nvrtcStatus();
  tier(name, status.ok, requireNvrtc, status.reason, "TSGC_REQUIRE_NVRTC=1", body);
}

/** Tests that need at least `count` CUDA devices. */
export function describeGpus(count: number, name: string, body: () => void): void {
  const have = gpuCount();
  const reason = have >= count ? "" : have === 0 ? (gpuProbe?.reason ?? "no GPU") : `needs ${count} GPUs, found ${have}`;
  tier(name, have >= count, requiredGpus >= count, reason, `TSGC_REQUIRE_GPU=${requiredGpus}`, body);
}

/** Tests that need one CUDA device. */
export function describeGpu(name: string, body: () => void): void {
  describeGpus(1, name, body);
}

function newestMtime(dir: string, extension: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name.endsWith(extension) && statSync(path).isFile()) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * A file: URL of the compiled (dist/) form of a source module, for child processes and workers,
 * which cannot load TypeScript. Throws when dist/ is missing or older than the sources next to the
 * module (`npm test` builds first; a bare `vitest` run may need `npm run build`).
 */
export function builtModuleUrl(sourcePath: string): string {
  const rel = relative(REPO_ROOT, join(REPO_ROOT, sourcePath)).replace(/\.ts$/, ".js");
  const built = join(REPO_ROOT, "dist", rel);
  if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
  const sourceDir = dirname(join(REPO_ROOT, sourcePath));
  if (newestMtime(sourceDir, ".ts") > newestMtime(dirname(built), ".js")) {
    throw new Error(`dist/ is older than ${relative(REPO_ROOT, sourceDir)}/*.ts: run \`npm run build\` first`);
  }
  return pathToFileURL(built).href;
}
