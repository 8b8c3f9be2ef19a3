// The arena: one cuMemAlloc per device, sized by the memory plan; every tensor is a view at an
// offset inside it. Views are bounds- and alignment-checked when made, so a bad plan fails here
// with the offsets in the message rather than as a corrupted neighbour on the GPU.
import { native } from "./native.js";
import type { Device, DevicePointer, PinnedBuffer, Stream } from "./cuda.js";

/** Storage types the runtime moves around (the IR's dtypes; fp4e2m1x2 and e8m0 are byte-sized storage). */
export type Dtype = "f32" | "f16" | "bf16" | "i32" | "i64" | "u8" | "bool" | "fp4e2m1x2" | "e8m0";

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, u8: 1, bool: 1, fp4e2m1x2: 1, e8m0: 1,
};

/** Offsets the memory planner hands out are multiples of this; the arena base is at least this aligned. */
export const ARENA_ALIGNMENT = 256;

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
  view(offset: number, bytes: number, dtype: Dtype = "u8"): DeviceView {
    this.checkLive();
    checkRange(offset, bytes, dtype, this.bytes, "arena");
    return new DeviceView(this, offset, bytes, dtype);
  }

  /** A view of `elements` elements of `dtype` at `offset`. */
  tensor(offset: number, dtype: Dtype, elements: number): DeviceView {
    return this.view(offset, elements * DTYPE_BYTES[dtype], dtype);
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

function checkRange(offset: number, bytes: number, dtype: Dtype, limit: number, what: string): void {
  const size = DTYPE_BYTES[dtype];
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
    readonly dtype: Dtype,
  ) {
    this.pointer = arena.pointer + BigInt(offset);
  }

  get elements(): number {
    return this.bytes / DTYPE_BYTES[this.dtype];
  }

  private get device(): Device {
    return this.arena.device;
  }

  /** A view inside this one; `offset` is relative to this view. */
  subview(offset: number, bytes: number, dtype: Dtype = this.dtype): DeviceView {
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
