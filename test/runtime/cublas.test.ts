// cuBLAS, the benchmarks' dense bf16 GEMM ceiling, is optional. Pure tier: the addon loads without
// libcublas and every cuBLAS call names it, the paths tried and TSGC_CUBLAS_LIBRARY; a stub libcublas
// (compiled here when a C compiler is present) shows what the binding passes to cublasGemmEx and how
// it reports statuses; the row-major C = A·Bᵀ mapping is checked against a host column-major GEMM.
// Library cases run in child processes, since a library that loaded stays loaded for the process
// (vitest's forks pool gives this file its own process, and nothing in it loads cuBLAS in-process
// before the GPU tier). GPU tier: small GEMMs against a float64 reference, and an 8192³ GEMM timed
// with CUDA events (the rate is printed, not asserted).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cublas, cublasAvailable, cublasLibraryPath, rowMajorABt, type GemmBf16 } from "../../runtime/cublas.js";
import { Device, type DevicePointer } from "../../runtime/cuda.js";
import { addonPath, errorCode, native } from "../../runtime/native.js";
import { describeGpu, requiredGpus } from "../tiers.js";
import { bf16ToF32, randomFloats, toBf16 } from "./kernels.js";

interface Outcome {
  code?: string;
  message?: string;
  value?: unknown;
  stderr: string;
}

/** Runs `body` (statements ending in `return`, with `addon` bound) in a fresh node process with `env`. */
function runInChild(body: string, env: Record<string, string>): Outcome & { status: number | null } {
  const script = `
    const addon = require(${JSON.stringify(addonPath())});
    let outcome;
    try { outcome = { value: (() => { ${body} })() }; } catch (err) { outcome = { code: err.code, message: err.message }; }
    process.stdout.write(JSON.stringify(outcome, (k, v) => typeof v === "bigint" ? String(v) : v));
  `;
  const result = spawnSync(process.execPath, ["-e", script], { env: { ...process.env, ...env }, encoding: "utf8" });
  const parsed = result.status === 0 ? (JSON.parse(result.stdout) as Omit<Outcome, "stderr">) : { message: result.stderr };
  return { ...parsed, stderr: result.stderr, status: result.status };
}

function inChild(body: string, env: Record<string, string>): Outcome {
  const outcome = runInChild(body, env);
  expect(outcome.status, outcome.stderr).toBe(0);
  return outcome;
}

const CUBLAS = "libcublas (NVIDIA's dense linear algebra library) could not be loaded";
const SONAMES = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"];

