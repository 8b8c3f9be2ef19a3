// Standalone MXFP4 dequantization: blocks fp4e2m1x2 [..., nb, 16] and scales e8m0 [..., nb] →
// [..., nb·32] in bf16, f16 or f32 (OCP MX v1.0: value = E2M1 code · 2^(scale − 127), low nibble =
// even element, scale 255 = NaN). Matmuls whose weight is dequantized are fused into Mxfp4Matmul by a
// pass; this kernel serves any dequantMxfp4 left standing.
//
// One thread per half block: an 8-byte load of 16 codes and one scale byte, 16 values out as 16-byte
// stores. The product code · 2^(s−127) is exact in f32, so the only rounding is the final store.

import type { NodeOf } from "../ir/node.js";
import { dtypeBytes } from "../ir/dtype.js";
import { SymbolArgs, describeShape, monoConst, monoMul, monoOf, monoProduct, monoSize, rawVectorType, renderKernel, storageType, storeExpr, wrapParts } from "./elementwise.js";
import { type KernelLaunch, type NodeKernels, linearGrid } from "../lower/kernel.js";

const BLOCK = 256;

export function emitDequantMxfp4(n: NodeOf<"dequantMxfp4">): NodeKernels {
  const [blocks, scales] = [n.inputs[0]!, n.inputs[1]!];
  const r = blocks.shape.length;
  const nb = blocks.shape[r - 2]! as number;
  const rowBlocks = monoMul(monoProduct(blocks.shape.slice(0, r - 2).map(monoOf)), monoConst(nb));
  const halves = monoMul(rowBlocks, monoConst(2));
  const outBytes = 16 * dtypeBytes(n.dtype);
  const syms = new SymbolArgs();
  const [storeOpen, storeClose] = wrapParts(storeExpr(n.dtype, "@"));
  const context = {
    what: `dequantMxfp4 ${describeShape(blocks.shape, blocks.dtype)} × ${describeShape(scales.shape, scales.dtype)} → ${describeShape(n.shape, n.dtype)}`,
    t: storageType(n.dtype),
    storeOpen,
    storeClose,
    halves: syms.expr(halves),
    stores: outBytes / 16,
    perStore: 16 / dtypeBytes(n.dtype),
    vt: rawVectorType(16),
  };
  const { name, source } = renderKernel("dequant", `mxfp4_${n.dtype}`, "dequant.cu.njk", { ...context, symParams: syms.params() });
  const launch: KernelLaunch = {
    kernel: { name, family: "dequant", source, entry: name },
    grid: linearGrid(monoSize(halves), BLOCK),
    block: [BLOCK, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }, ...syms.bindings()],
  };
  return { launches: [launch], scratchBytes: [] };
}

export const DEQUANT_EMITTERS = { dequantMxfp4: emitDequantMxfp4 } as const satisfies { readonly dequantMxfp4: (n: NodeOf<"dequantMxfp4">) => NodeKernels };
