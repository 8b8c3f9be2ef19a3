// Staging a call's inputs for asynchronous copies, and reading its outputs back the same way.
//
// A synchronous cuMemcpyHtoD from pageable memory waits for the device and then for the copy, once per input (a
// paged decoder's step has about a dozen); run back to back before a CUDA graph launch they left the GPU idle for
// a good part of a batch-1 step. InputStaging packs every input of a call into one page-locked host buffer (at
// its arena offset's place in the span, or at a 16-byte aligned offset of its own; converted to its dtype's bytes on the way in: i32 and f32 values are written through
// a typed view, no intermediate arrays) and queues the copies on the stream the launches run on, so they run in
// stream order right before the kernels that read them: one cuMemcpyHtoDAsync for the whole call when the plan
// packs its inputs into one span (stagingLayout), else one per input. OutputFetch queues the reverse for
// the outputs a caller will read (a step's sampled tokens) after the launches, into pinned memory, so that the
// one wait for the stream covers them.
//
// The pinned buffers are reused from call to call: a caller must not stage again while the copies of the call that
// used them last may still be running (`pending`; the executor waits for that call's end first).

import { type DType, dtypeBytes } from "../src/ir/dtype.js";
import { formatShape, numElements } from "../src/ir/shape.js";
import { type HostTensor, tensorFromBytes, tensorToBytes } from "../src/ir/host-tensor.js";
import type { Arena } from "./arena.js";
import type { Device, PinnedBuffer, Stream } from "./cuda.js";

/** An input: a HostTensor, or the same with its values already in a typed array of its dtype (i32, f32). */
export interface InputTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Float64Array | Int32Array | Float32Array;
}

/** Where an input goes: a slot of the bucket being run. */
export interface InputSlot {
  readonly name: string;
  readonly offset: number;
}

const STAGING_ALIGN = 16;
const alignUp = (n: number) => Math.ceil(n / STAGING_ALIGN) * STAGING_ALIGN;

/** Bytes `t` takes in its dtype's storage format. */
export function inputBytes(t: InputTensor): number {
  return numElements(t.shape) * dtypeBytes(t.dtype);
}

/**
 * Writes `t`'s bytes at `byteOffset` of `target` (little-endian, as tensorToBytes). i32 and f32 go through a typed
 * view (a typed array's own values are copied whole; f64 values get ToInt32 / round-to-f32, what tensorToBytes
 * applies); other dtypes through tensorToBytes.
 */
export function writeInputBytes(t: InputTensor, target: ArrayBuffer, byteOffset: number): void {
  const n = numElements(t.shape);
  if (t.data.length !== n) throw new Error(`a ${t.dtype}${formatShape(t.shape)} input needs ${n} values, got ${t.data.length}`);
  if (t.dtype === "i32") {
    if (t.data instanceof Float32Array) throw new Error(`an i32 input holds its values in a Float32Array; use an Int32Array (or a HostTensor)`);
    new Int32Array(target, byteOffset, n).set(t.data);
    return;
  }
  if (t.dtype === "f32") {
    if (t.data instanceof Int32Array) throw new Error(`an f32 input holds its values in an Int32Array; use a Float32Array (or a HostTensor)`);
    new Float32Array(target, byteOffset, n).set(t.data);
    return;
  }
  if (!(t.data instanceof Float64Array)) throw new Error(`a ${t.dtype} input must be a HostTensor (f64 values); typed arrays are taken for i32 and f32 only`);
  new Uint8Array(target, byteOffset, n * dtypeBytes(t.dtype)).set(tensorToBytes(t as HostTensor));
}

/** One pinned host buffer, grown (never shrunk) to what a call needs. */
class PinnedArea {
  private buffer: PinnedBuffer | undefined;

  constructor(private readonly device: Device) {}

  take(bytes: number): PinnedBuffer {
    if (this.buffer === undefined || this.buffer.byteLength < bytes) {
      // at least double, so a growing workload reallocates a logarithmic number of times
      this.buffer = this.device.allocPinned(Math.max(alignUp(bytes), 2 * (this.buffer?.byteLength ?? 0), 4096));
    }
    return this.buffer;
  }
}

/** Where a call's inputs go: each input's place in the pinned buffer, and the copies that move them into the arena. */
export interface StagingLayout {
  /** Bytes of the pinned buffer the call needs. */
  readonly pinnedBytes: number;
  /** Per slot, in slot order: where its bytes are written in the pinned buffer, and how many. */
  readonly writes: readonly { readonly name: string; readonly pinnedOffset: number; readonly bytes: number }[];
  /** Host-to-device copies: pinned [pinnedOffset, + bytes) → arena [arenaOffset, + bytes). */
  readonly copies: readonly { readonly pinnedOffset: number; readonly arenaOffset: number; readonly bytes: number }[];
}

/** A span of the arena copied whole may carry at most this many bytes that are no input's (gaps and slot tails). */
export const STAGING_MAX_SPARE_BYTES = 64 * 1024;

/**
 * The copies of a call's inputs. The memory planner packs an entry's inputs back to back (src/lower/memory-plan.ts),
 * so they are mirrored into the pinned buffer at their arena offsets and go over in ONE copy of the span from the
 * first slot to the end of the last input's bytes; the gaps in between (alignment, the unused tail of a slot sized
 * for a larger bucket) carry stale bytes into space that belongs to no live buffer before the call. Slots spread
 * further apart than STAGING_MAX_SPARE_BYTES beyond the inputs' own bytes (a plan laid out otherwise) get a copy each.
 */
