// Device time of the matmul-family and RMSNorm kernels at gpt-oss-20b sizes, against the two floors:
// bytes / HBM bandwidth (measured here with a device-to-device copy; ~3.0 TB/s on an H100 SXM) and
// FLOPs / tensor throughput (~790 TFLOP/s dense bf16, not measured: no BLAS here).
//   npm run build && node dist/bench/codegen-matmul.js [label filter, e.g. bucket, or comma-separated words]
// Each case is captured R times into one CUDA graph, cycling through enough copies of its operands that
// a replay cannot be served from L2 (50 MiB on an H100); the graph is replayed many times and the median
// per-kernel time is reported (it includes the ~1 µs gap between graph nodes). Cases of one shape get the
// same operands, so the GEMM tile variants are also checked against the default tile's output.
import { Arena } from "../runtime/arena.js";
import { CudaGraph, Device, type Kernel, type KernelArg } from "../runtime/cuda.js";
import { loadKernels } from "../runtime/kernel-cache.js";
import { nvrtcVersion } from "../runtime/nvrtc.js";
import { evalSize, lowerTarget, type NodeKernels } from "../src/lower/kernel.js";
import { DEFAULT_GEMM_TILE, emitMatmul, type GemmTile, gemmTileFor, MAX_SPLIT_K, type MatmulPath } from "../src/codegen/matmul.js";
import { emitMxfp4Matmul } from "../src/codegen/mxfp4-matmul.js";
import { emitFusedRmsNorm, emitResidualRmsNormPair } from "../src/codegen/rmsnorm.js";
import { type DType, dtypeBytes } from "../src/ir/dtype.js";
import { type Node, NodeTable } from "../src/ir/node.js";
import { evalShape, numElements, type SymbolValues } from "../src/ir/shape.js";

const HBM_NOMINAL = 3.0e12;
const TENSOR_NOMINAL = 790e12;
const L2_BYTES = 50 * 2 ** 20;

// Fresh random operands on the device: bf16/f16 in ±[2^-9, 1), f32 likewise, fp4 bytes uniform, scales near 2^-4.
const INIT = String.raw`
__device__ __forceinline__ unsigned hash32(unsigned long long i, unsigned seed) {
  unsigned x = (unsigned)(i ^ (i >> 32)) * 0x9e3779b1u ^ seed;
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}
extern "C" __global__ void init_b16(unsigned short* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const unsigned h = hash32(i, seed);
    p[i] = (unsigned short)((h & 0x8000u) | ((118u + (h >> 16) % 9u) << 7) | (h & 0x7fu));
  }
}
extern "C" __global__ void init_f32(float* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const unsigned h = hash32(i, seed);
    p[i] = __uint_as_float((h & 0x80000000u) | ((118u + (h >> 8) % 9u) << 23) | (h & 0x7fffffu));
  }
}
extern "C" __global__ void init_u8(unsigned char* p, long long n, unsigned seed, int lo, int span) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    p[i] = (unsigned char)(lo + (int)(hash32(i, seed) % (unsigned)span));
  }
}
`;

interface Case {
  readonly label: string;
  readonly node: Node;
  readonly kernels: NodeKernels | NodeKernels;
  readonly symbols: SymbolValues;
  /** Extra result buffers (the pair kernel's sum), bytes. */
  readonly siblingBytes?: number;
  readonly flops: number;
  /** Launches per captured graph. */
  readonly perGraph: number;
}

const table = new NodeTable();
const input = (name: string, dtype: DType, shape: (number | string)[]) =>
  table.make("input", { name, dtype, shape }, []);

function linearCase(label: string, m: number | string, n: number, k: number, symbols: SymbolValues = {}, perGraph = 20, gemmTile?: GemmTile, path?: MatmulPath): Case {
  const node = table.make("matmul", { transposeB: true }, [input("x", "bf16", [m, k]), input("w", "bf16", [n, k])]);
  const rows = typeof m === "number" ? m : symbols[m]!;
  const tile = gemmTile ? ` tile ${gemmTile.rows ?? 128}×${4 * gemmTile.warpN}×${gemmTile.k} s${gemmTile.stages}${(gemmTile.splitK ?? 1) > 1 ? ` split ${gemmTile.splitK}` : ""}${gemmTile.wgmma === true ? " wgmma" : ""}` : "";
  // a symbolic M is planned at its bucket (its value here), as a bucketed plan would
  const opts = { ...(gemmTile ? { gemmTile } : {}), ...(path ? { path } : {}), symbolBounds: symbols };
  return { label: label + tile + (path ? ` ${path}` : ""), node, kernels: emitMatmul(node, opts), symbols, flops: 2 * rows * n * k, perGraph };
}

