// Data movement code generation: transpose, slice, concat, gather, scatter. `reshape` is a view of its
// operand's buffer and gets no kernel.
//
// slice, and a transpose whose innermost output dim is contiguous in the input, are affine index maps:
// they go through the generic elementwise engine as a copy (raw elements, 16-byte vectors where the
// map allows). A transpose that moves the innermost dim is tiled through shared memory. concat,
// gather and scatter have kernels of their own in movement.cu.njk. Every kernel copies raw element
// bits; nothing is converted.

import type { Node, NodeOf } from "../ir/node.js";
import { dtypeBytes } from "../ir/dtype.js";
import type { Shape } from "../ir/shape.js";
import {
  type Mono, describeShape, ONE, SymbolArgs, ZERO, collapseDims, contiguousStrides, elementCount, emitElementwise, isStaticMono, monoConst,
  monoMul, monoOf, monoProduct, monoSize, pow2Divisor, renderKernel, storageType,
} from "./elementwise.js";
import { type ArgBinding, type KernelLaunch, type NodeKernels, type SizeExpr, constSize, linearGrid, sizeExpr } from "../lower/kernel.js";

const BLOCK = 256;
const TILE = 32;
const TILE_ROWS = 8;

/** Unsigned type of an element's bits. */
function rawType(bytes: number): string {
  switch (bytes) {
    case 1: return "unsigned char";
    case 2: return "unsigned short";
    case 4: return "unsigned int";
    case 8: return "unsigned long long";
    default: throw new Error(`tsgc codegen: no raw type of ${bytes} bytes`);
  }
}

/** C type moving `vec` elements of `bytes` bytes at once. */
function vectorType(bytes: number, vec: number): string {
  const total = bytes * vec;
  return total === 16 ? "uint4" : total === 8 ? "uint2" : rawType(total);
}

/** Zero initializer of the type moving `bytes` bytes. */
function zeroOf(bytes: number): string {
  return bytes === 16 ? "{0u, 0u, 0u, 0u}" : bytes === 8 ? "{0u, 0u}" : "0";
}

/** outer × size × inner element counts around `axis`. */
function around(shape: Shape, axis: number): { outer: Mono; size: Mono; inner: Mono } {
  return {
    outer: monoProduct(shape.slice(0, axis).map(monoOf)),
    size: monoOf(shape[axis]!),
    inner: monoProduct(shape.slice(axis + 1).map(monoOf)),
  };
}

function launch(name: string, source: string, grid: readonly [SizeExpr, SizeExpr, SizeExpr], block: readonly [number, number, number], args: readonly ArgBinding[], sharedBytes = 0): KernelLaunch {
  return { kernel: { name, family: "movement", source, entry: name }, grid, block, sharedBytes, args };
}

// ---- transpose ------------------------------------------------------------------------------------

