// What code generation produces for one IR node: kernels (CUDA source plus launch geometry) and how
// each launch binds its parameters to the node's buffers and to symbol values.
//
// Sources are specialized on static dims (baked in as constants) and take symbolic dims as kernel
// arguments, so one compiled kernel serves every value of `tokens`; geometry that depends on
// symbols is a SizeExpr evaluated at launch time. Everything here is plain data: a plan stores it
// as JSON and the executor replays it without the compiler.

import { createHash } from "node:crypto";
import type { Dim, SymbolValues } from "../ir/shape.js";
import { evalDim } from "../ir/shape.js";

/** ceil(scale · Π dims / divisor): a launch dimension or integer argument computed from symbol values. */
export interface SizeExpr {
  readonly dims: readonly Dim[];
  readonly scale: number;
  readonly divisor: number;
}

export function sizeExpr(dims: readonly Dim[], scale = 1, divisor = 1): SizeExpr {
  return { dims: [...dims], scale, divisor };
}

/** A constant size. */
export function constSize(n: number): SizeExpr {
  return { dims: [], scale: n, divisor: 1 };
}

export function evalSize(e: SizeExpr, symbols: SymbolValues): number {
  let n = e.scale;
  for (const d of e.dims) n *= evalDim(d, symbols);
  return Math.ceil(n / e.divisor);
}

/**
 * How one kernel parameter is bound at launch. Buffers are the node's operands, result or scratch, or
 * (for kernels that compute sibling nodes together: a residual norm's sum and normed value, top-k's
 * values and indices) the result of the sibling whose `result` attribute is `result`.
 */
export type ArgBinding =
  | { readonly kind: "input"; readonly index: number }
  | { readonly kind: "output" }
  | { readonly kind: "sibling"; readonly result: string }
  | { readonly kind: "scratch"; readonly index: number }
  | { readonly kind: "i32"; readonly value: SizeExpr }
  | { readonly kind: "f32"; readonly value: number };

/**
 * The statement every generated kernel runs first (common.cuh.njk; renderTemplate inserts it): it waits for the grids
 * the kernel depends on, so the executor may launch the kernel with programmatic dependent launch.
 */
export const GRID_DEPENDENCY_WAIT = "tsgc_grid_dependency_wait();";

const KERNEL_MARKER = 'extern "C" __global__';
/** A kernel body's opening brace with the wait inserted after it. */
const WAIT_AT_BODY_START = `{\n  ${GRID_DEPENDENCY_WAIT}`;

/**
 * `source` with GRID_DEPENDENCY_WAIT as the first statement of every `extern "C" __global__` function body. The
 * executor launches plan kernels with programmatic dependent launch (they may start while the previous kernel
 * drains), which is safe only if each waits before it reads anything; inserting the wait here, rather than by hand in
 * some fifty kernels, keeps that true of every kernel a template will ever define.
 */
export function withGridDependencyWait(source: string, what = "kernel source"): string {
  let out = "";
  let from = 0;
  for (let at = source.indexOf(KERNEL_MARKER); at >= 0; at = source.indexOf(KERNEL_MARKER, at + KERNEL_MARKER.length)) {
    // the body's brace is the first "{" outside parentheses (__launch_bounds__(…) and the parameter list hold none)
    let depth = 0;
    let brace = -1;
    for (let i = at + KERNEL_MARKER.length; i < source.length && brace < 0; i++) {
      const c = source[i];
      if (c === "(") depth++;
      else if (c === ")") depth--;
      else if (depth === 0 && c === ";") break; // a declaration, not a definition
      else if (depth === 0 && c === "{") brace = i;
    }
    if (brace < 0) throw new Error(`tsgc: ${what}: the kernel declared at offset ${at} has no body`);
    out += source.slice(from, brace) + WAIT_AT_BODY_START;
    from = brace + 1;
  }
  return out + source.slice(from);
}

/** Whether every kernel defined in `source` runs GRID_DEPENDENCY_WAIT first (as withGridDependencyWait inserts it). */
export function waitsForGridDependencies(source: string): boolean {
  const definitions = source.split(KERNEL_MARKER).length - 1;
  return definitions > 0 && source.split(WAIT_AT_BODY_START).length - 1 === definitions;
}

/** A compiled-once unit: source and entry point. Identical sources are compiled once (cache key). */
export interface KernelSource {
  /** Readable unique-ish name: family plus specialization, e.g. `rmsnorm_bf16_2880`. */
  readonly name: string;
  /** Template family (one `.cu.njk` per family). */
  readonly family: string;
  /** Complete CUDA C++ source: self-contained, no system headers. */
  readonly source: string;
  /** The extern "C" __global__ function. */
  readonly entry: string;
}

export interface KernelLaunch {
  readonly kernel: KernelSource;
  readonly grid: readonly [SizeExpr, SizeExpr, SizeExpr];
  readonly block: readonly [number, number, number];
  readonly sharedBytes: number;
  readonly args: readonly ArgBinding[];
}

/** Everything one node runs: its launches in order, and scratch buffers (bytes at the symbols' bounds). */
export interface NodeKernels {
  readonly launches: readonly KernelLaunch[];
  readonly scratchBytes: readonly SizeExpr[];
}

/** Identity of a kernel source (the runtime's cache key adds options, arch and NVRTC version). */
export function sourceHash(k: KernelSource): string {
  return createHash("sha256").update(k.entry).update("\0").update(k.source).digest("hex").slice(0, 16);
}

/** 1-D launch over `count` items with `block` threads each. */
export function linearGrid(count: SizeExpr, block: number): readonly [SizeExpr, SizeExpr, SizeExpr] {
  return [{ dims: count.dims, scale: count.scale, divisor: count.divisor * block }, constSize(1), constSize(1)];
}

/** What the compile target offers code generation beyond the symbol bounds: instruction families a kernel may use. */
export interface LowerTarget {
  /** Warpgroup MMA (wgmma): sm_90a, compute capability 9.0's architecture-specific target (H100, H200). */
  readonly wgmma: boolean;
}
/** The instructions every target from sm_80 has. */
export const PORTABLE_TARGET: LowerTarget = { wgmma: false };
export function lowerTarget(arch: string): LowerTarget {
  return { wgmma: arch === "sm_90a" };
}