/**
 * A decode bucket's linear layers on both tensor-core paths: which is faster at each batch size. The GEMM runs with
 * the bucket's tile (gemmTileFor: split K at decode sizes), the previous one (128 rows, no split), and other splits.
 */
function bucketCases(m: number): Case[] {
  const shapes: [string, number, number, number][] = [
    ["q/k/v", 5120, 2880, 20], ["q", 4096, 2880, 20], ["k", 512, 2880, 20], ["o_proj", 2880, 4096, 20], ["lm_head", 201088, 2880, 2],
  ];
  return shapes.flatMap(([name, n, k, perGraph]) => {
    const label = `bucket ${m}: ${name} ${m}×${k} · [${n}, ${k}]ᵀ`;
    const chosen = gemmTileFor({ dtype: "bf16", rows: ["tokens"], batch: [], n, k, transposeB: true, bShared: true, bFormat: "dense" }, "gemm-mma", m);
    const split = chosen.splitK ?? 1;
    const wide: GemmTile[] = [
      DEFAULT_GEMM_TILE, { warpN: 64, k: 32, stages: 4 }, { warpN: 64, k: 64, stages: 3 }, { warpN: 32, k: 32, stages: 4, rows: 64 },
      { warpN: 64, k: 32, stages: 4, rows: 64 }, { warpN: 64, k: 32, stages: 3, rows: 64 }, { warpN: 64, k: 64, stages: 3, rows: 64 },
      { warpN: 64, k: 64, stages: 4, rows: 64 }, { warpN: 32, k: 64, stages: 4, rows: 64 }, { warpN: 64, k: 64, stages: 4 },
    ];
    const others: GemmTile[] = name === "lm_head" ? wide.filter((t) => JSON.stringify(t) !== JSON.stringify(chosen)) : [
      DEFAULT_GEMM_TILE,
      ...[Math.max(2, Math.floor(split / 2)), 2 * split].filter((x) => x !== split && x <= MAX_SPLIT_K).map((x) => ({ ...chosen, splitK: x })),
      ...(m <= 64 ? [{ ...chosen, rows: 128 as const }] : []),
    ];
    // warpgroup MMAs (sm_90a): 128 rows, k 64, the bucket's split
    const wgmma: GemmTile[] = name === "lm_head"
      ? [{ warpN: 64, k: 64, stages: 3, wgmma: true }, { warpN: 32, k: 64, stages: 4, wgmma: true }]
      : [{ warpN: 32, k: 64, stages: 4, wgmma: true }, ...(split > 1 ? [{ warpN: 32, k: 64, stages: 4, wgmma: true, splitK: split } as const] : [])];
    return [
      linearCase(label, "tokens", n, k, { tokens: m }, perGraph, undefined, "gemv-mma"),
      linearCase(label, "tokens", n, k, { tokens: m }, perGraph, undefined, "gemm-mma"),
      ...others.map((t) => linearCase(label, "tokens", n, k, { tokens: m }, perGraph, t, "gemm-mma")),
      ...(wgmmaHere ? wgmma.map((t) => linearCase(label, "tokens", n, k, { tokens: m }, perGraph, t, "gemm-mma")) : []),
    ];
  });
}

const TILES: GemmTile[] = [
  DEFAULT_GEMM_TILE,
  { warpN: 32, k: 32, stages: 3 },
  { warpN: 32, k: 64, stages: 3 },
  { warpN: 64, k: 32, stages: 3 },
  { warpN: 64, k: 32, stages: 4 },
  { warpN: 64, k: 64, stages: 3 },
];
// warpgroup MMAs (sm_90a only)
const WGMMA_TILES: GemmTile[] = [{ warpN: 32, k: 64, stages: 4, wgmma: true }, { warpN: 64, k: 64, stages: 3, wgmma: true }];

