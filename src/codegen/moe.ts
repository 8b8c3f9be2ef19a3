// Code generation for `moeExperts`: gpt-oss's router → top-k → softmax → clamped-SwiGLU experts →
// weighted sum, with dense ([E, in, out], input-major) or MXFP4 ([E, out, in/32, 16] blocks read
// packed, never dequantized to memory) expert weights.
//
//   x [T, D]; router W [E, D], b [E]; dense: gate_up W [E, D, 2I], b [E, 2I], down W [E, I, D], b [E, D]
//   mxfp4: gate_up blocks [E, 2I, D/32, 16], scales [E, 2I, D/32], b; down blocks [E, D, I/32, 16], scales [E, D, I/32], b
//   → y [T, D]
//
// Three launches, all numerics in f32 with every intermediate rounded to x's dtype exactly where the
// builder's expansion rounds (the interpreter's `moeExperts`):
// 1. route (moe-route.cu.njk): one block per token: router GEMV, top-k (ties to the lower index, NaN
//    first), softmax over the k → scratch 0 (expert ids, i32 [T, K]) and scratch 1 (weights, f32 [T, K]).
// 2. gate_up (moe-experts.cu.njk, stage "gateup"): one grid row per (token, slot) pair: x·W + b for the
//    gate/up column pairs with the SwiGLU epilogue → scratch 2 (h, f32 [T, K, I]).
// 3. down (stage "down"): one grid row per token; a block owns output columns of that token and loops
//    over the token's K experts: h·Wd + bd, times the routing weight, summed in a fixed order, so the
//    result is deterministic (no atomics).
// Prefill runs the same kernels over all tokens (weights are re-read per token; see the report on the
// grouped-GEMM version).

import { type DType, MXFP4_BLOCK, roundTo } from "../ir/dtype.js";
import type { Node, NodeOf } from "../ir/node.js";
import { type Dim, formatShape, isStaticDim } from "../ir/shape.js";
import { f32Literal } from "./attention.js";
import { loadExpr, storeExpr } from "./elementwise.js";
import { type ArgBinding, constSize, type KernelLaunch, type NodeKernels, sizeExpr } from "./kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

const THREADS = 256;
const WARPS = THREADS / 32;
/** Dense gate_up: column pairs per block (one per lane). */
export const DENSE_GATEUP_PAIRS = 32;
/** Dense down: output columns per block (two per lane). */
export const DENSE_DOWN_COLS = 64;
/** MXFP4 gate_up: column pairs per block (two per warp). */
export const MXFP4_GATEUP_PAIRS = 2 * WARPS;
/** MXFP4 down: output rows per block (two per warp). */
export const MXFP4_DOWN_ROWS = 2 * WARPS;

const FLOAT_DTYPES: readonly DType[] = ["f32", "bf16", "f16"];
/** One letter per operand dtype in entry names: f32, bf16, f16. */
const DTYPE_TAG = { f32: "f", bf16: "b", f16: "h" } as const;

function fail(node: NodeOf<"moeExperts">, msg: string): never {
  const x = node.inputs[0]!;
  throw new Error(`tsgc codegen: moeExperts (${node.attrs.weightFormat}, x ${x.dtype}${formatShape(x.shape)}): ${msg}`);
}

interface Loader {
  readonly name: string;
  readonly dtype: DType;
  readonly ctype: string;
  readonly expr: string;
}

function loader(node: NodeOf<"moeExperts">, name: string, t: Node): Loader {
  if (!FLOAT_DTYPES.includes(t.dtype)) fail(node, `${name} has dtype ${t.dtype}; expected f32, bf16 or f16`);
  return { name, dtype: t.dtype, ctype: CUDA_STORAGE_TYPE[t.dtype as "f32" | "bf16" | "f16"], expr: loadExpr(t.dtype, "p[i]") };
}

function roundExpr(dtype: DType): string {
  switch (dtype) {
    case "f32": return "x";
    case "bf16": return "bf16_to_f32(f32_to_bf16(x))";
    case "f16": return "f16_to_f32(f32_to_f16(x))";
    default: throw new Error(`tsgc codegen: no rounding for ${dtype}`);
  }
}

interface MoeSpec {
  readonly dtype: DType;
  readonly t: Dim;
  readonly d: number;
  readonly e: number;
  readonly k: number;
  readonly inter: number;
  readonly mxfp4: boolean;
}

function analyze(node: NodeOf<"moeExperts">): MoeSpec {
  const x = node.inputs[0]!;
  if (!FLOAT_DTYPES.includes(x.dtype)) fail(node, `dtype ${x.dtype} is not supported (f32, bf16, f16)`);
  const [t, d] = x.shape as [Dim, Dim];
  const e = node.inputs[1]!.shape[0]!;
  if (!isStaticDim(d)) fail(node, `hidden size must be static`);
  if (!isStaticDim(e)) fail(node, `expert count must be static`);
  const mxfp4 = node.attrs.weightFormat === "mxfp4";
  const twoI = mxfp4 ? node.inputs[3]!.shape[1]! : node.inputs[3]!.shape[2]!;
  if (!isStaticDim(twoI)) fail(node, `intermediate size must be static`);
  if (mxfp4 && (d % MXFP4_BLOCK !== 0 || (twoI / 2) % MXFP4_BLOCK !== 0)) fail(node, `MXFP4 sizes must be multiples of ${MXFP4_BLOCK}`);
  return { dtype: x.dtype, t, d, e, k: node.attrs.topK, inter: twoI / 2, mxfp4 };
}

