// The arena: one cuMemAlloc per device, sized by the memory plan; every tensor is a view at an
// offset inside it. Views are bounds- and alignment-checked when made, so a bad plan fails here
// with the offsets in the message rather than as a corrupted neighbour on the GPU.
import { type DType, dtypeBytes } from "../src/ir/dtype.js";
import { ARENA_ALIGNMENT } from "../src/lower/memory-plan.js";
import { native } from "./native.js";
import type { Device, DevicePointer, PinnedBuffer, Stream } from "./cuda.js";

/** Offsets the memory planner hands out are multiples of this; the arena base is at least this aligned. */
export { ARENA_ALIGNMENT };

export class Arena {
  private freed = false;

  private constructor(
    readonly device: Device,
    readonly pointer: bigint,
    readonly bytes: number,
  ) {}

  /** Allocates the whole arena with a single cuMemAlloc (never one per tensor). */
  static allocate(device: Device, bytes: number): Arena {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`tsgc: arena size must be a positive integer, got ${bytes}`);
    const rounded = Math.ceil(bytes / ARENA_ALIGNMENT) * ARENA_ALIGNMENT;
    device.makeCurrent();
    return new Arena(device, native().memAlloc(rounded), rounded);
  }

  get isFreed(): boolean {
    return this.freed;
  }

  /** A view of `bytes` bytes at `offset`, holding `dtype` elements. */
  view(offset: number, bytes: number, dtype: DType = "u8"): DeviceView {
    this.checkLive();
    checkRange(offset, bytes, dtype, this.bytes, "arena");
    return new DeviceView(this, offset, bytes, dtype);
  }

  /** A view of `elements` elements of `dtype` at `offset`. */
  tensor(offset: number, dtype: DType, elements: number): DeviceView {
    return this.view(offset, elements * dtypeBytes(dtype), dtype);
  }

  /** The whole arena as bytes. */
  all(): DeviceView {
    return this.view(0, this.bytes, "u8");
  }

  free(): void {
    if (this.freed) return;
    this.device.makeCurrent();
    native().memFree(this.pointer);
    this.freed = true;
  }

  /** @internal */
  checkLive(): void {
    if (this.freed) throw new Error("tsgc: the arena was freed; its views are no longer valid");
  }
}

function checkRange(offset: number, bytes: number, dtype: DType, limit: number, what: string): void {
  const size = dtypeBytes(dtype);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0) {
    throw new RangeError(`tsgc: bad view: offset ${offset} and size ${bytes} must be non-negative integers`);
  }
  if (offset + bytes > limit) {
    throw new RangeError(`tsgc: view [${offset}, ${offset + bytes}) (${bytes} bytes) is outside the ${limit}-byte ${what}`);
  }
  if (offset % size !== 0) throw new RangeError(`tsgc: view offset ${offset} is not aligned to ${dtype} (${size} bytes)`);
  if (bytes % size !== 0) throw new RangeError(`tsgc: view size ${bytes} is not a whole number of ${dtype} elements (${size} bytes)`);
}

function sameSize(what: string, expected: number, got: number): void {
  if (expected !== got) throw new RangeError(`tsgc: ${what}: the view is ${expected} bytes but the other side is ${got} bytes`);
}

/** A typed window of the arena. Copies must match its size exactly; take a subview for part of it. */
export class DeviceView implements DevicePointer {
  readonly pointer: bigint;

  constructor(
    readonly arena: Arena,
    /** Offset from the arena's start. */
    readonly offset: number,
    readonly bytes: number,
    readonly dtype: DType,
  ) {
    this.pointer = arena.pointer + BigInt(offset);
  }

  get elements(): number {
    return this.bytes / dtypeBytes(this.dtype);
  }

  private get device(): Device {
    return this.arena.device;
  }

  /** A view inside this one; `offset` is relative to this view. */
  subview(offset: number, bytes: number, dtype: DType = this.dtype): DeviceView {
    this.arena.checkLive();
    checkRange(offset, bytes, dtype, this.bytes, `view at arena offset ${this.offset}`);
    return new DeviceView(this.arena, this.offset + offset, bytes, dtype);
  }

  /** Synchronous copy from host memory. Waits for all device work first, so it never races a stream. */
  copyFromHost(source: ArrayBufferView): void {
    this.arena.checkLive();
    sameSize("copyFromHost", this.bytes, source.byteLength);
    this.device.synchronize();
    native().memcpyHtoD(this.pointer, source);
  }

  /** Synchronous copy to host memory (waits for all device work first). Returns `target`. */
  copyToHost<T extends ArrayBufferView>(target: T): T {
    this.arena.checkLive();
    sameSize("copyToHost", this.bytes, target.byteLength);
    this.device.synchronize();
    native().memcpyDtoH(target, this.pointer);
    return target;
  }

  /** Synchronous device-to-device copy from `source` into this view. */
  copyFrom(source: DevicePointer): void {
    this.arena.checkLive();
    sameSize("copyFrom", this.bytes, source.bytes);
    this.device.synchronize();
    native().memcpyDtoD(this.pointer, source.pointer, this.bytes);
  }

  /** Queues a host-to-device copy on `stream`; the pinned source must stay untouched until it completes. */
  copyFromHostAsync(source: PinnedBuffer, stream: Stream): void {
    this.arena.checkLive();
    sameSize("copyFromHostAsync", this.bytes, source.byteLength);
    this.device.makeCurrent();
    native().memcpyHtoDAsync(this.pointer, source.address, this.bytes, stream.handle);
  }

  /** Queues a device-to-host copy on `stream`; read the pinned target after the stream (or an event) completes. */
  copyToHostAsync(target: PinnedBuffer, stream: Stream): void {
    this.arena.checkLive();
    sameSize("copyToHostAsync", this.bytes, target.byteLength);
    this.device.makeCurrent();
    native().memcpyDtoHAsync(target.address, this.pointer, this.bytes, stream.handle);
  }

  copyFromAsync(source: DevicePointer, stream: Stream): void {
    this.arena.checkLive();
    sameSize("copyFromAsync", this.bytes, source.bytes);
    this.device.makeCurrent();
    native().memcpyDtoDAsync(this.pointer, source.pointer, this.bytes, stream.handle);
  }

  /** Sets every byte to `byte` (0..255), e.g. to poison outputs before a launch. */
  fill(byte: number, stream: Stream = this.device.stream): void {
    this.arena.checkLive();
    if (!Number.isInteger(byte) || byte < 0 || byte > 255) throw new RangeError(`tsgc: fill byte must be 0..255, got ${byte}`);
    this.device.makeCurrent();
    native().memsetD8Async(this.pointer, byte, this.bytes, stream.handle);
  }
}