function mxfp4Case(label: string, m: number | string, n: number, k: number, symbols: SymbolValues = {}, perGraph = 20): Case {
  const node = table.make("mxfp4Matmul", {}, [input("x", "bf16", [m, k]), input("blocks", "fp4e2m1x2", [n, k / 32, 16]), input("scales", "e8m0", [n, k / 32])]);
  const rows = typeof m === "number" ? m : symbols[m]!;
  return { label, node, kernels: emitMxfp4Matmul(node), symbols, flops: 2 * rows * n * k, perGraph };
}

function normCases(rows: number): Case[] {
  const x = input("h", "bf16", ["tokens", 2880]);
  const r = input("r", "bf16", ["tokens", 2880]);
  const w = input("nw", "bf16", [2880]);
  const normed = table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: true, result: "normed" }, [x, r, w]);
  const sum = table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: true, result: "sum" }, [x, r, w]);
  const plain = table.make("fusedRmsNorm", { eps: 1e-5, hasResidual: false, result: "normed" }, [x, w]);
  const symbols = { tokens: rows };
  return [
    { label: `rmsnorm bf16 ${rows}×2880`, node: plain, kernels: emitFusedRmsNorm(plain), symbols, flops: 0, perGraph: 20 },
    { label: `residual+rmsnorm pair bf16 ${rows}×2880`, node: normed, kernels: emitResidualRmsNormPair(normed, sum), symbols, siblingBytes: rows * 2880 * 2, flops: 0, perGraph: 20 },
  ];
}

const device = Device.open(0);
// the card's target has warpgroup MMA (sm_90a), as a plan's lowering decides it
const wgmmaHere = lowerTarget(device.info.arch).wgmma;
const tilesHere = [...TILES, ...(wgmmaHere ? WGMMA_TILES : [])];
const allCases: Case[] = [
  linearCase("GEMV bf16 1×2880 · [5760, 2880]ᵀ", 1, 5760, 2880),
  linearCase("GEMV bf16 4×2880 · [5760, 2880]ᵀ", 4, 5760, 2880),
  linearCase("GEMV bf16 1×2880 · [201088, 2880]ᵀ (lm_head)", 1, 201088, 2880, {}, 4),
  mxfp4Case("GEMV MXFP4 1×2880 · [5760, 2880]ᵀ", 1, 5760, 2880),
  mxfp4Case("GEMV MXFP4 4×2880 · [5760, 2880]ᵀ", 4, 5760, 2880),
  mxfp4Case("GEMV MXFP4 1×2880 · [2880, 2880]ᵀ", 1, 2880, 2880),
  ...tilesHere.map((t) => linearCase("GEMM bf16 4096×2880 · [2880, 2880]ᵀ", "tokens", 2880, 2880, { tokens: 4096 }, 10, t)),
  ...tilesHere.map((t) => linearCase("GEMM bf16 4096×2880 · [5760, 2880]ᵀ", "tokens", 5760, 2880, { tokens: 4096 }, 10, t)),
  mxfp4Case("GEMM MXFP4 4096×2880 · [5760, 2880]ᵀ", "tokens", 5760, 2880, { tokens: 4096 }, 10),
  ...normCases(1),
  ...normCases(4096),
  ...[16, 32, 64, 128, 256].flatMap(bucketCases),
];
// an optional argument keeps the cases whose label contains one of its comma-separated words (e.g. "bucket", or
// "bucket 64:,bucket 128:")
const only = (process.argv[2] ?? "").split(",").filter((w) => w !== "");
const cases = only.length > 0 ? allCases.filter((c) => only.some((w) => c.label.includes(w))) : allCases;

const stream = device.createStream();
const init = await loadKernels(device, ["init_b16", "init_f32", "init_u8"].map((entry) => ({ name: entry, source: INIT, entry })), { cache: false });
const initKernel = (name: string): Kernel => init.byName.get(name)!;

