// A full disk under the kernel cache: a clear one-line error naming the cache, after the other kernels
// finished; never an abort. The disk is simulated by making writes under one directory fail with ENOSPC
// (a real full file system needs root to mount; see the reproduction).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it, vi } from "vitest";
import { clearKernelMemo, compileKernels, type KernelSource } from "../../runtime/kernel-cache.js";
import { describeNvrtc } from "../tiers.js";

const full = vi.hoisted(() => ({ prefix: "\0unset" }));

vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const writeFileSync: typeof fs.writeFileSync = (file, data, options) => {
    if (String(file).startsWith(full.prefix)) {
      throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: "ENOSPC", errno: -28, syscall: "write" });
    }
    fs.writeFileSync(file, data, options);
  };
  return { ...fs, default: { ...fs, writeFileSync }, writeFileSync };
});

const dir = mkdtempSync(join(tmpdir(), "tsgc-full-disk-"));
full.prefix = dir;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kernel = (i: number): KernelSource => ({ name: `full_${i}`, entry: `full_${i}`, source: `extern "C" __global__ void full_${i}(float* y) { y[threadIdx.x] += ${i}.0f; }` });

describeNvrtc("a full disk under the kernel cache", () => {
  it("is a clear error naming the cache after every kernel compiled, not an abort", async () => {
    clearKernelMemo();
    const cache = join(dir, "cache");
    await expect(compileKernels([kernel(1), kernel(2), kernel(3)], { arch: "sm_80", cache, parallelism: 2 })).rejects.toThrow(
      `tsgc: no space left on the device of the kernel cache ${cache}`,
    );
  });
});
