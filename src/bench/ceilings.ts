// The card's ceilings, measured in the same run as a benchmark (DESIGN.md, "Performance method"): every figure a
// benchmark reports is a ratio to a floor built from these, never from a datasheet.
//   copy     a device-to-device copy of 2 GiB, counting bytes read plus bytes written
//   read     a streaming read of 2 GiB (16-byte loads, a sum per block so nothing is optimized away): the rate a
//            decode step, which mostly reads weights, can reach
//   bf16     an 8192³ bf16 matrix product with f32 accumulation: cuBLAS where the library is found (the card's rate),
//            else tsgc's own tensor-core GEMM (then the ceiling is tsgc's, and the report says so)
// Each is the median of several timed repetitions after a warm-up, with CUDA events.

import { DEFAULT_GEMM_TILE, matmulLaunch } from "../codegen/matmul.js";
import { evalSize } from "../lower/kernel.js";
import { Arena, type Device, loadKernels } from "../../runtime/index.js";
import { Cublas, cublasAvailable } from "../../runtime/cublas.js";

export interface Ceilings {
  /** Bytes per second of a device-to-device copy, read + write. */
  readonly copyBytesPerS: number;
  /** Bytes per second of a streaming read. */
  readonly readBytesPerS: number;
  /** Dense bf16 FLOP per second. */
  readonly bf16FlopPerS: number;
  /** What measured the bf16 rate. */
  readonly bf16Source: "cublas" | "tsgc-gemm";
}

const READ_SOURCE = `
extern "C" __global__ void __launch_bounds__(256) read_sum(const uint4* __restrict__ p, unsigned long long n, unsigned int* __restrict__ out) {
  unsigned int acc = 0u;
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;  // practically never: keeps the loads
}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median ms of `body` queued on `stream` between events, after one warm-up. */
function timeOnStream(device: Device, body: (stream: ReturnType<Device["createStream"]>) => void, reps: number): number {
  const stream = device.createStream();
  const [start, stop] = [device.createEvent(), device.createEvent()];
  try {
    body(stream);
    stream.synchronize();
    const ms: number[] = [];
    for (let r = 0; r < reps; r++) {
      start.record(stream);
      body(stream);
      stop.record(stream);
      stop.synchronize();
      ms.push(stop.elapsedMsSince(start));
    }
    return median(ms);
  } finally {
    start.dispose();
    stop.dispose();
    stream.dispose();
  }
}

export async function measureCeilings(device: Device): Promise<Ceilings> {
  const bytes = 2 ** 31;
  const arena = Arena.allocate(device, 2 * bytes + (1 << 20));
  try {
    const a = arena.view(0, bytes);
    const b = arena.view(bytes, bytes);
    a.fill(0x3c);
    const copyMs = timeOnStream(device, (s) => b.copyFromAsync(a, s), 7);
    const { kernels } = await loadKernels(device, [{ name: "read_sum", source: READ_SOURCE, entry: "read_sum" }]);
    const read = kernels[0]!;
    const blocks = device.info.smCount * 8;
    const readMs = timeOnStream(device, (s) => read.launch({ grid: blocks, block: 256, stream: s, args: [{ ptr: a.pointer }, { i64: BigInt(bytes / 16) }, { ptr: arena.pointer + BigInt(2 * bytes) }] }), 7);
    const n = 8192;
    const flops = 2 * n * n * n;
    const mat = n * n * 2;
    const [A, B, C] = [arena.pointer, arena.pointer + BigInt(mat), arena.pointer + BigInt(2 * mat)];
    let bf16Ms: number;
    let bf16Source: Ceilings["bf16Source"];
    if (cublasAvailable()) {
      const blas = Cublas.open(device);
      try {
        bf16Ms = timeOnStream(device, (s) => {
          blas.setStream(s);
          blas.matmulABt({ m: n, n, k: n, a: A, b: B, c: C });
        }, 7);
      } finally {
        blas.dispose();
      }
      bf16Source = "cublas";
    } else {
      // tsgc's own tensor-core GEMM: C [n, n] = A [n, n] · B [n, n]ᵀ
      const launch = matmulLaunch({ dtype: "bf16", rows: [n], batch: [], n, k: n, transposeB: true, bShared: true, bFormat: "dense" }, "gemm-mma", "gemm.cu.njk", "gemm", {}, DEFAULT_GEMM_TILE);
      const { kernels: [gemm] } = await loadKernels(device, [{ name: launch.kernel.name, source: launch.kernel.source, entry: launch.kernel.entry }]);
      if (launch.sharedBytes > 48 * 1024) gemm!.setMaxDynamicSharedBytes(launch.sharedBytes);
      const grid = launch.grid.map((g) => evalSize(g, {})) as [number, number, number];
      const args = [{ ptr: A }, { ptr: B }, { ptr: C }, { i32: n }, { i32: n }, { i32: n }];
      bf16Ms = timeOnStream(device, (s) => gemm!.launch({ grid, block: launch.block, sharedBytes: launch.sharedBytes, stream: s, args }), 5);
      bf16Source = "tsgc-gemm";
    }
    return { copyBytesPerS: (2 * bytes) / (copyMs / 1e3), readBytesPerS: bytes / (readMs / 1e3), bf16FlopPerS: flops / (bf16Ms / 1e3), bf16Source };
  } finally {
    arena.free();
  }
}
