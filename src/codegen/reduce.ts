// Reduction code generation: sum, max, min, mean over any axis, accumulating in f32 (integers in i64).
//
// The input is viewed as [outer, size, inner] around the axis; the output is [outer, inner].
// - inner = 1 (the axis is innermost): row mode. One warp per row when the row is short (≤ 1024
//   static elements; 8 rows per 256-thread block), else one 256-thread block per row; loads up to 16
//   bytes wide where the row length allows (a short row first spreads over all 32 lanes); warp
//   shuffles, then shared memory across warps.
// - inner > 1: strided mode. Block (BX, BY): x walks VEC consecutive inner elements (coalesced), y
//   splits the axis; partial results meet in shared memory.
// max/min propagate NaN; mean divides the f32 sum by the axis length; integer sums wrap like the
// interpreter's store into the dtype.

import type { NodeOf } from "../ir/node.js";
import { type DType, dtypeBytes, isFloat } from "../ir/dtype.js";
import { SymbolArgs, describeShape, rawVectorType, isStaticMono, loadExpr, monoConst, monoMul, monoOf, monoProduct, monoSize, pow2Divisor, renderKernel, storageType, storeExpr, wrapParts } from "./elementwise.js";
import { type KernelLaunch, type NodeKernels, type SizeExpr, constSize } from "../lower/kernel.js";

const BLOCK = 256;
/** Rows up to this many (static) elements get one warp each. */
const WARP_ROW_MAX = 1024;

function accumulator(d: DType): string {
  return isFloat(d) ? "float" : "long long";
}

function identity(fn: string, d: DType): string {
  if (fn === "sum" || fn === "mean") return isFloat(d) ? "0.0f" : "0LL";
  if (isFloat(d)) return fn === "max" ? "__int_as_float(0xff800000)" : "__int_as_float(0x7f800000)";
  return fn === "max" ? "(-9223372036854775807LL - 1)" : "9223372036854775807LL";
}

function combineBody(fn: string, d: DType): string {
  if (fn === "sum" || fn === "mean") return "return a + b;";
  const pick = fn === "max" ? "a > b" : "a < b";
  return isFloat(d) ? `return (a != a || b != b) ? __int_as_float(0x7fc00000) : (${fn === "max" ? "fmaxf" : "fminf"}(a, b));` : `return ${pick} ? a : b;`;
}

/** Accumulator → stored element (f32 → dtype rounds to nearest even; integers wrap). */
function finishExpr(d: DType, acc: string): string {
  if (isFloat(d)) return storeExpr(d, acc);
  switch (d) {
    case "i32": return `(int)(${acc})`;
    case "u8": return `(unsigned char)(${acc})`;
    default: return acc;
  }
}

export function emitReduce(n: NodeOf<"reduce">): NodeKernels {
  const x = n.inputs[0]!;
  const { fn, axis } = n.attrs;
  const dt = x.dtype;
  const outer = monoProduct(x.shape.slice(0, axis).map(monoOf));
  const size = monoOf(x.shape[axis]!);
  const inner = monoProduct(x.shape.slice(axis + 1).map(monoOf));
  const maxVec = Math.max(1, Math.floor(16 / dtypeBytes(dt)));
  const syms = new SymbolArgs();
  const rowMode = isStaticMono(inner, 1);
  const warpPerRow = rowMode && isStaticMono(size) && size.c <= WARP_ROW_MAX;
  let vec = rowMode ? pow2Divisor(size, maxVec) : pow2Divisor(inner, maxVec);
  // a short row spreads over all 32 lanes before it widens the loads
  if (warpPerRow) while (vec > 1 && size.c / vec < 32) vec >>= 1;
  // strided mode: y splits the axis (up to 8 ways), x covers the rest of the block
  const by = rowMode ? 1 : isStaticMono(size) ? Math.min(8, 2 ** Math.ceil(Math.log2(Math.max(size.c, 1)))) : 8;
  const bx = BLOCK / by;
  const foldOuter = !rowMode && isStaticMono(inner);
  const tilesInner = foldOuter ? Math.ceil(inner.c / vec / bx) : 0;
  const [finishOpen, finishClose] = wrapParts(finishExpr(dt, "@"));
  const context = {
    mode: rowMode ? (warpPerRow ? "warp" : "block") : "strided",
    what: `${fn} over axis ${axis} of ${describeShape(x.shape, dt)}`,
    fn,
    t: storageType(dt),
    acc: accumulator(dt),
    identity: identity(fn, dt),
    combine: combineBody(fn, dt),
    load: wrapParts(loadExpr(dt, "@")),
    finishOpen,
    finishClose,
    isFloat: isFloat(dt),
    vec,
    vt: rawVectorType(vec * dtypeBytes(dt)),
    outer: syms.expr(outer),
    size: syms.expr(size),
    inner: syms.expr(inner),
    bx,
    by,
    foldOuter,
    tilesInner,
    block: BLOCK,
  };
  const { name, source } = renderKernel("reduce", `${fn}_${dt}`, "reduce.cu.njk", { ...context, symParams: syms.params() });
  let grid: readonly [SizeExpr, SizeExpr, SizeExpr];
  if (rowMode) grid = [monoSize(outer, warpPerRow ? BLOCK / 32 : 1), constSize(1), constSize(1)];
  else if (foldOuter) grid = [monoSize(monoMul(outer, monoConst(tilesInner))), constSize(1), constSize(1)];
  else grid = [monoSize(inner, vec * bx), monoSize(outer), constSize(1)];
  const launch: KernelLaunch = {
    kernel: { name, family: "reduce", source, entry: name },
    grid,
    block: rowMode ? [BLOCK, 1, 1] : [bx, by, 1],
    sharedBytes: 0,
    args: [{ kind: "output" }, { kind: "input", index: 0 }, ...syms.bindings()],
  };
  return { launches: [launch], scratchBytes: [] };
}

export const REDUCE_EMITTERS = { reduce: emitReduce } as const satisfies { readonly reduce: (n: NodeOf<"reduce">) => NodeKernels };
