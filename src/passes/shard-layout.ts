// Layouts of a value across the ranks of a rank set, for the sharding pass (shard.ts).
//
//   replicated  every rank holds the whole value
//   partial     every rank holds a summand: the value is their sum (a row-parallel product, one rank's experts)
//   split       along each listed axis (a static dim of `size`), rank r holds the indices of parts[r], a list of
//               ascending half-open ranges; parts may overlap (a KV head that several ranks replicate) or be empty
//
// Parts are ranges, not index lists: a head split is one range of rows per rank, so is a vocabulary or an expert
// split, and a whole range maps through a reshape by scaling.

import type { IndexRange } from "../ir/graph.js";
import { type Dim, type Shape, isStaticDim, sameElementCount } from "../ir/shape.js";

/** A rank's indices along one axis: ascending, disjoint ranges. */
export type Part = readonly IndexRange[];

export interface AxisSplit {
  readonly axis: number;
  /** The whole dim. */
  readonly size: number;
  /** parts[r]: what rank r holds. */
  readonly parts: readonly Part[];
}

export type Layout = { readonly kind: "replicated" } | { readonly kind: "partial" } | { readonly kind: "split"; readonly axes: readonly AxisSplit[] };

export const REPLICATED: Layout = { kind: "replicated" };
export const PARTIAL: Layout = { kind: "partial" };

export function split(...axes: AxisSplit[]): Layout {
  return { kind: "split", axes: [...axes].sort((a, b) => a.axis - b.axis) };
}

export function layoutKey(l: Layout): string {
  return l.kind === "split" ? `split:${l.axes.map((a) => `${a.axis}/${a.size}=${a.parts.map((p) => p.map(([s, e]) => `${s}-${e}`).join(",")).join("|")}`).join(";")}` : l.kind;
}

export function sameLayout(a: Layout, b: Layout): boolean {
  return layoutKey(a) === layoutKey(b);
}

export function partSize(p: Part): number {
  return p.reduce((n, [s, e]) => n + (e - s), 0);
}

/** The split's only axis, when it splits exactly one. */
export function singleAxis(l: Layout): AxisSplit | undefined {
  return l.kind === "split" && l.axes.length === 1 ? l.axes[0] : undefined;
}

export function axisSplit(l: Layout, axis: number): AxisSplit | undefined {
  return l.kind === "split" ? l.axes.find((a) => a.axis === axis) : undefined;
}

/** The shape rank r holds of a value of `shape` in layout `l`. */
export function localShape(shape: Shape, l: Layout, rank: number): Dim[] {
  const out = [...shape];
  if (l.kind === "split") for (const a of l.axes) out[a.axis] = partSize(a.parts[rank]!);
  return out;
}

/** Whether rank r holds nothing of a split value (some axis' part is empty). */
export function holdsNothing(l: Layout, rank: number): boolean {
  return l.kind === "split" && l.axes.some((a) => partSize(a.parts[rank]!) === 0);
}

/** n items in `count` balanced contiguous ranges (the first n mod count one longer), scaled by `unit`. */
export function balancedRanges(n: number, count: number, unit = 1): IndexRange[] {
  const out: IndexRange[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const len = Math.floor(n / count) + (i < n % count ? 1 : 0);
    out.push([at * unit, (at + len) * unit]);
    at += len;
  }
  return out;
}

/** A part of one range (none when it is empty). */
export function rangePart([s, e]: IndexRange): Part {
  return e > s ? [[s, e]] : [];
}

/** Scales every range of a split by `factor` (a head range → its rows of head-dim columns). */
function scaleParts(parts: readonly Part[], factor: number): Part[] {
  return parts.map((p) => p.map(([s, e]): IndexRange => [s * factor, e * factor]));
}

/** Divides every range by `factor`, or undefined when a range is not a whole number of `factor`-blocks. */
function divideParts(parts: readonly Part[], factor: number): Part[] | undefined {
  if (parts.some((p) => p.some(([s, e]) => s % factor !== 0 || e % factor !== 0))) return undefined;
  return parts.map((p) => p.map(([s, e]): IndexRange => [s / factor, e / factor]));
}

/**
 * The layout a split value keeps through a reshape from `from` to `to`: an axis whose leading dims are the same
 * number of elements on both sides maps when it is the same dim, the first of dims merged into one (heads of
 * [T, H, D] → [T, H·D]), or a dim split into several whose first takes the split (whole blocks of the rest).
 */
export function reshapeSplit(from: Shape, to: Shape, l: Layout): Layout | undefined {
  if (l.kind !== "split") return l;
  const axes: AxisSplit[] = [];
  for (const a of l.axes) {
    const mapped = mapAxis(from, to, a);
    if (!mapped) return undefined;
    axes.push(mapped);
  }
  return split(...axes);
}

function mapAxis(from: Shape, to: Shape, a: AxisSplit): AxisSplit | undefined {
  const product = (dims: readonly Dim[]) => (dims.every(isStaticDim) ? (dims as number[]).reduce((x, y) => x * y, 1) : undefined);
  for (let b = 0; b < to.length; b++) {
    if (!sameElementCount(from.slice(0, a.axis), to.slice(0, b))) continue;
    const target = to[b]!;
    if (!isStaticDim(target)) continue;
    if (target === a.size) return { axis: b, size: target, parts: a.parts };
    // merge: from[a.axis .. j] become to[b]; the split's axis leads them
    for (let j = a.axis + 1; j < from.length; j++) {
      const inner = product(from.slice(a.axis + 1, j + 1));
      if (inner === undefined) break;
      if (a.size * inner === target) return { axis: b, size: target, parts: scaleParts(a.parts, inner) };
      if (a.size * inner > target) break;
    }
    // split: from[a.axis] becomes to[b .. j]; to[b] takes the split in blocks of the rest
    for (let j = b + 1; j < to.length; j++) {
      const inner = product(to.slice(b + 1, j + 1));
      if (inner === undefined) break;
      if (target * inner === a.size) {
        const parts = divideParts(a.parts, inner);
        return parts ? { axis: b, size: target, parts } : undefined;
      }
      if (target * inner > a.size) break;
    }
  }
  return undefined;
}