describe("cuBLAS without the library", () => {
  const missing = { TSGC_CUBLAS_LIBRARY: "/nonexistent/libcublas.so.13" };

  it("loads the addon without touching cuBLAS", () => {
    expect(inChild("return [addon.abiVersion, typeof addon.cublasGemmBf16]", missing).value).toEqual([1, "function"]);
  });

  it("every cuBLAS call names libcublas, the path tried and TSGC_CUBLAS_LIBRARY", () => {
    const calls = [
      "cublasLibraryPath()", "cublasCreate()", "cublasDestroy(1n)", "cublasSetStream(1n, 0n)", "cublasVersion(1n)",
      "cublasGemmBf16(1n, 64, 48, 80, 16n, 32n, 48n, 64, 80, 64, false, false)",
    ];
    for (const call of calls) {
      const out = inChild(`return addon.${call}`, missing);
      expect(out.code, call).toBe("TSGC_LIBRARY_NOT_FOUND");
      expect(out.message).toContain(CUBLAS);
      expect(out.message).toContain("/nonexistent/libcublas.so.13 (from TSGC_CUBLAS_LIBRARY)");
      expect(out.message).toContain("Set TSGC_CUBLAS_LIBRARY to the library's full path");
      expect(out.message).toContain("nvidia-cublas Python wheel (under nvidia/cublas/lib");
    }
  });

  it("without the variable, searches every soname and the toolkit directory (or finds one)", () => {
    const out = inChild("return addon.cublasLibraryPath()", { TSGC_CUBLAS_LIBRARY: "" });
    if (typeof out.value === "string") {
      expect(out.value).toMatch(/libcublas\.so/);
    } else {
      expect(out.code).toBe("TSGC_LIBRARY_NOT_FOUND");
      for (const soname of SONAMES) {
        expect(out.message).toContain(`\n  ${soname}: `);
        expect(out.message).toContain(`\n  /usr/local/cuda/lib64/${soname}: `);
      }
    }
  });

  it("names the missing symbol when the library is the wrong one", () => {
    const out = inChild("return addon.cublasCreate()", { TSGC_CUBLAS_LIBRARY: "libc.so.6" });
    expect(out.code).toBe("TSGC_SYMBOL_NOT_FOUND");
    expect(out.message).toBe("symbol cublasCreate_v2 not found in libc.so.6 (is this the right library, and recent enough?)");
  });

  it("Cublas.open names the library before it touches the device; cublasAvailable() says false", () => {
    const saved = process.env["TSGC_CUBLAS_LIBRARY"];
    process.env["TSGC_CUBLAS_LIBRARY"] = missing.TSGC_CUBLAS_LIBRARY;
    try {
      const untouchable = new Proxy({}, {
        get(): never {
          throw new Error("Cublas.open touched the device before loading cuBLAS");
        },
      }) as unknown as Device;
      let caught: unknown;
      try {
        Cublas.open(untouchable);
      } catch (err) {
        caught = err;
      }
      expect(errorCode(caught)).toBe("TSGC_LIBRARY_NOT_FOUND");
      expect(String(caught)).toContain(CUBLAS);
      expect(String(caught)).toContain("/nonexistent/libcublas.so.13 (from TSGC_CUBLAS_LIBRARY)");
      expect(cublasAvailable()).toBe(false);
      expect(() => cublasLibraryPath()).toThrow(CUBLAS);
    } finally {
      if (saved === undefined) delete process.env["TSGC_CUBLAS_LIBRARY"];
      else process.env["TSGC_CUBLAS_LIBRARY"] = saved;
    }
  });
});

// A libcublas that records what it is called with. It has cublasGetStatusString but no
// cublasGetStatusName, so statuses are named from the binding's own table.
const STUB_CUBLAS = String.raw`
#include <stdio.h>
typedef struct stub_context* handle_t;
static int the_context;
int cublasCreate_v2(handle_t* h) { *h = (handle_t)&the_context; return 0; }
int cublasDestroy_v2(handle_t h) { fprintf(stderr, "destroy %d\n", h == (handle_t)&the_context); return 0; }
int cublasSetStream_v2(handle_t h, void* s) { fprintf(stderr, "stream %llx\n", (unsigned long long)s); return 0; }
int cublasGetVersion_v2(handle_t h, int* v) { *v = 130102; return 0; }
const char* cublasGetStatusString(int s) { return s == 7 ? "an invalid value (stub)" : "unknown (stub)"; }
int cublasGemmEx(handle_t h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda,
                 const void* b, int bt, int ldb, const void* beta, void* c, int ct, int ldc, int compute, int algo) {
  fprintf(stderr, "gemm ta %d tb %d m %d n %d k %d alpha %g A %llx %d lda %d B %llx %d ldb %d beta %g C %llx %d ldc %d compute %d algo %d\n",
          ta, tb, m, n, k, *(const float*)alpha, (unsigned long long)a, at, lda, (unsigned long long)b, bt, ldb,
          *(const float*)beta, (unsigned long long)c, ct, ldc, compute, algo);
  return m == 13 ? 7 : m == 99 ? 99 : 0;
}
`;

