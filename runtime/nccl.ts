// NCCL collectives: one communicator per rank (one process per GPU), each with its own stream so
// collectives overlap with compute on other streams, or on a stream given per call (a plan's collectives run on
// its launches' stream, so a CUDA graph captures them with the kernels). Buffers are arena views; counts come from them.
import { native } from "./native.js";
import type { Device, Stream } from "./cuda.js";
import type { DType } from "../src/ir/dtype.js";
import type { DeviceView } from "./arena.js";

export type ReduceOp = "sum" | "prod" | "max" | "min" | "avg";

const NCCL_OPS: Readonly<Record<ReduceOp, number>> = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 };
// ncclDataType_t values; bf16 needs NCCL 2.10 or later.
const NCCL_TYPES: Partial<Readonly<Record<DType, number>>> = { u8: 1, i32: 2, i64: 4, f16: 6, f32: 7, bf16: 9 };

export const NCCL_UNIQUE_ID_BYTES = 128;

export function ncclVersion(): number {
  return native().ncclVersion();
}

/** A fresh unique id (128 bytes). Rank 0 makes it and every rank passes the same bytes to NcclComm.init. */
export function ncclUniqueId(): Uint8Array {
  return native().ncclGetUniqueId();
}

function ncclType(view: DeviceView): number {
  const type = NCCL_TYPES[view.dtype];
  if (type === undefined) throw new TypeError(`tsgc: NCCL cannot reduce ${view.dtype} views`);
  return type;
}

function sameType(a: DeviceView, b: DeviceView, what: string): number {
  if (a.dtype !== b.dtype) throw new TypeError(`tsgc: ${what}: send is ${a.dtype} but receive is ${b.dtype}`);
  return ncclType(a);
}

function expectBytes(what: string, expected: number, got: number): void {
  if (expected !== got) throw new RangeError(`tsgc: ${what}: receive buffer must be ${expected} bytes, got ${got}`);
}

/** Runs `body` between ncclGroupStart and ncclGroupEnd, so its collectives launch as one. */
export function ncclGroup<T>(body: () => T): T {
  native().ncclGroupStart();
  try {
    return body();
  } finally {
    native().ncclGroupEnd();
  }
}

export class NcclComm {
  private disposed = false;

  private constructor(
    readonly device: Device,
    readonly handle: bigint,
    readonly nranks: number,
    readonly rank: number,
    /** Collectives run here; make compute streams wait on an event recorded on it. */
    readonly stream: Stream,
  ) {}

  /** Joins the communicator as `rank` of `nranks`; blocks until every rank has joined. */
  static init(device: Device, options: { nranks: number; rank: number; id: Uint8Array }): NcclComm {
    const { nranks, rank, id } = options;
    if (!Number.isInteger(nranks) || nranks < 1 || !Number.isInteger(rank) || rank < 0 || rank >= nranks) {
      throw new RangeError(`tsgc: bad NCCL rank ${rank} of ${nranks}`);
    }
    if (id.byteLength !== NCCL_UNIQUE_ID_BYTES) throw new RangeError(`tsgc: an NCCL unique id is ${NCCL_UNIQUE_ID_BYTES} bytes, got ${id.byteLength}`);
    device.makeCurrent();
    const stream = device.createStream();
    try {
      return new NcclComm(device, native().ncclCommInitRank(nranks, id, rank), nranks, rank, stream);
    } catch (err) {
      stream.dispose();
      throw err;
    }
  }

  /** Reduces `send` across ranks into every rank's `recv`; on `stream` (default: the communicator's). */
  allReduce(send: DeviceView, recv: DeviceView, op: ReduceOp = "sum", stream: Stream = this.stream): void {
    const type = sameType(send, recv, "allReduce");
    expectBytes("allReduce", send.bytes, recv.bytes);
    this.device.makeCurrent();
    native().ncclAllReduce(send.pointer, recv.pointer, send.elements, type, NCCL_OPS[op], this.handle, stream.handle);
  }

  /** Every rank's `send` concatenated in rank order into `recv` (nranks times as large). */
  allGather(send: DeviceView, recv: DeviceView, stream: Stream = this.stream): void {
    const type = sameType(send, recv, "allGather");
    expectBytes("allGather", send.bytes * this.nranks, recv.bytes);
    this.device.makeCurrent();
    native().ncclAllGather(send.pointer, recv.pointer, send.elements, type, this.handle, stream.handle);
  }

  /** Reduces `send` across ranks; rank r receives block r (send is nranks times as large as recv). */
  reduceScatter(send: DeviceView, recv: DeviceView, op: ReduceOp = "sum", stream: Stream = this.stream): void {
    const type = sameType(send, recv, "reduceScatter");
    expectBytes("reduceScatter", send.bytes / this.nranks, recv.bytes);
    this.device.makeCurrent();
    native().ncclReduceScatter(send.pointer, recv.pointer, recv.elements, type, NCCL_OPS[op], this.handle, stream.handle);
  }

  /** Copies `root`'s `send` into every rank's `recv` (send is only read on the root). */
  broadcast(send: DeviceView, recv: DeviceView, root: number): void {
    const type = sameType(send, recv, "broadcast");
    expectBytes("broadcast", send.bytes, recv.bytes);
    this.device.makeCurrent();
    native().ncclBroadcast(send.pointer, recv.pointer, recv.elements, type, root, this.handle, this.stream.handle);
  }

  synchronize(): void {
    this.stream.synchronize();
  }

  dispose(): void {
    if (this.disposed) return;
    this.device.makeCurrent();
    native().ncclCommDestroy(this.handle);
    this.stream.dispose();
    this.disposed = true;
  }
}