function fillRandom(ptr: bigint, dtype: string, elements: number, seed: number): void {
  const grid = Math.min(65535, Math.ceil(elements / 256));
  const n = { i64: BigInt(elements) };
  if (dtype === "bf16" || dtype === "f16") initKernel("init_b16").launch({ grid, block: 256, stream, args: [{ ptr }, n, { u32: seed }] });
  else if (dtype === "f32") initKernel("init_f32").launch({ grid, block: 256, stream, args: [{ ptr }, n, { u32: seed }] });
  else if (dtype === "e8m0") initKernel("init_u8").launch({ grid, block: 256, stream, args: [{ ptr }, n, { u32: seed }, { i32: 120 }, { i32: 6 }] });
  else initKernel("init_u8").launch({ grid, block: 256, stream, args: [{ ptr }, n, { u32: seed }, { i32: 0 }, { i32: 256 }] });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const align = (n: number) => Math.ceil(n / 256) * 256;

function timeGraph(graph: CudaGraph, launchesPerReplay: number, replays: number): number {
  const start = device.createEvent(), end = device.createEvent();
  for (let i = 0; i < 3; i++) graph.launch(stream);
  stream.synchronize();
  const times: number[] = [];
  for (let i = 0; i < replays; i++) {
    start.record(stream);
    graph.launch(stream);
    end.record(stream);
    end.synchronize();
    times.push(end.elapsedMsSince(start) / launchesPerReplay);
  }
  start.dispose();
  end.dispose();
  return median(times);
}

// HBM ceiling: a 1 GiB device-to-device copy (bytes read + written).
{
  const bytes = 2 ** 30;
  const arena = Arena.allocate(device, 2 * bytes);
  fillRandom(arena.pointer, "u8", 2 * bytes, 1);
  const src = arena.view(0, bytes), dst = arena.view(bytes, bytes);
  const graph = CudaGraph.capture(stream, () => dst.copyFromAsync(src, stream));
  const ms = timeGraph(graph, 1, 20);
  graph.dispose();
  arena.free();
  console.log(`device-to-device copy of 1 GiB: ${(ms * 1000).toFixed(0)} µs, ${((2 * bytes) / (ms * 1e-3) / 1e12).toFixed(2)} TB/s (read + write)`);
}

/** Output of copy 0 of the first case of each shape, to check later cases of that shape against. */
const firstOutputs = new Map<string, { label: string; values: Float64Array }>();
function bf16Values(bytes: Uint8Array): Float64Array {
  const v = new Float64Array(bytes.length / 2);
  const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, v.length);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < v.length; i++) {
    u[0] = u16[i]! << 16;
    v[i] = f[0]!;
  }
  return v;
}

interface Row {
  label: string;
  us: number;
  bytes: number;
  flops: number;
  kernel: string;
  registers: number;
  localBytes: number;
}
const rows: Row[] = [];