function compileStub(): { path: string; dir: string } | string {
  const probe = spawnSync("cc", ["--version"], { encoding: "utf8" });
  if (probe.status !== 0) return "no C compiler (cc) to build the stub libcublas";
  const dir = mkdtempSync(join(tmpdir(), "tsgc-cublas-stub-"));
  writeFileSync(join(dir, "stub.c"), STUB_CUBLAS);
  const path = join(dir, "libcublas.so.13");
  const built = spawnSync("cc", ["-shared", "-fPIC", "-o", path, join(dir, "stub.c")], { encoding: "utf8" });
  if (built.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `the stub libcublas did not compile: ${built.stderr}`;
  }
  return { path, dir };
}

describe("cuBLAS binding against a stub library", () => {
  const stub = compileStub();
  if (typeof stub === "string") {
    it.skip(`[skipped: ${stub}]`, () => {});
    return;
  }
  afterAll(() => rmSync(stub.dir, { recursive: true, force: true }));
  const env = { TSGC_CUBLAS_LIBRARY: stub.path };

  it("passes bf16 types, f32 compute, alpha 1, beta 0 and the default algorithm to cublasGemmEx", () => {
    const out = inChild(`
      const h = addon.cublasCreate();
      addon.cublasSetStream(h, 0xabc0n);
      addon.cublasGemmBf16(h, 48, 64, 80, 0x1000n, 0x2000n, 0x3000n, 80, 81, 50, true, false);
      addon.cublasGemmBf16(h, 8, 16, 32, 0x4000n, 0x5000n, 0x6000n, 8, 16, 8, false, true);
      const version = addon.cublasVersion(h);
      addon.cublasDestroy(h);
      return [addon.cublasLibraryPath(), version];
    `, env);
    expect(out.value).toEqual([stub.path, 130102]);
    expect(out.stderr.trim().split("\n")).toEqual([
      "stream abc0",
      "gemm ta 1 tb 0 m 48 n 64 k 80 alpha 1 A 1000 14 lda 80 B 2000 14 ldb 81 beta 0 C 3000 14 ldc 50 compute 68 algo -1",
      "gemm ta 0 tb 1 m 8 n 16 k 32 alpha 1 A 4000 14 lda 8 B 5000 14 ldb 16 beta 0 C 6000 14 ldc 8 compute 68 algo -1",
      "destroy 1",
    ]);
  });

  it("reports a failed status by its enum name, with the call, the shape and cuBLAS's description", () => {
    const out = inChild("return addon.cublasGemmBf16(addon.cublasCreate(), 13, 5, 7, 16n, 32n, 48n, 13, 7, 13, false, false)", env);
    expect(out.code).toBe("CUBLAS_STATUS_INVALID_VALUE");
    expect(out.message).toBe(
      "CUBLAS_STATUS_INVALID_VALUE: cublasGemmEx (bf16, m 13, n 5, k 7, op(A) N, op(B) N, lda 13, ldb 7, ldc 13) (an invalid value (stub))",
    );
    const unknown = inChild("return addon.cublasGemmBf16(addon.cublasCreate(), 99, 5, 7, 16n, 32n, 48n, 99, 7, 99, false, false)", env);
    expect(unknown.code).toBe("CUBLAS_STATUS_99");
  });

  it("rejects a null handle and dimensions outside cuBLAS's int before calling it", () => {
    const nullHandle = inChild("return addon.cublasGemmBf16(0n, 8, 8, 8, 16n, 32n, 48n, 8, 8, 8, false, false)", env);
    expect(nullHandle.code).toBe("TSGC_INVALID_ARGUMENT");
    expect(nullHandle.message).toBe("expected a cuBLAS handle, got a null one");
    for (const [m, shown] of [["-1", "-1"], ["2.5", "2.5"], ["2 ** 31", "2147483648"]] as const) {
      const out = inChild(`return addon.cublasGemmBf16(addon.cublasCreate(), ${m}, 8, 8, 16n, 32n, 48n, 8, 8, 8, false, false)`, env);
      expect(out.code, m).toBe("TSGC_INVALID_ARGUMENT");
      expect(out.message).toBe(`cublasGemmBf16: m must be an integer in [0, 2^31), got ${shown}`);
      expect(out.stderr, m).not.toContain("gemm");
    }
  });
});