export function stagingLayout(slots: readonly InputSlot[], inputs: Readonly<Record<string, InputTensor>>): StagingLayout {
  const sized = slots.map((slot) => ({ slot, bytes: inputBytes(inputs[slot.name]!) })).filter((s) => s.bytes > 0);
  if (sized.length === 0) return { pinnedBytes: 0, writes: [], copies: [] };
  const first = Math.min(...sized.map((s) => s.slot.offset));
  const end = Math.max(...sized.map((s) => s.slot.offset + s.bytes));
  const own = sized.reduce((n, s) => n + s.bytes, 0);
  const disjoint = [...sized].sort((a, b) => a.slot.offset - b.slot.offset).every((s, i, all) => i === 0 || all[i - 1]!.slot.offset + all[i - 1]!.bytes <= s.slot.offset);
  if (disjoint && end - first - own <= STAGING_MAX_SPARE_BYTES) {
    return {
      pinnedBytes: end - first,
      writes: sized.map((s) => ({ name: s.slot.name, pinnedOffset: s.slot.offset - first, bytes: s.bytes })),
      copies: [{ pinnedOffset: 0, arenaOffset: first, bytes: end - first }],
    };
  }
  let at = 0;
  const writes: { name: string; pinnedOffset: number; bytes: number }[] = [];
  const copies: { pinnedOffset: number; arenaOffset: number; bytes: number }[] = [];
  for (const s of sized) {
    writes.push({ name: s.slot.name, pinnedOffset: at, bytes: s.bytes });
    copies.push({ pinnedOffset: at, arenaOffset: s.slot.offset, bytes: s.bytes });
    at += alignUp(s.bytes);
  }
  return { pinnedBytes: at, writes, copies };
}

export class InputStaging {
  private readonly area: PinnedArea;
  /** Copies queued by the last `stage` whose stream has not been waited for since. */
  pending = false;

  constructor(device: Device) {
    this.area = new PinnedArea(device);
  }

  /**
   * Packs `inputs` (one per slot, already checked against the slots' dtypes and shapes) into the pinned buffer and
   * queues their copies into the arena on `stream` (stagingLayout). The caller must have waited for the previous
   * call's copies.
   */
  stage(slots: readonly InputSlot[], inputs: Readonly<Record<string, InputTensor>>, arena: Arena, stream: Stream): void {
    if (this.pending) throw new Error("internal: inputs staged again before the copies of the last call were waited for");
    const layout = stagingLayout(slots, inputs);
    const pinned = this.area.take(layout.pinnedBytes);
    for (const w of layout.writes) writeInputBytes(inputs[w.name]!, pinned.buffer, pinned.byteOffset + w.pinnedOffset);
    this.pending = true;
    for (const c of layout.copies) arena.view(c.arenaOffset, c.bytes).copyFromHostAsync(pinned.slice(c.pinnedOffset, c.bytes), stream);
  }
}

/** Outputs queued for an asynchronous read: their bytes land in pinned memory once the stream has finished. */
export class OutputFetch {
  private readonly area: PinnedArea;
  private fetched = new Map<string, { readonly dtype: DType; readonly shape: readonly number[]; readonly bytes: PinnedBuffer }>();

  constructor(device: Device) {
    this.area = new PinnedArea(device);
  }

  /** Forgets the outputs of the last call (a new call is about to overwrite the device buffers and the pinned area). */
  clear(): void {
    this.fetched = new Map();
  }

  /** Queues a copy of each output (whole, at its actual shape) from the arena into pinned memory on `stream`. */
  queue(outputs: readonly { readonly name: string; readonly dtype: DType; readonly shape: readonly number[]; readonly offset: number }[], arena: Arena, stream: Stream): void {
    let total = 0;
    for (const o of outputs) total += alignUp(numElements(o.shape) * dtypeBytes(o.dtype));
    const pinned = this.area.take(total);
    const fetched = new Map<string, { readonly dtype: DType; readonly shape: readonly number[]; readonly bytes: PinnedBuffer }>();
    let at = 0;
    for (const o of outputs) {
      const bytes = numElements(o.shape) * dtypeBytes(o.dtype);
      const target = pinned.slice(at, bytes);
      if (bytes > 0) arena.view(o.offset, bytes).copyToHostAsync(target, stream);
      fetched.set(o.name, { dtype: o.dtype, shape: o.shape, bytes: target });
      at += alignUp(bytes);
    }
    this.fetched = fetched;
  }

  /** Output `name` as fetched (its dtype, shape and pinned bytes), or undefined when it was not. */
  entry(name: string): { readonly dtype: DType; readonly shape: readonly number[]; readonly bytes: PinnedBuffer } | undefined {
    return this.fetched.get(name);
  }

  /**
   * Rows [first, first + count) of output `name` if it was fetched (the caller has waited for the stream), as a
   * tensor of its own (the pinned bytes are reused by the next call); undefined when it was not fetched.
   */
  read(name: string, first: number, count: number, rowBytes: number): HostTensor | undefined {
    const f = this.fetched.get(name);
    if (f === undefined) return undefined;
    const bytes = f.bytes.bytes().slice(first * rowBytes, (first + count) * rowBytes);
    return tensorFromBytes(f.dtype, f.shape.length === 0 ? [] : [count, ...f.shape.slice(1)], bytes);
  }
}