for (const c of cases) {
  const operands = c.node.inputs.map((n) => ({ dtype: n.dtype, elements: numElements(evalShape(n.shape, c.symbols)) }));
  const operandBytes = operands.map((o) => o.elements * dtypeBytes(o.dtype));
  const outBytes = numElements(evalShape(c.node.shape, c.symbols)) * dtypeBytes(c.node.dtype);
  const scratchBytes = c.kernels.scratchBytes.map((e) => evalSize(e, c.symbols));
  const perCopy = [...operandBytes, outBytes, c.siblingBytes ?? 0, ...scratchBytes].map((b) => align(Math.max(b, 1)));
  const copyBytes = perCopy.reduce((a, b) => a + b, 0);
  const moved = operandBytes.reduce((a, b) => a + b, 0) + outBytes + (c.siblingBytes ?? 0);
  const copies = Math.max(1, Math.min(c.perGraph, Math.ceil((2 * L2_BYTES) / copyBytes) + 1));
  const arena = Arena.allocate(device, copies * copyBytes);
  const offsets = (copy: number) => perCopy.map((_, i) => copy * copyBytes + perCopy.slice(0, i).reduce((a, b) => a + b, 0));
  for (let copy = 0; copy < copies; copy++) {
    operands.forEach((o, i) => fillRandom(arena.pointer + BigInt(offsets(copy)[i]!), o.dtype, o.elements, 1000 * copy + i + 7));
  }
  // every launch of the case (a split-K GEMM and its reduce), in order, as one unit
  const launches = c.kernels.launches;
  const loaded = await loadKernels(device, launches.map((l) => ({ name: l.kernel.name, source: l.kernel.source, entry: l.kernel.entry })), { cache: false });
  const kernels = launches.map((l) => loaded.byName.get(l.kernel.name)!);
  launches.forEach((l, i) => l.sharedBytes > 48 * 1024 && kernels[i]!.setMaxDynamicSharedBytes(l.sharedBytes));
  const grids = launches.map((l) => l.grid.map((g) => evalSize(g, c.symbols)) as [number, number, number]);
  const argsFor = (launch: (typeof launches)[number], copy: number): KernelArg[] => {
    const off = offsets(copy);
    const ptr = (i: number): KernelArg => ({ ptr: arena.pointer + BigInt(off[i]!) });
    return launch.args.map((a) => {
      switch (a.kind) {
        case "input": return ptr(a.index);
        case "output": return ptr(operands.length);
        case "sibling": return ptr(operands.length + 1);
        case "i32": return { i32: evalSize(a.value, c.symbols) };
        case "f32": return { f32: a.value };
        case "scratch": return ptr(operands.length + 2 + a.index);
      }
    });
  };
  const argSets = Array.from({ length: copies }, (_, i) => launches.map((l) => argsFor(l, i)));
  stream.synchronize();
  const graph = CudaGraph.capture(stream, () => {
    for (let i = 0; i < c.perGraph; i++) {
      launches.forEach((l, j) => kernels[j]!.launch({ grid: grids[j]!, block: l.block, sharedBytes: l.sharedBytes, stream, args: argSets[i % copies]![j]! }));
    }
  });
  const ms = timeGraph(graph, c.perGraph, c.perGraph >= 10 ? 30 : 10);
  graph.dispose();
  if (c.node.op === "matmul" && c.node.dtype === "bf16") {
    const out = new Uint8Array(outBytes);
    arena.view(offsets(0)[operands.length]!, outBytes).copyToHost(out);
    const values = bf16Values(out);
    // the same node at another bucket is another problem (another M)
    const key = `${c.node.hash} ${JSON.stringify(c.symbols)}`;
    const first = firstOutputs.get(key);
    if (first === undefined) firstOutputs.set(key, { label: c.label, values });
    else {
      let maxDiff = 0, maxRef = 0, nan = 0;
      for (let i = 0; i < values.length; i++) {
        if (Number.isNaN(values[i]!)) nan++;
        maxRef = Math.max(maxRef, Math.abs(first.values[i]!));
        maxDiff = Math.max(maxDiff, Math.abs(values[i]! - first.values[i]!));
      }
      console.log(`  check ${c.label} against ${first.label}: max |diff| / max |ref| = ${(maxDiff / maxRef).toExponential(2)}, NaNs ${nan}`);
    }
  }
  arena.free();
  const attrs = kernels[0]!.attributes();
  rows.push({ label: c.label, us: ms * 1000, bytes: moved, flops: c.flops, kernel: launches.map((l) => l.kernel.entry).join(" + "), registers: attrs.registers, localBytes: attrs.localBytes });
  console.log(`  measured ${c.label}: ${(ms * 1000).toFixed(2)} µs (${copies} operand copies)`);
}

console.log(`\ncodegen-matmul: ${device.info.name} (${device.info.arch}, ${device.info.smCount} SMs), NVRTC ${nvrtcVersion().text}`);
console.log(`${"case".padEnd(48)} ${"µs".padStart(9)} ${"GB/s".padStart(8)} ${"of 3.0TB/s".padStart(10)} ${"TFLOP/s".padStart(8)} ${"of 790".padStart(7)}  kernel (registers, local bytes)`);
for (const r of rows) {
  const gbs = r.bytes / (r.us * 1e-6) / 1e9;
  const tf = r.flops / (r.us * 1e-6) / 1e12;
  console.log(
    `${r.label.padEnd(48)} ${r.us.toFixed(2).padStart(9)} ${gbs.toFixed(0).padStart(8)} ${((100 * gbs * 1e9) / HBM_NOMINAL).toFixed(0).padStart(9)}% ${tf.toFixed(1).padStart(8)} ${((100 * tf * 1e12) / TENSOR_NOMINAL).toFixed(0).padStart(6)}%  ${r.kernel} (${r.registers}, ${r.localBytes})`,
  );
}
stream.dispose();
