// Reading a rank's slice of a checkpoint tensor (ParamSlice: index ranges along some axes, src/ir/graph.ts) without
// the rest of it where the layout allows.
//
//   sliceRuns  the slice as byte runs of the stored tensor, in the slice's row-major order, adjacent runs merged:
//              a split of axis 0 (q/k/v rows, lm_head and embedding rows, an expert range) is one run; a split of an
//              inner axis (o_proj's columns, an expert's intermediate columns) is a run per outer row
//   readSlice  the slice's bytes: runs read one by one when they are large, or through windows of the tensor that
//              cover several small runs (a window of at most WINDOW_BYTES, read when the runs fill a quarter of it),
//              so a column split costs a few large reads instead of one small read per row

import type { ParamSlice } from "../ir/graph.js";
import { formatShape, numElements } from "../ir/shape.js";
import type { Checkpoint } from "./checkpoint.js";

export interface ByteRun {
  readonly offset: number;
  readonly bytes: number;
}

const WINDOW_BYTES = 16 << 20;

/** The shape of a slice of a tensor of shape `full`. */
export function slicedShape(full: readonly number[], slice: Pick<ParamSlice, "axes">): number[] {
  const shape = [...full];
  for (const a of slice.axes) shape[a.axis] = a.ranges.reduce((n, [s, e]) => n + (e - s), 0);
  return shape;
}

/** The byte runs of `slice` in a row-major tensor of shape `full` with `elementBytes`-byte elements, merged where adjacent. */
export function sliceRuns(full: readonly number[], elementBytes: number, slice: Pick<ParamSlice, "axes">): ByteRun[] {
  const ranges = full.map((d, axis): readonly (readonly [number, number])[] => {
    const a = slice.axes.find((x) => x.axis === axis);
    if (!a) return [[0, d]];
    for (const [s, e] of a.ranges) if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= d)) throw new RangeError(`slice [${s}, ${e}) of axis ${axis} is outside ${formatShape(full)}`);
    return a.ranges;
  });
  // the innermost sliced axis: everything after it is contiguous
  const last = Math.max(-1, ...slice.axes.map((a) => a.axis));
  const inner = numElements(full.slice(last + 1)) * elementBytes;
  const strides = full.map((_, i) => numElements(full.slice(i + 1)) * elementBytes);
  const runs: ByteRun[] = [];
  const push = (offset: number, bytes: number) => {
    if (bytes === 0) return;
    const prev = runs[runs.length - 1];
    if (prev && prev.offset + prev.bytes === offset) runs[runs.length - 1] = { offset: prev.offset, bytes: prev.bytes + bytes };
    else runs.push({ offset, bytes });
  };
  if (last < 0) {
    push(0, numElements(full) * elementBytes);
    return runs;
  }
  const walk = (axis: number, base: number) => {
    for (const [s, e] of ranges[axis]!) {
      if (axis === last) push(base + s * strides[axis]!, (e - s) * inner);
      else for (let i = s; i < e; i++) walk(axis + 1, base + i * strides[axis]!);
    }
  };
  walk(0, 0);
  return runs;
}

/** The bytes of `slice` of checkpoint tensor `name` (stored with `elementBytes`-byte elements), in the slice's order. */
export async function readSlice(checkpoint: Checkpoint, name: string, slice: ParamSlice, elementBytes: number): Promise<Uint8Array> {
  const info = checkpoint.tensor(name);
  if (formatShape(info.shape) !== formatShape(slice.full)) throw new Error(`${name} in ${info.file} is ${formatShape(info.shape)}, the slice is of ${formatShape(slice.full)}`);
  const runs = sliceRuns(slice.full, elementBytes, slice);
  const out = new Uint8Array(runs.reduce((n, r) => n + r.bytes, 0));
  let at = 0;
  for (let i = 0; i < runs.length; ) {
    // a window from this run on, as long as the runs in it fill a quarter of it
    let j = i + 1;
    let filled = runs[i]!.bytes;
    while (j < runs.length && runs[j]!.offset + runs[j]!.bytes - runs[i]!.offset <= WINDOW_BYTES) {
      const span = runs[j]!.offset + runs[j]!.bytes - runs[i]!.offset;
      if ((filled + runs[j]!.bytes) * 4 < span) break;
      filled += runs[j]!.bytes;
      j++;
    }
    if (j === i + 1) {
      await checkpoint.readInto(name, out.subarray(at, at + runs[i]!.bytes), runs[i]!.offset);
      at += runs[i]!.bytes;
    } else {
      const start = runs[i]!.offset;
      const window = new Uint8Array(runs[j - 1]!.offset + runs[j - 1]!.bytes - start);
      await checkpoint.readInto(name, window, start);
      for (let k = i; k < j; k++) {
        out.set(window.subarray(runs[k]!.offset - start, runs[k]!.offset - start + runs[k]!.bytes), at);
        at += runs[k]!.bytes;
      }
    }
    i = j;
  }
  return out;
}
