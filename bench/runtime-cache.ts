// Kernel cache benchmark: 50 distinct kernels compiled cold (serial, on worker threads, in child
// processes), then served from disk (in this process and in a fresh one) and from the memo.
// Target (issue 3): loading 50 cached kernels under 50 ms.
//   npm run build && node dist/bench/runtime-cache.js
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { clearKernelMemo, compileKernels, KernelCache, type KernelSource } from "../runtime/kernel-cache.js";
import { nvrtcVersion } from "../runtime/nvrtc.js";

const KERNELS = 50;
const ARCH = "sm_90";

/** A generated-kernel-sized source: bf16 RMSNorm with a warp+block reduction, one hidden size each. */
function rmsnormKernel(i: number): KernelSource {
  const hidden = 512 + 64 * i;
  const name = `rmsnorm_bf16_h${hidden}`;
  return {
    name,
    entry: name,
    source: `
typedef unsigned short bf16_t;
__device__ __forceinline__ float bf16_to_f32(bf16_t v) { return __uint_as_float(((unsigned)v) << 16); }
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (bf16_t)(u >> 16);
}
// out[t, :] = w * x[t, :] * rsqrt(mean(x[t, :]^2) + eps); one block of 256 threads per token.
extern "C" __global__ void __launch_bounds__(256) ${name}(bf16_t* out, const bf16_t* x, const bf16_t* w, int tokens) {
  const int t = blockIdx.x;
  if (t >= tokens) return;
  const bf16_t* row = x + (long long)t * ${hidden};
  float sum = 0.f;
  for (int i = threadIdx.x; i < ${hidden}; i += 256) { float v = bf16_to_f32(row[i]); sum += v * v; }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  __shared__ float partial[8];
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float s = threadIdx.x < 8 ? partial[threadIdx.x] : 0.f;
    for (int o = 4; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) partial[0] = rsqrtf(s / ${hidden}.0f + 1e-5f);
  }
  __syncthreads();
  const float scale = partial[0];
  for (int i = threadIdx.x; i < ${hidden}; i += 256)
    out[(long long)t * ${hidden} + i] = f32_to_bf16(bf16_to_f32(w[i]) * bf16_to_f32(row[i]) * scale);
}
`,
  };
}

async function timed<T>(body: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const result = await body();
  return [result, performance.now() - start];
}

const specs = Array.from({ length: KERNELS }, (_, i) => rmsnormKernel(i));
const serialDir = mkdtempSync(join(tmpdir(), "tsgc-bench-serial-"));
const threadsDir = mkdtempSync(join(tmpdir(), "tsgc-bench-threads-"));
const parallelDir = mkdtempSync(join(tmpdir(), "tsgc-bench-parallel-"));
const parallelism = availableParallelism();
try {
  const version = nvrtcVersion();
  const [serial, serialMs] = await timed(() => compileKernels(specs, { arch: ARCH, cache: serialDir, parallelism: 1 }));
  clearKernelMemo();
  const [threads, threadsMs] = await timed(() => compileKernels(specs, { arch: ARCH, cache: threadsDir, parallelism, pool: "threads" }));
  clearKernelMemo();
  const [parallel, parallelMs] = await timed(() => compileKernels(specs, { arch: ARCH, cache: parallelDir, parallelism, pool: "processes" }));
  if ([serial, threads, parallel].some((r) => r.compiles !== KERNELS)) throw new Error("expected every kernel to compile cold");

  clearKernelMemo();
  const [disk, diskMs] = await timed(() => compileKernels(specs, { arch: ARCH, cache: parallelDir }));
  const [, memoMs] = await timed(() => compileKernels(specs, { arch: ARCH, cache: parallelDir }));
  if (disk.hits !== KERNELS) throw new Error("expected 50 disk hits");

  // A fresh process: module import, NVRTC dlopen (for its version), 50 reads + checksums.
  const moduleUrl = pathToFileURL(join(import.meta.dirname, "..", "runtime", "kernel-cache.js")).href;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", `
    const t0 = performance.now();
    const { compileKernels } = await import(${JSON.stringify(moduleUrl)});
    const t1 = performance.now();
    const r = await compileKernels(JSON.parse(process.argv[1]), { arch: ${JSON.stringify(ARCH)}, cache: ${JSON.stringify(parallelDir)} });
    const t2 = performance.now();
    process.stdout.write(JSON.stringify({ importMs: t1 - t0, loadMs: t2 - t1, hits: r.hits }));
  `, JSON.stringify(specs)], { encoding: "utf8" });
  const fresh = JSON.parse(child.stdout) as { importMs: number; loadMs: number; hits: number };
  if (fresh.hits !== KERNELS) throw new Error(`fresh process: ${child.stderr}`);
  const bytes = new KernelCache(parallelDir).list().reduce((sum, l) => sum + l.bytes, 0);

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  console.log(`runtime-cache: ${KERNELS} distinct bf16 RMSNorm kernels for ${ARCH}, NVRTC ${version.text}, ${cpu} x${parallelism}`);
  console.log(`  cold, serial (1 thread):          ${(serialMs / 1000).toFixed(2)} s  (${(serialMs / KERNELS).toFixed(0)} ms/kernel)`);
  console.log(`  cold, ${parallelism} worker threads:        ${(threadsMs / 1000).toFixed(2)} s  (${(serialMs / threadsMs).toFixed(2)}x)`);
  console.log(`  cold, ${parallelism} child processes:       ${(parallelMs / 1000).toFixed(2)} s  (${(serialMs / parallelMs).toFixed(2)}x)`);
  console.log(`  disk hit, same process:           ${diskMs.toFixed(1)} ms  (${(bytes / KERNELS / 1024).toFixed(1)} KiB/entry)`);
  console.log(`  disk hit, fresh process:          ${fresh.loadMs.toFixed(1)} ms  (+ ${fresh.importMs.toFixed(1)} ms module import)`);
  console.log(`  memo hit:                         ${memoMs.toFixed(2)} ms`);
  console.log(`  target: 50 cached kernels < 50 ms: ${Math.max(diskMs, fresh.loadMs) < 50 ? "met" : "MISSED"}`);
} finally {
  rmSync(serialDir, { recursive: true, force: true });
  rmSync(threadsDir, { recursive: true, force: true });
  rmSync(parallelDir, { recursive: true, force: true });
}
