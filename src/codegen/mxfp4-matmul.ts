// Code generation for `mxfp4Matmul` (templates/mxfp4-matmul.cu.njk): x times an MXFP4 weight read
// packed, never materialized in bf16.
//
//   x [..., M, K] · dequant(blocks [N, K/32, 16], scales [N, K/32])ᵀ → [..., M, N]
//   every leading dim of x folds into the rows; dequantized values are rounded to x's dtype (exact for
//   bf16 and f32, rounded for f16) as dequantMxfp4 would store them.
//
// Paths (M ≤ 8 by its static value or bound: GEMV; else GEMM):
// - "gemv-mma"  bf16: tensor-core GEMV dequantizing with integer and bf16x2 ops (17 bytes per 32 weights);
// - "gemv-rows" f16/f32: warp per weight row, one 32-value block per lane step;
// - "gemm-mma"  bf16/f16: the tensor-core GEMM of gemm.cu.njk, MXFP4 tiles dequantized into shared memory;
// - "gemm-simt" f32: the SIMT GEMM of gemm.cu.njk with an MXFP4 loader.
// Kernel parameters: (x, blocks, scales, out, M, N, K).

import { MXFP4_BLOCK } from "../ir/dtype.js";
import type { NodeOf } from "../ir/node.js";
import { formatShape, type SymbolBounds } from "../ir/shape.js";
import type { NodeKernels } from "../lower/kernel.js";
import { GEMV_MAX_M, type MatmulPath, type MatmulShape, matmulLaunch, rowsBound } from "./matmul.js";

type Mxfp4Node = NodeOf<"mxfp4Matmul">;

export interface Mxfp4MatmulOptions {
  /** Upper bounds of symbolic dims: rows whose bound is ≤ 8 get a GEMV kernel. */
  readonly symbolBounds?: SymbolBounds;
}

function fail(node: Mxfp4Node, msg: string): never {
  const [x, blocks] = [node.inputs[0]!, node.inputs[1]!];
  throw new Error(`tsgc codegen: mxfp4Matmul (x ${x.dtype}${formatShape(x.shape)}, blocks ${formatShape(blocks.shape)}): ${msg}`);
}

export function mxfp4MatmulShape(node: Mxfp4Node): MatmulShape {
  const [x, blocks] = [node.inputs[0]!, node.inputs[1]!];
  if (node.dtype !== "bf16" && node.dtype !== "f16" && node.dtype !== "f32") fail(node, `x must be f32, bf16 or f16, got ${node.dtype}`);
  const nb = blocks.shape[1]!;
  if (typeof nb !== "number") fail(node, `the block count must be static`);
  return { dtype: node.dtype, rows: x.shape.slice(0, -1), batch: [], n: blocks.shape[0]!, k: nb * MXFP4_BLOCK, transposeB: true, bShared: true, bFormat: "mxfp4" };
}

export function mxfp4MatmulPath(node: Mxfp4Node, opts: Mxfp4MatmulOptions = {}): MatmulPath {
  const s = mxfp4MatmulShape(node);
  if (rowsBound(s.rows, opts.symbolBounds) <= GEMV_MAX_M) return s.dtype === "bf16" ? "gemv-mma" : "gemv-rows";
  return s.dtype === "f32" ? "gemm-simt" : "gemm-mma";
}

/** Emits an mxfp4Matmul node: one launch of the GEMV or GEMM kernel its rows call for. */
export function emitMxfp4Matmul(node: Mxfp4Node, opts: Mxfp4MatmulOptions = {}): NodeKernels {
  const shape = mxfp4MatmulShape(node);
  const path = mxfp4MatmulPath(node, opts);
  return { launches: [matmulLaunch(shape, path, "mxfp4-matmul.cu.njk", "mxfp4-matmul", { included: true })], scratchBytes: [] };
}
