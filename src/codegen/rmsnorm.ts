// Code generation for `fusedRmsNorm` (templates/rmsnorm.cu.njk): one block per row, the row held in
// registers, Σ s² reduced with warp shuffles.
//
//   x [..., D], (residual [..., D],) w [D] → [..., D]     (D static; the leading dims may be symbolic)
//   s = x (+ residual) rounded to x's dtype; result "sum" is s, result "normed" is
//   cast(w · (s · rsqrt(mean(s²) + eps))) computed in f32.
//
// A residual norm is two sibling nodes (result "sum" and "normed", identical operands). Each has its own
// emitter here; `emitResidualRmsNormPair` emits the kernel that writes both in one launch. Its sum output
// is bound with `{ kind: "sibling", result: "sum" }` (the result buffer of the sibling node whose `result`
// attribute is "sum"); the scheduler launches the pair once for both nodes.

import { dtypeBytes, type DType } from "../ir/dtype.js";
import type { NodeOf } from "../ir/node.js";
import { formatShape } from "../ir/shape.js";
import { type ArgBinding, constSize, type KernelLaunch, type KernelSource, type NodeKernels, sizeExpr } from "../lower/kernel.js";
import { CUDA_STORAGE_TYPE, renderTemplate } from "./templates.js";

const FLOAT_CODES: Partial<Record<DType, number>> = { f32: 0, bf16: 1, f16: 2 };
const MAX_THREADS = 512;

type RmsNode = NodeOf<"fusedRmsNorm">;

function fail(node: RmsNode, msg: string): never {
  const x = node.inputs[0]!;
  throw new Error(`tsgc codegen: fusedRmsNorm (x ${x.dtype}${formatShape(x.shape)}, result ${node.attrs.result}): ${msg}`);
}

/** Geometry of one row: elements per vector access, threads per block, vectors per thread. */
export interface RmsNormGeometry {
  readonly vec: number;
  readonly threads: number;
  readonly vectorsPerThread: number;
}

/** 16-byte vectors when the row divides into them (8 bf16/f16 or 4 f32), else the widest that does. */
export function rmsNormGeometry(d: number, dtype: DType): RmsNormGeometry {
  let vec = 16 / dtypeBytes(dtype);
  while (vec > 1 && d % vec !== 0) vec /= 2;
  const vectors = d / vec;
  const threads = Math.min(MAX_THREADS, Math.max(32, Math.ceil(vectors / 32) * 32));
  return { vec, threads, vectorsPerThread: Math.ceil(vectors / threads) };
}

interface Variant {
  readonly writeSum: boolean;
  readonly writeNormed: boolean;
}

function rmsKernel(node: RmsNode, variant: Variant): { kernel: KernelSource; launch: Omit<KernelLaunch, "kernel" | "args"> } {
  const [x, w] = [node.inputs[0]!, node.inputs[node.inputs.length - 1]!];
  const xCode = FLOAT_CODES[x.dtype];
  const wCode = FLOAT_CODES[w.dtype];
  if (xCode === undefined) fail(node, `x must be f32, bf16 or f16, got ${x.dtype}`);
  if (wCode === undefined) fail(node, `the weight must be f32, bf16 or f16, got ${w.dtype}`);
  const d = x.shape[x.shape.length - 1]!;
  if (typeof d !== "number") fail(node, `the normalized dim must be static, got ${d}`);
  if (d < 1) fail(node, `the normalized dim must be positive`);
  const geo = rmsNormGeometry(d, x.dtype);
  const hasResidual = node.attrs.hasResidual;
  const parts = [x.dtype, w.dtype === x.dtype ? "" : `w${w.dtype}`, `d${d}`, hasResidual ? "res" : "", variant.writeSum ? "sum" : "", variant.writeNormed ? "norm" : ""];
  const eps = Math.fround(node.attrs.eps);
  const epsBits = new Uint32Array(new Float32Array([eps]).buffer)[0]!;
  const entry = `rmsnorm_${parts.filter((p) => p !== "").join("_")}${variant.writeNormed ? `_e${epsBits.toString(16)}` : ""}`;
  const source = renderTemplate("rmsnorm.cu.njk", {
    entry,
    xType: CUDA_STORAGE_TYPE[x.dtype],
    wType: CUDA_STORAGE_TYPE[w.dtype],
    xCode,
    wCode,
    D: d,
    vec: geo.vec,
    threads: geo.threads,
    nv: geo.vectorsPerThread,
    hasResidual,
    writeSum: variant.writeSum,
    writeNormed: variant.writeNormed,
    epsBits: `0x${epsBits.toString(16).padStart(8, "0")}`,
  });
  const rows = sizeExpr(x.shape.slice(0, -1));
  return {
    kernel: { name: entry, family: "rmsnorm", source, entry },
    launch: { grid: [rows, constSize(1), constSize(1)], block: [geo.threads, 1, 1], sharedBytes: 0 },
  };
}

function rowsArg(node: RmsNode): ArgBinding {
  const x = node.inputs[0]!;
  return { kind: "i32", value: sizeExpr(x.shape.slice(0, -1)) };
}

/** Emits one fusedRmsNorm node: result "normed" (with or without residual) or result "sum". */
export function emitFusedRmsNorm(node: RmsNode): NodeKernels {
  const sum = node.attrs.result === "sum";
  if (sum && !node.attrs.hasResidual) fail(node, `result "sum" needs a residual`);
  const { kernel, launch } = rmsKernel(node, { writeSum: sum, writeNormed: !sum });
  const inputs: ArgBinding[] = node.inputs.map((_, index) => ({ kind: "input", index }));
  return { launches: [{ ...launch, kernel, args: [...inputs, { kind: "output" }, rowsArg(node)] }], scratchBytes: [] };
}

/**
 * One launch for both results of a residual RMSNorm, emitted for the "normed" node: parameters
 * (x, residual, w, out_sum, out_normed, rows), with out_sum bound to the "sum" sibling's buffer.
 */
export function emitResidualRmsNormPair(normed: RmsNode, sum: RmsNode): NodeKernels {
  if (normed.attrs.result !== "normed" || sum.attrs.result !== "sum") fail(normed, `the pair needs one "normed" and one "sum" node`);
  if (!normed.attrs.hasResidual) fail(normed, `a pair needs a residual`);
  const same = normed.inputs.length === sum.inputs.length && normed.inputs.every((n, i) => n === sum.inputs[i]) && normed.attrs.eps === sum.attrs.eps;
  if (!same) fail(normed, `the "sum" node is not its sibling (operands or eps differ)`);
  const { kernel, launch } = rmsKernel(normed, { writeSum: true, writeNormed: true });
  const args: ArgBinding[] = [
    { kind: "input", index: 0 },
    { kind: "input", index: 1 },
    { kind: "input", index: 2 },
    { kind: "sibling", result: "sum" },
    { kind: "output" },
    rowsArg(normed),
  ];
  return { launches: [{ ...launch, kernel, args }], scratchBytes: [] };
}