export function emitTranspose(n: NodeOf<"transpose">): NodeKernels {
  const x = n.inputs[0]!;
  const perm = n.attrs.perm;
  const inStrides = contiguousStrides(x.shape);
  const strides = perm.map((p) => inStrides[p]!);
  const collapsed = collapseDims(n.shape.map(monoOf), [strides]);
  const k = collapsed.sizes.length;
  const is = collapsed.strides[0]!;
  if (isStaticMono(is[k - 1]!, 1) || k === 1) {
    // the innermost output dim is contiguous in the input: a strided copy
    return emitElementwise({
      label: `transpose_${n.dtype}`,
      what: `transpose [${perm.join(", ")}] of ${describeShape(x.shape)}`,
      shape: n.shape,
      dtype: n.dtype,
      sources: [{ kind: "buffer", operand: 0, dtype: x.dtype, strides, base: ZERO }],
      body: [{ op: "input", index: 0 }],
    });
  }
  // tiled: A = the output dim that is the input's innermost (input stride 1), B = the output's innermost
  const a = is.findIndex((m) => isStaticMono(m, 1));
  if (a < 0) throw new Error(`tsgc codegen: transpose ${describeShape(x.shape)} [${perm.join(", ")}] has no unit-stride dim`);
  const outStrides = contiguousMonos(collapsed.sizes);
  const syms = new SymbolArgs();
  const batch = collapsed.sizes.map((size, d) => ({ size, inStride: is[d]!, outStride: outStrides[d]! })).filter((_, d) => d !== a && d !== k - 1);
  const nA = collapsed.sizes[a]!;
  const nB = collapsed.sizes[k - 1]!;
  const batchCount = monoProduct(batch.map((b) => b.size));
  const foldA = isStaticMono(nA);
  const tilesA = Math.ceil(nA.c / TILE);
  const bytes = dtypeBytes(n.dtype);
  const context = {
    mode: "transpose",
    what: `transpose [${perm.join(", ")}] of ${describeShape(x.shape)} → ${describeShape(n.shape)}`,
    t: rawType(bytes),
    nA: syms.expr(nA),
    nB: syms.expr(nB),
    strideAOut: syms.expr(outStrides[a]!),
    strideBIn: syms.expr(is[k - 1]!),
    batch: batch.map((b) => ({ size: syms.expr(b.size), inStride: syms.expr(b.inStride), outStride: syms.expr(b.outStride) })),
    foldA,
    tilesA,
    tile: TILE,
    rows: TILE_ROWS,
  };
  const { name, source } = renderKernel("movement", `transpose_${n.dtype}`, "movement.cu.njk", { ...context, symParams: syms.params() });
  const grid: readonly [SizeExpr, SizeExpr, SizeExpr] = foldA
    ? [monoSize(monoMul(batchCount, monoConst(tilesA))), monoSize(nB, TILE), constSize(1)]
    : [monoSize(nA, TILE), monoSize(nB, TILE), monoSize(batchCount)];
  return {
    launches: [launch(name, source, grid, [TILE, TILE_ROWS, 1], [{ kind: "output" }, { kind: "input", index: 0 }, ...syms.bindings()])],
    scratchBytes: [],
  };
}

function contiguousMonos(sizes: readonly Mono[]): Mono[] {
  const out = new Array<Mono>(sizes.length);
  let acc = ONE;
  for (let i = sizes.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc = monoMul(acc, sizes[i]!);
  }
  return out;
}

// ---- slice ----------------------------------------------------------------------------------------

export function emitSlice(n: NodeOf<"slice">): NodeKernels {
  const x = n.inputs[0]!;
  const { axis, start, step } = n.attrs;
  const inStrides = contiguousStrides(x.shape);
  return emitElementwise({
    label: `slice_${n.dtype}`,
    what: `slice axis ${axis} [${start}:${typeof n.attrs.end === "number" ? n.attrs.end : "*"}:${step}] of ${describeShape(x.shape)}`,
    shape: n.shape,
    dtype: n.dtype,
    sources: [{
      kind: "buffer",
      operand: 0,
      dtype: x.dtype,
      strides: inStrides.map((s, d) => (d === axis ? monoMul(s, monoConst(step)) : s)),
      base: monoMul(inStrides[axis]!, monoConst(start)),
    }],
    body: [{ op: "input", index: 0 }],
  });
}

// ---- concat ---------------------------------------------------------------------------------------

export function emitConcat(n: NodeOf<"concat">): NodeKernels {
  const axis = n.attrs.axis;
  const { outer, inner } = around(n.shape, axis);
  const bytes = dtypeBytes(n.dtype);
  const widths = n.inputs.map((x) => monoMul(monoOf(x.shape[axis]!), inner));
  let vec = Math.max(1, Math.floor(16 / bytes));
  for (const w of widths) vec = pow2Divisor(w, vec);
  const syms = new SymbolArgs();
  const context = {
    mode: "concat",
    what: `concat axis ${axis}: ${n.inputs.map((x) => describeShape(x.shape)).join(" ++ ")} → ${describeShape(n.shape)}`,
    t: rawType(bytes),
    vt: vectorType(bytes, vec),
    vec,
    outer: syms.expr(outer),
    widths: widths.map((w) => syms.expr(w)),
    pointers: n.inputs.map((_, i) => `const ${rawType(bytes)}* __restrict__ in${i}`),
  };
  const { name, source } = renderKernel("movement", `concat${n.inputs.length}_${n.dtype}`, "movement.cu.njk", { ...context, symParams: syms.params() });
  const total = elementCount(n.shape);
  return {
    launches: [launch(name, source, linearGrid({ ...total, divisor: total.divisor * vec }, BLOCK), [BLOCK, 1, 1], [
      { kind: "output" },
      ...n.inputs.map((_, i): ArgBinding => ({ kind: "input", index: i })),
      ...syms.bindings(),
    ])],
    scratchBytes: [],
  };
}