/** cuBLAS's semantics on the host in float64: column-major C = op(A)·op(B), with Σ|terms| per entry for error bounds. */
function referenceGemm(g: GemmBf16, a: ArrayLike<number>, b: ArrayLike<number>): { value: Float64Array; magnitude: Float64Array; ldc: number } {
  const { m, n, k } = g;
  const transA = g.transA ?? false, transB = g.transB ?? false;
  const lda = g.lda ?? (transA ? k : m), ldb = g.ldb ?? (transB ? n : k), ldc = g.ldc ?? m;
  const value = new Float64Array(ldc * n);
  const magnitude = new Float64Array(ldc * n);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < m; i++) {
      let sum = 0, abs = 0;
      for (let p = 0; p < k; p++) {
        const x = (transA ? a[p + i * lda] : a[i + p * lda]) ?? NaN;
        const y = (transB ? b[j + p * ldb] : b[p + j * ldb]) ?? NaN;
        sum += x * y;
        abs += Math.abs(x * y);
      }
      value[i + j * ldc] = sum;
      magnitude[i + j * ldc] = abs;
    }
  }
  return { value, magnitude, ldc };
}

describe("row-major C = A·Bᵀ as one column-major GEMM", () => {
  it("rowMajorABt's arguments, run with cuBLAS's semantics, give A·Bᵀ in row-major order", () => {
    const [M, N, K] = [5, 3, 4];
    const a = randomFloats(M * K, 11), b = randomFloats(N * K, 12);
    const buffers = new Map<bigint, Float32Array>([[1n, a], [2n, b]]);
    const gemm = rowMajorABt({ m: M, n: N, k: K, a: 1n, b: 2n, c: 3n });
    expect(gemm).toEqual({ m: N, n: M, k: K, a: 2n, b: 1n, c: 3n, transA: true, transB: false, lda: K, ldb: K, ldc: N });
    const { value } = referenceGemm(gemm, buffers.get(gemm.a as bigint) ?? [], buffers.get(gemm.b as bigint) ?? []);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let want = 0;
        for (let p = 0; p < K; p++) want += (a[i * K + p] ?? NaN) * (b[j * K + p] ?? NaN);
        expect(value[i * N + j], `C[${i}, ${j}]`).toBeCloseTo(want, 12);
      }
    }
  });
});

/** Whether this host has cuBLAS, asked in a child process so this one stays unloaded until the GPU tier. */
function cublasProbe(): { ok: boolean; reason: string } {
  const out = runInChild("return addon.cublasLibraryPath()", {});
  if (typeof out.value === "string") return { ok: true, reason: out.value };
  return { ok: false, reason: (out.message ?? "cuBLAS probe failed").split("\n")[0] ?? "" };
}

interface DeviceBuffer extends DevicePointer {
  free(): void;
}

const POISON = 0xffff; // a bf16 NaN

