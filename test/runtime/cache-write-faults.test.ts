// Cache writes that fail under a parallel compile: a full disk is a clear one-line error naming the cache,
// after the other kernels finished; a `cache clear` that removes the directory between a writer's mkdir and
// its write is survived. Never an abort. The faults are injected into node:fs for paths under one directory
// (a real full file system needs root to mount, and a real race is not reproducible on demand).
import { dirname, join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, expect, it } from "vitest";
import { vi } from "vitest";
import { clearKernelMemo, compileKernels, KernelCache, type KernelSource } from "../../runtime/kernel-cache.js";
import { describeNvrtc } from "../tiers.js";

const faults = vi.hoisted(() => ({ fullUnder: "\0unset", racesUnder: "\0unset", racesLeft: 0, raced: new Set<string>() }));

vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const writeFileSync: typeof fs.writeFileSync = (file, data, options) => {
    const path = String(file);
    if (path.startsWith(faults.fullUnder)) {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" });
    }
    const entry = path.slice(0, path.indexOf(".tmp-"));
    if (path.startsWith(faults.racesUnder) && path.includes(".tmp-") && faults.racesLeft > 0 && !faults.raced.has(entry)) {
      faults.racesLeft--;
      faults.raced.add(entry); // one race per entry: its retry then finds the directory made again
      fs.rmSync(dirname(path), { recursive: true, force: true }); // `tsgc cache clear` ran just now
    }
    fs.writeFileSync(file, data, options);
  };
  return { ...fs, default: { ...fs, writeFileSync }, writeFileSync };
});

const dir = mkdtempSync(join(tmpdir(), "tsgc-write-faults-"));
faults.fullUnder = join(dir, "full");
faults.racesUnder = join(dir, "race");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kernel = (i: number): KernelSource => ({ name: `fault_${i}`, entry: `fault_${i}`, source: `extern "C" __global__ void fault_${i}(float* y) { y[threadIdx.x] += ${i}.0f; }` });

describeNvrtc("cache write faults during a parallel compile", () => {
  it("a full disk is a clear error naming the cache, not an abort", async () => {
    clearKernelMemo();
    const cache = join(dir, "full", "cache");
    await expect(compileKernels([kernel(1), kernel(2), kernel(3)], { arch: "sm_80", cache, parallelism: 2 })).rejects.toThrow(
      `tsgc: no space left on the device of the kernel cache ${cache}`,
    );
  });

  it("a cache clear between a writer's mkdir and its write is survived: the entry is written again", async () => {
    clearKernelMemo();
    const cache = join(dir, "race", "cache");
    faults.racesLeft = 1; // the first write, before any entry exists: afterwards every entry must be there
    const warnings: string[] = [];
    const spy = vi.spyOn(process, "emitWarning").mockImplementation((w: string | Error) => void warnings.push(String(w)));
    try {
      const result = await compileKernels([kernel(4), kernel(5), kernel(6)], { arch: "sm_80", cache, parallelism: 2 });
      expect(result.compiles).toBe(3);
    } finally {
      spy.mockRestore();
    }
    expect(faults.racesLeft).toBe(0);
    expect(warnings).toEqual([]);
    expect(new KernelCache(cache).list().filter((l) => l.problem === undefined)).toHaveLength(3);
  });
});