// ---- gather ---------------------------------------------------------------------------------------

function indexType(x: Node): string {
  return storageType(x.dtype);
}

/**
 * gather(x [outer, size, inner], idx [count]) → [outer, count, inner]; an index outside [0, size)
 * yields zeros. One thread per VEC-element chunk of a row (16 bytes when `inner` allows): the
 * embedding lookup [vocab, D] × ids [tokens] is one 16-byte load and store per thread.
 */
export function emitGather(n: NodeOf<"gather">): NodeKernels {
  const [x, idx] = [n.inputs[0]!, n.inputs[1]!];
  const { outer, size, inner } = around(x.shape, n.attrs.axis);
  const count = monoProduct(idx.shape.map(monoOf));
  const bytes = dtypeBytes(n.dtype);
  const vec = pow2Divisor(inner, Math.max(1, Math.floor(16 / bytes)));
  const syms = new SymbolArgs();
  const context = {
    mode: "gather",
    what: `gather axis ${n.attrs.axis}: ${describeShape(x.shape)} by ${describeShape(idx.shape, idx.dtype)} → ${describeShape(n.shape)}`,
    t: rawType(bytes),
    vt: vectorType(bytes, vec),
    it: indexType(idx),
    zero: zeroOf(bytes * vec),
    vec,
    outerIsOne: isStaticMono(outer, 1),
    outer: syms.expr(outer),
    size: syms.expr(size),
    inner: syms.expr(inner),
    count: syms.expr(count),
  };
  const { name, source } = renderKernel("movement", `gather_${n.dtype}`, "movement.cu.njk", { ...context, symParams: syms.params() });
  const total = elementCount(n.shape);
  return {
    launches: [launch(name, source, linearGrid({ ...total, divisor: total.divisor * vec }, BLOCK), [BLOCK, 1, 1], [
      { kind: "output" }, { kind: "input", index: 0 }, { kind: "input", index: 1 }, ...syms.bindings(),
    ])],
    scratchBytes: [],
  };
}

// ---- scatter --------------------------------------------------------------------------------------

/**
 * scatter(x [outer, size, inner], idx [n], updates [outer, n, inner]): x with slices idx[j] along the
 * axis replaced; out-of-range indices are skipped and, for repeated indices, the last j wins (as
 * the interpreter's sequential loop). Three launches: copy x (skipped when the output aliases x)
 * while resetting owner[size] = −1; claim owner[idx[j]] = max j; write the slices whose owner is j.
 * Scratch 0 is owner (i32 [size]).
 */
export function emitScatter(n: NodeOf<"scatter">): NodeKernels {
  const { entry, all, count, written, vec, size, symArgs } = scatterModule(n);
  const [copy, claim, write] = [entry("copy"), entry("claim"), entry("write")];
  return {
    launches: [
      launch(copy.name, copy.source, linearGrid({ ...all, divisor: all.divisor * vec }, BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 0 }, { kind: "scratch", index: 0 }, ...symArgs]),
      launch(claim.name, claim.source, linearGrid(monoSize(count), BLOCK), [BLOCK, 1, 1], [{ kind: "input", index: 1 }, { kind: "scratch", index: 0 }, ...symArgs]),
      launch(write.name, write.source, linearGrid(monoSize(written, vec), BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: 0 }, ...symArgs]),
    ],
    scratchBytes: [sizeExpr(size.syms, 4 * Math.max(size.c, 0))],
  };
}