/** Kernels for one `moeExperts` node: route, gate_up (+SwiGLU), down (+bias, weighted sum). */
export function emitMoeExperts(node: NodeOf<"moeExperts">): NodeKernels {
  const s = analyze(node);
  const ins = node.inputs;
  const dt = s.dtype;
  const loaders = [loader(node, "x", ins[0]!), loader(node, "rw", ins[1]!), loader(node, "rb", ins[2]!)];
  if (s.mxfp4) {
    const [gBlk, gSc, gb, dBlk, dSc, db] = ins.slice(3) as Node[];
    if (gBlk!.dtype !== "fp4e2m1x2" || dBlk!.dtype !== "fp4e2m1x2" || gSc!.dtype !== "e8m0" || dSc!.dtype !== "e8m0") fail(node, `MXFP4 blocks/scales must be fp4e2m1x2/e8m0`);
    loaders.push(loader(node, "gb", gb!), loader(node, "db", db!));
  } else {
    loaders.push(loader(node, "gw", ins[3]!), loader(node, "gb", ins[4]!), loader(node, "dw", ins[5]!), loader(node, "db", ins[6]!));
  }
  const { limit, alpha } = node.attrs;
  const ctx = {
    dtype: dt,
    xType: CUDA_STORAGE_TYPE[dt as "f32" | "bf16" | "f16"],
    loaders,
    roundExpr: roundExpr(dt),
    storeX: storeExpr(dt, "x"),
    D: s.d,
    E: s.e,
    K: s.k,
    I: s.inter,
    mxfp4: s.mxfp4,
    threads: THREADS,
    limit: f32Literal(roundTo(dt, limit)),
    negLimit: f32Literal(roundTo(dt, -limit)),
    alpha: f32Literal(roundTo(dt, alpha)),
    one: f32Literal(roundTo(dt, 1)),
  };
  const tag = (ls: readonly Loader[]) => ls.map((l) => DTYPE_TAG[l.dtype as "f32" | "bf16" | "f16"]).join("");
  const fmt = s.mxfp4 ? `mxfp4${tag(loaders.slice(3))}` : `dense${tag(loaders.slice(3))}`;
  const typeTag = `${dt}_${tag(loaders.slice(1, 3))}`;
  const base = `e${s.e}k${s.k}d${s.d}i${s.inter}`;
  const constTag = [limit, alpha].map((v) => new Uint32Array(new Float32Array([v]).buffer)[0]!.toString(16)).join("_");
  const routeEntry = `moe_route_${typeTag}_e${s.e}k${s.k}d${s.d}`;
  const gateEntry = `moe_gateup_${fmt}_${typeTag}_${base}_${constTag}`;
  const downEntry = `moe_down_${fmt}_${typeTag}_${base}`;
  const tokens = sizeExpr([s.t]);
  const pairs = sizeExpr([s.t], s.k);
  const input = (index: number): ArgBinding => ({ kind: "input", index });
  const scratch = (index: number): ArgBinding => ({ kind: "scratch", index });

  // one warp per expert row (up to 1024 threads), 16-byte router-weight loads when rows allow
  const routeThreads = Math.min(1024, Math.max(THREADS, 32 * s.e));
  const rwBytes = ins[1]!.dtype === "f32" ? 4 : 2;
  const routeVec = s.d % (16 / rwBytes) === 0 ? 16 / rwBytes : 1;
  const route: KernelLaunch = {
    kernel: { name: routeEntry, family: "moe", source: renderTemplate("moe-route.cu.njk", { ...ctx, entry: routeEntry, routeThreads, routeVec }), entry: routeEntry },
    grid: [tokens, constSize(1), constSize(1)],
    block: [routeThreads, 1, 1],
    sharedBytes: 0,
    args: [input(0), input(1), input(2), scratch(0), scratch(1)],
  };
  const gatePerBlock = s.mxfp4 ? MXFP4_GATEUP_PAIRS : DENSE_GATEUP_PAIRS;
  const gateup: KernelLaunch = {
    kernel: { name: gateEntry, family: "moe", source: renderTemplate("moe-experts.cu.njk", { ...ctx, entry: gateEntry, stage: "gateup" }), entry: gateEntry },
    grid: [constSize(Math.ceil(s.inter / gatePerBlock)), pairs, constSize(1)],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: s.mxfp4 ? [input(0), scratch(0), input(3), input(4), input(5), scratch(2)] : [input(0), scratch(0), input(3), input(4), scratch(2)],
  };
  const downPerBlock = s.mxfp4 ? MXFP4_DOWN_ROWS : DENSE_DOWN_COLS;
  const down: KernelLaunch = {
    kernel: { name: downEntry, family: "moe", source: renderTemplate("moe-experts.cu.njk", { ...ctx, entry: downEntry, stage: "down" }), entry: downEntry },
    grid: [constSize(Math.ceil(s.d / downPerBlock)), tokens, constSize(1)],
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    args: s.mxfp4
      ? [scratch(0), scratch(1), scratch(2), input(6), input(7), input(8), { kind: "output" }]
      : [scratch(0), scratch(1), scratch(2), input(5), input(6), { kind: "output" }],
  };
  return {
    launches: [route, gateup, down],
    scratchBytes: [sizeExpr([s.t], s.k * 4), sizeExpr([s.t], s.k * 4), sizeExpr([s.t], s.k * s.inter * 4)],
  };
}
