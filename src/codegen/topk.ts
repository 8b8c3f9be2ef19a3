// Top-k code generation: the k largest entries along the last axis, descending, ties to the lower
// index, NaN ranking above everything (interpret.ts topkIndices). A topk node is one of two siblings
// ("values", "indices") with identical attrs; each sibling's kernel computes the selection and
// writes its own result (the template can write both when the scheduler launches them as one).
//
// Selection is k rounds of an arg-max under the total order (value, index): round r takes the best
// element ranked strictly below round r−1's winner, so nothing is marked or sorted and every round
// is a coalesced re-read of the row (L1/L2-resident after the first).
// - warp:  rows of ≤ 1024 static entries (router top-4 of 32/128 experts): one warp per row,
//          8 rows per block, shuffle arg-max.
// - block: longer or symbolic rows: one 256-thread block per row.
// - split: rows over 16384 entries (arg-max over a 201088 vocab): pass 1 gives each 4096-entry
//          chunk of each row a block that writes its local top-k (value, index) to scratch; pass 2
//          selects the row's top-k among the chunks' candidates. Grid of pass 1: chunks × rows.

import type { NodeOf } from "../ir/node.js";
import { type DType, dtypeBytes } from "../ir/dtype.js";
import { SymbolArgs, describeShape, computeType, isStaticMono, loadExpr, monoConst, monoMul, monoOf, monoProduct, monoSize, pow2Divisor, rawVectorType, renderKernel, storageType, storeExpr, wrapParts } from "./elementwise.js";
import { type ArgBinding, type KernelLaunch, type NodeKernels, constSize } from "../lower/kernel.js";

const BLOCK = 256;
const WARP_ROW_MAX = 1024;
const SPLIT_MIN = 16384;
export const TOPK_CHUNK = 4096;

type Mode = "warp" | "block";

export function emitTopk(n: NodeOf<"topk">): NodeKernels {
  return emitSelection(n, n.attrs.result === "values", n.attrs.result === "indices");
}

/** One selection writing both siblings: the values' buffer is bound as `{ kind: "sibling", result: "values" }`, before the indices (the output). */
export function emitTopkPair(indices: NodeOf<"topk">, values: NodeOf<"topk">): NodeKernels {
  if (indices.attrs.result !== "indices" || values.attrs.result !== "values") throw new Error(`tsgc codegen: topk pair needs the "indices" node and then the "values" node`);
  if (indices.inputs[0] !== values.inputs[0] || indices.attrs.k !== values.attrs.k) throw new Error(`tsgc codegen: topk nodes of different operands or k are not siblings`);
  return emitSelection(indices, true, true);
}

function emitSelection(n: NodeOf<"topk">, writeValues: boolean, writeIndices: boolean): NodeKernels {
  const x = n.inputs[0]!;
  const dt: DType = x.dtype;
  const k = n.attrs.k;
  const rank = x.shape.length;
  const rows = monoProduct(x.shape.slice(0, -1).map(monoOf));
  const len = monoOf(x.shape[rank - 1]!);
  const ct = computeType(dt);
  const split = isStaticMono(len) && len.c > SPLIT_MIN;
  const chunks = split ? Math.ceil(len.c / TOPK_CHUNK) : 0;
  const rowMode: Mode = isStaticMono(len) && len.c <= WARP_ROW_MAX ? "warp" : "block";
  let vec = pow2Divisor(len, Math.max(1, Math.floor(16 / dtypeBytes(dt))));
  // a short row spreads over all 32 lanes before it widens the loads
  if (rowMode === "warp") while (vec > 1 && len.c / vec < 32) vec >>= 1;
  const candMode: Mode = chunks * k <= WARP_ROW_MAX ? "warp" : "block";
  const syms = new SymbolArgs();
  const [storeOpen, storeClose] = wrapParts(storeExpr(dt, "@"));
  const context = {
    what: `top-${k} ${n.attrs.result} along the last axis of ${describeShape(x.shape, dt)}`,
    t: storageType(dt),
    ct,
    load: wrapParts(loadExpr(dt, "@")),
    storeOpen,
    storeClose,
    writeValues,
    writeIndices,
    k,
    vec,
    vt: rawVectorType(vec * dtypeBytes(dt)),
    rows: syms.expr(rows),
    len: syms.expr(len),
    split,
    chunks,
    chunk: TOPK_CHUNK,
    rowMode,
    candMode,
    block: BLOCK,
  };
  const label = writeValues && writeIndices ? "pair" : n.attrs.result;
  const outs: ArgBinding[] = writeValues && writeIndices ? [{ kind: "sibling", result: "values" }, { kind: "output" }] : [{ kind: "output" }];
  const { name, source } = renderKernel("topk", `${label}${k}_${dt}`, "topk.cu.njk", { ...context, symParams: syms.params() });
  const perBlock = (mode: Mode) => (mode === "warp" ? BLOCK / 32 : 1);
  if (!split) {
    const launch: KernelLaunch = {
      kernel: { name, family: "topk", source, entry: name },
      grid: [monoSize(rows, perBlock(rowMode)), constSize(1), constSize(1)],
      block: [BLOCK, 1, 1],
      sharedBytes: 0,
      args: [...outs, { kind: "input", index: 0 }, ...syms.bindings()],
    };
    return { launches: [launch], scratchBytes: [] };
  }
  const candidates = monoMul(rows, monoConst(chunks * k));
  const pass1: KernelLaunch = {
    kernel: { name: `${name}_chunks`, family: "topk", source, entry: `${name}_chunks` },
    grid: [monoSize(monoMul(rows, monoConst(chunks))), constSize(1), constSize(1)],
    block: [BLOCK, 1, 1],
    sharedBytes: 0,
    args: [{ kind: "input", index: 0 }, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }, ...syms.bindings()],
  };
  const pass2: KernelLaunch = {
    kernel: { name: `${name}_merge`, family: "topk", source, entry: `${name}_merge` },
    grid: [monoSize(rows, perBlock(candMode)), constSize(1), constSize(1)],
    block: [BLOCK, 1, 1],
    sharedBytes: 0,
    args: [...outs, { kind: "scratch", index: 0 }, { kind: "scratch", index: 1 }, ...syms.bindings()],
  };
  const ctBytes = ct === "long long" ? 8 : 4;
  return {
    launches: [pass1, pass2],
    scratchBytes: [monoSize(monoMul(candidates, monoConst(ctBytes))), monoSize(monoMul(candidates, monoConst(4)))],
  };
}

export const TOPK_EMITTERS = { topk: emitTopk } as const satisfies { readonly topk: (n: NodeOf<"topk">) => NodeKernels };
