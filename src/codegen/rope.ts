// The fusedRope op: half-split rotary embedding of x [..., T, H, D] by cos/sin [..., T, 1, D/2], one
// thread per rotated pair (see templates/rope.cu.njk for the mapping). Symbolic leading dims (tokens)
// arrive as kernel arguments.

import type { NodeOf } from "../ir/node.js";
import { SymbolArgs, describeShape, loadExpr, monoConst, monoMul, monoOf, monoProduct, monoSize, renderKernel, storageType, storeExpr } from "./elementwise.js";
import { type NodeKernels, linearGrid } from "../lower/kernel.js";

const BLOCK = 256;

export function emitFusedRope(n: NodeOf<"fusedRope">): NodeKernels {
  const x = n.inputs[0]!;
  const r = x.shape.length;
  const heads = x.shape[r - 2];
  const d = x.shape[r - 1];
  if (typeof heads !== "number" || typeof d !== "number") throw new Error(`tsgc codegen: fusedRope needs static heads and head dim, got ${describeShape(x.shape)}`);
  if (!["f32", "bf16", "f16"].includes(n.dtype)) throw new Error(`tsgc codegen: fusedRope supports f32, bf16 and f16, got ${n.dtype}`);
  const half = d / 2;
  const syms = new SymbolArgs();
  const pairs = monoMul(monoProduct(x.shape.slice(0, r - 2).map(monoOf)), monoConst(heads * half));
  const round = n.dtype === "bf16" ? "bf16_to_f32(f32_to_bf16(v))" : n.dtype === "f16" ? "f16_to_f32(f32_to_f16(v))" : "v";
  const context = {
    what: `${describeShape(x.shape, x.dtype)} by cos/sin ${describeShape(n.inputs[1]!.shape)}`,
    t: storageType(n.dtype),
    round,
    pairs: syms.expr(pairs),
    half,
    heads,
    load: (e: string) => loadExpr(n.dtype, e),
    store: (e: string) => storeExpr(n.dtype, e),
  };
  const { name, source } = renderKernel("rope", `${n.dtype}_h${heads}_d${d}`, "rope.cu.njk", { ...context, symParams: syms.params() });
  return {
    launches: [
      {
        kernel: { name, family: "rope", source, entry: name },
        grid: linearGrid(monoSize(pairs), BLOCK),
        block: [BLOCK, 1, 1],
        sharedBytes: 0,
        args: [{ kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, ...syms.bindings()],
      },
    ],
    scratchBytes: [],
  };
}