describeGpu("cuBLAS bf16 GEMM on a GPU", () => {
  const probe = cublasProbe();
  if (!probe.ok && requiredGpus === 0) {
    it.skip(`[skipped: ${probe.reason}]`, () => {});
    return;
  }
  let device: Device;
  let cublas: Cublas;
  const buffers: DeviceBuffer[] = [];

  beforeAll(() => {
    device = Device.open(0);
    cublas = Cublas.open(device);
  });

  afterAll(() => {
    for (const buffer of buffers) buffer.free();
    cublas.dispose();
  });

  function alloc(bytes: number): DeviceBuffer {
    device.makeCurrent();
    const pointer = native().memAlloc(bytes);
    const buffer: DeviceBuffer = {
      pointer,
      bytes,
      free: () => {
        device.makeCurrent();
        native().memFree(pointer);
      },
    };
    buffers.push(buffer);
    return buffer;
  }

  function upload(values: Uint16Array): DeviceBuffer {
    const buffer = alloc(values.byteLength);
    native().memcpyHtoD(buffer.pointer, values);
    return buffer;
  }

  function poisoned(elements: number): DeviceBuffer {
    return upload(new Uint16Array(elements).fill(POISON));
  }

  function download(buffer: DevicePointer): Uint16Array {
    device.synchronize();
    const out = new Uint16Array(buffer.bytes / 2);
    native().memcpyDtoH(out, buffer.pointer);
    return out;
  }

  /** Entries off by more than bf16 rounding (2^-8 relative) plus f32 accumulation slack. */
  function mismatches(got: Uint16Array, want: ReturnType<typeof referenceGemm>, m: number, n: number): string[] {
    const bad: string[] = [];
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < m; i++) {
        const at = i + j * want.ldc;
        const value = bf16ToF32(got[at] ?? POISON);
        const ref = want.value[at] ?? NaN;
        const tolerance = Math.abs(ref) * 2 ** -8 + (want.magnitude[at] ?? 0) * 2 ** -12;
        if (!(Math.abs(value - ref) <= tolerance)) bad.push(`(${i}, ${j}): ${value}, want ${ref} ± ${tolerance}`);
      }
    }
    return bad.slice(0, 5);
  }

  it("reports its version and library", () => {
    const version = cublas.version();
    console.log(`cuBLAS ${Math.floor(version / 10000)}.${Math.floor(version / 100) % 100}.${version % 100} (${cublasLibraryPath()})`);
    expect(version).toBeGreaterThanOrEqual(110000);
    expect(cublasAvailable()).toBe(true);
  });

  it("row-major C = A·Bᵀ (64×48×80) matches a float64 reference; every output written", () => {
    const [M, N, K] = [64, 48, 80];
    const a = toBf16(randomFloats(M * K, 1)), b = toBf16(randomFloats(N * K, 2));
    const c = poisoned(M * N);
    cublas.matmulABt({ m: M, n: N, k: K, a: upload(a), b: upload(b), c });
    const got = download(c);
    // Row-major C[M, N] is column-major Cᵀ: the reference of the GEMM rowMajorABt issues, read back the same way.
    const gemm = rowMajorABt({ m: M, n: N, k: K, a: 0n, b: 0n, c: 0n });
    const want = referenceGemm(gemm, Array.from(b, bf16ToF32), Array.from(a, bf16ToF32));
    expect(mismatches(got, want, gemm.m, gemm.n)).toEqual([]);
  });

  it("column-major op(A)·op(B)ᵀ with padded leading dimensions leaves the padding alone", () => {
    const gemm = { m: 40, n: 24, k: 72, transA: false, transB: true, lda: 41, ldb: 26, ldc: 43 };
    const a = toBf16(randomFloats(gemm.lda * gemm.k, 3)), b = toBf16(randomFloats(gemm.ldb * gemm.k, 4));
    const c = poisoned(gemm.ldc * gemm.n);
    cublas.gemmBf16({ ...gemm, a: upload(a), b: upload(b), c });
    const got = download(c);
    expect(mismatches(got, referenceGemm({ ...gemm, a: 0n, b: 0n, c: 0n }, Array.from(a, bf16ToF32), Array.from(b, bf16ToF32)), gemm.m, gemm.n)).toEqual([]);
    const touched: string[] = [];
    for (let j = 0; j < gemm.n; j++) {
      for (let i = gemm.m; i < gemm.ldc; i++) if (got[i + j * gemm.ldc] !== POISON) touched.push(`(${i}, ${j})`);
    }
    expect(touched).toEqual([]);
  });

  it("checks shapes and buffer sizes before calling cuBLAS, and reports cuBLAS's own refusals by status name", () => {
    const a = poisoned(64 * 80), b = poisoned(80 * 48), c = poisoned(64 * 48);
    expect(() => cublas.gemmBf16({ m: 64, n: 48, k: 80, a: { pointer: a.pointer, bytes: 100 }, b, c })).toThrow(
      "A is 64×80 with ld 64 (10240 bytes of bf16) but its buffer is 100 bytes",
    );
    expect(() => cublas.gemmBf16({ m: 64, n: 48, k: 80, a, b, c, lda: 63 })).toThrow("lda must be an integer in [64, 2^31), got 63");
    let caught: unknown;
    try {
      native().cublasGemmBf16(cublas.handle, 64, 48, 80, a.pointer, b.pointer, c.pointer, 1, 80, 64, false, false);
    } catch (err) {
      caught = err;
    }
    expect(errorCode(caught)).toBe("CUBLAS_STATUS_INVALID_VALUE");
    expect(String(caught)).toContain("CUBLAS_STATUS_INVALID_VALUE: cublasGemmEx (bf16, m 64, n 48, k 80, op(A) N, op(B) N, lda 1, ldb 80, ldc 64)");
  });

  it("times an 8192³ bf16 GEMM (row-major A·Bᵀ) with CUDA events", () => {
    const [M, N, K] = [8192, 8192, 8192];
    const CHUNK = 1 << 20; // K divides it: row i of a matrix is row (i mod CHUNK/K) of its chunk
    const chunkA = toBf16(randomFloats(CHUNK, 5)), chunkB = toBf16(randomFloats(CHUNK, 6));
    const fill = (chunk: Uint16Array, elements: number): DeviceBuffer => {
      const buffer = alloc(elements * 2);
      for (let at = 0; at < elements; at += CHUNK) native().memcpyHtoD(buffer.pointer + BigInt(at * 2), chunk);
      return buffer;
    };
    const a = fill(chunkA, M * K), b = fill(chunkB, N * K);
    const c = alloc(M * N * 2);
    const stream = device.createStream();
    const start = device.createEvent(), end = device.createEvent();
    try {
      cublas.setStream(stream);
      const gemm = { m: M, n: N, k: K, a, b, c };
      for (let i = 0; i < 3; i++) cublas.matmulABt(gemm); // warm-up: heuristics, workspace, clocks
      const runs = 20;
      start.record(stream);
      for (let i = 0; i < runs; i++) cublas.matmulABt(gemm);
      end.record(stream);
      end.synchronize();
      const ms = end.elapsedMsSince(start) / runs;
      const tflops = (2 * M * N * K) / (ms * 1e-3) / 1e12;
      console.log(
        `cuBLAS bf16 GEMM ${M}×${N}×${K} (row-major A·Bᵀ, f32 accumulation) on ${device.info.name}: ` +
          `${tflops.toFixed(1)} TFLOP/s (${ms.toFixed(3)} ms per GEMM, mean of ${runs}; cuBLAS ${cublas.version()})`,
      );
      // The timed GEMMs computed something: spot-check a few entries against the host.
      const got = download(c);
      const rowsPerChunk = CHUNK / K;
      const bad: string[] = [];
      for (const [i, j] of [[0, 0], [1, 8191], [4097, 3], [8191, 8191], [127, 128], [5000, 6000]] as const) {
        let ref = 0, magnitude = 0;
        for (let p = 0; p < K; p++) {
          const x = bf16ToF32(chunkA[(i % rowsPerChunk) * K + p] ?? POISON);
          const y = bf16ToF32(chunkB[(j % rowsPerChunk) * K + p] ?? POISON);
          ref += x * y;
          magnitude += Math.abs(x * y);
        }
        const value = bf16ToF32(got[i * N + j] ?? POISON);
        const tolerance = Math.abs(ref) * 2 ** -8 + magnitude * 2 ** -12;
        if (!(Math.abs(value - ref) <= tolerance)) bad.push(`C[${i}, ${j}] = ${value}, want ${ref} ± ${tolerance}`);
      }
      expect(bad).toEqual([]);
      expect(Number.isFinite(tflops) && tflops > 0).toBe(true);
    } finally {
      cublas.setStream(device.stream);
      start.dispose();
      end.dispose();
      stream.dispose();
      for (const buffer of [a, b, c]) {
        buffer.free();
        buffers.splice(buffers.indexOf(buffer), 1);
      }
    }
  }, 120_000);
});