/** The scatter module (one source with every entry: _copy, _owners, _claim, _write, _write_last) and the sizes its launches use. */
function scatterModule(n: NodeOf<"scatter">) {
  const [x, idx] = [n.inputs[0]!, n.inputs[1]!];
  const { outer, size, inner } = around(x.shape, n.attrs.axis);
  const count = monoOf(idx.shape[0]!);
  const bytes = dtypeBytes(n.dtype);
  const vec = pow2Divisor(inner, Math.max(1, Math.floor(16 / bytes)));
  const syms = new SymbolArgs();
  const context = {
    mode: "scatter",
    what: `scatter axis ${n.attrs.axis}: ${describeShape(x.shape)} at ${describeShape(idx.shape, idx.dtype)}`,
    t: rawType(bytes),
    vt: vectorType(bytes, vec),
    it: indexType(idx),
    vec,
    outer: syms.expr(outer),
    size: syms.expr(size),
    inner: syms.expr(inner),
    count: syms.expr(count),
  };
  const rendered = renderKernel("movement", `scatter_${n.dtype}`, "movement.cu.njk", { ...context, symParams: syms.params() });
  return {
    entry: (part: string) => ({ name: `${rendered.name}_${part}`, source: rendered.source }),
    all: elementCount(x.shape),
    count,
    size,
    vec,
    written: monoMul(monoMul(outer, count), inner),
    symArgs: syms.bindings(),
  };
}

/** Updates counted up to this bound take one launch that resolves duplicate indices by scanning later ones. */
export const SCATTER_SCAN_MAX = 32;

/**
 * A scatter written into its own first operand (a state update): only the scattered slices move. Indices from
 * uniqueIndices (the unique-scatter-indices pass) hold no duplicates: one launch writes every slice. With at
 * most SCATTER_SCAN_MAX updates (decode), one launch in which an update yields to any later one with the
 * same index; otherwise an owner table as in `emitScatter` (last index wins), without the copy of x.
 */
export function emitScatterInPlace(n: NodeOf<"scatter">, bounds: Readonly<Record<string, number>>): NodeKernels {
  const idx = n.inputs[1]!;
  const { entry, count, written, vec, size, symArgs } = scatterModule(n);
  if (idx.op === "uniqueIndices") {
    const unique = entry("write_unique");
    return {
      launches: [launch(unique.name, unique.source, linearGrid(monoSize(written, vec), BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, ...symArgs])],
      scratchBytes: [],
    };
  }
  const countBound = typeof idx.shape[0] === "number" ? idx.shape[0] : (bounds[idx.shape[0]!] ?? Infinity);
  if (countBound <= SCATTER_SCAN_MAX) {
    const last = entry("write_last");
    return {
      launches: [launch(last.name, last.source, linearGrid(monoSize(written, vec), BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, ...symArgs])],
      scratchBytes: [],
    };
  }
  const [owners, claim, write] = [entry("owners"), entry("claim"), entry("write")];
  return {
    launches: [
      launch(owners.name, owners.source, linearGrid(monoSize(size), BLOCK), [BLOCK, 1, 1], [{ kind: "scratch", index: 0 }, ...symArgs]),
      launch(claim.name, claim.source, linearGrid(monoSize(count), BLOCK), [BLOCK, 1, 1], [{ kind: "input", index: 1 }, { kind: "scratch", index: 0 }, ...symArgs]),
      launch(write.name, write.source, linearGrid(monoSize(written, vec), BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 1 }, { kind: "input", index: 2 }, { kind: "scratch", index: 0 }, ...symArgs]),
    ],
    scratchBytes: [sizeExpr(size.syms, 4 * Math.max(size.c, 0))],
  };
}

// ---- uniqueIndices --------------------------------------------------------------------------------

/** uniqueIndices(idx i32 [N]): one launch, a thread per index (see movement.cu.njk, mode "unique"). */
export function emitUniqueIndices(n: NodeOf<"uniqueIndices">): NodeKernels {
  const count = n.shape[0]!;
  const { name, source } = renderKernel("movement", "unique_indices", "movement.cu.njk", { mode: "unique", what: "uniqueIndices i32[n]" });
  return {
    launches: [launch(name, source, linearGrid(sizeExpr([count]), BLOCK), [BLOCK, 1, 1], [{ kind: "output" }, { kind: "input", index: 0 }, { kind: "i32", value: sizeExpr([count]) }])],
    scratchBytes: [],
  };
}

/** The movement family's emitters, by op (reshape has none: it is a view). */
export const MOVEMENT_EMITTERS = {
  transpose: emitTranspose,
  slice: emitSlice,
  concat: emitConcat,
  gather: emitGather,
  scatter: emitScatter,
} as const satisfies { readonly [K in "transpose" | "slice" | "concat" | "gather" | "scatter"]: (n: NodeOf<K>) => NodeKernels };
