// Typed wrapper over the CUDA driver part of the addon: devices, streams, events, pinned host
// memory, modules, kernels and launches, and CUDA graphs (capture, replay, kernel-node update).
// Every object is owned explicitly: call dispose() when done (GPU resources are not left to GC).
import { native, type Handle, type NativeDeviceInfo, type NativeFunctionAttributes } from "./native.js";
import type { CompiledImage } from "./nvrtc.js";

/** What the driver reports of a device (the addon's fields), with its compute capability as an NVRTC target. */
export interface DeviceInfo extends Omit<NativeDeviceInfo, "major" | "minor"> {
  ordinal: number;
  computeCapability: { major: number; minor: number };
  /**
   * The NVRTC target for this device, e.g. "sm_80"; compute capability 9.0 (H100, H200) gets its architecture-specific
   * target "sm_90a" (warpgroup MMA: its cubins run on 9.0 devices only, which this one is).
   */
  arch: string;
}

/** Number of CUDA devices. Throws (naming the library and how to point at it) if there is no driver. */
export function deviceCount(): number {
  return native().deviceCount();
}

export function deviceInfo(ordinal: number): DeviceInfo {
  const raw = native().deviceInfo(ordinal);
  const { major, minor, ...rest } = raw;
  return { ordinal, ...rest, computeCapability: { major, minor }, arch: `sm_${major}${minor}${major === 9 && minor === 0 ? "a" : ""}` };
}

export function listDevices(): DeviceInfo[] {
  return Array.from({ length: deviceCount() }, (_, ordinal) => deviceInfo(ordinal));
}

/** The driver version as CUDA encodes it (13000 = 13.0). */
export function cudaDriverVersion(): number {
  return native().cudaDriverVersion();
}

/** Anything that names device memory: arena views, or raw allocations. */
export interface DevicePointer {
  readonly pointer: bigint;
  readonly bytes: number;
}

let currentContext: Handle | undefined;
const openDevices = new Map<number, Device>();

export class Device {
  readonly stream: Stream;
  private closed = false;

  private constructor(
    readonly ordinal: number,
    readonly info: DeviceInfo,
    private readonly context: Handle,
  ) {
    this.stream = new Stream(this, 0n);
  }

  /** Opens device `ordinal` (its primary context) and makes it current. Opening twice returns the same Device. */
  static open(ordinal = 0): Device {
    const existing = openDevices.get(ordinal);
    if (existing !== undefined) {
      existing.makeCurrent();
      return existing;
    }
    const count = deviceCount();
    if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
      throw new Error(`tsgc: no CUDA device ${ordinal}: this machine has ${count}`);
    }
    const info = deviceInfo(ordinal);
    const context = native().contextRetain(ordinal);
    currentContext = context;
    const device = new Device(ordinal, info, context);
    openDevices.set(ordinal, device);
    return device;
  }

  /** Makes this device's context current on the calling thread (cheap when it already is). */
  makeCurrent(): void {
    if (this.closed) throw new Error(`tsgc: device ${this.ordinal} was closed`);
    if (currentContext !== this.context) {
      native().contextSetCurrent(this.context);
      currentContext = this.context;
    }
  }

  memoryInfo(): { freeBytes: number; totalBytes: number } {
    this.makeCurrent();
    return native().memGetInfo();
  }

  /** Waits for all work on this device. */
  synchronize(): void {
    this.makeCurrent();
    native().contextSynchronize();
  }

  /** A new non-blocking stream (it does not synchronise with the legacy default stream). */
  createStream(): Stream {
    this.makeCurrent();
    return new Stream(this, native().streamCreate());
  }

  createEvent(options: { timing?: boolean } = {}): CudaEvent {
    this.makeCurrent();
    return new CudaEvent(this, native().eventCreate(options.timing ?? true));
  }

  /** Page-locked host memory, needed for truly asynchronous copies. Freed when garbage collected. */
  allocPinned(bytes: number): PinnedBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`tsgc: bad pinned buffer size ${bytes}`);
    this.makeCurrent();
    const { buffer, address } = native().hostAlloc(bytes);
    return new PinnedBuffer(buffer, address, 0, bytes);
  }

  /** Loads a CUBIN or PTX image (from compile() or the kernel cache) into this device. */
  loadModule(image: Uint8Array | CompiledImage): CudaModule {
    this.makeCurrent();
    const bytes = image instanceof Uint8Array ? image : image.image;
    return new CudaModule(this, native().moduleLoad(bytes));
  }

  /** Releases the primary context. Everything created on this device must be disposed first. */
  close(): void {
    if (this.closed) return;
    this.synchronize();
    native().contextRelease(this.ordinal);
    if (currentContext === this.context) currentContext = undefined;
    this.closed = true;
    openDevices.delete(this.ordinal);
  }
}

export class Stream {
  private disposed = false;
  constructor(
    readonly device: Device,
    /** 0n is the legacy default stream. */
    readonly handle: Handle,
  ) {}

  synchronize(): void {
    this.device.makeCurrent();
    native().streamSynchronize(this.handle);
  }

  /** True when all work queued on the stream has finished. */
  query(): boolean {
    this.device.makeCurrent();
    return native().streamQuery(this.handle);
  }

  /** Later work on this stream waits for `event` (recorded on any stream). */
  waitEvent(event: CudaEvent): void {
    this.device.makeCurrent();
    native().streamWaitEvent(this.handle, event.handle);
  }

  /** Captures everything `record` queues on this stream into a graph, instantiated and ready to replay. */
  capture(record: () => void): CudaGraph {
    return CudaGraph.capture(this, record);
  }

  dispose(): void {
    if (this.handle === 0n || this.disposed) return;
    this.device.makeCurrent();
    native().streamDestroy(this.handle);
    this.disposed = true;
  }
}

export class CudaEvent {
  private disposed = false;
  constructor(
    readonly device: Device,
    readonly handle: Handle,
  ) {}

  record(stream: Stream = this.device.stream): this {
    this.device.makeCurrent();
    native().eventRecord(this.handle, stream.handle);
    return this;
  }

  synchronize(): void {
    this.device.makeCurrent();
    native().eventSynchronize(this.handle);
  }

  /** True once the work before the recorded point has finished. */
  query(): boolean {
    this.device.makeCurrent();
    return native().eventQuery(this.handle);
  }

  /** Milliseconds between `start` and this event (both recorded, this one completed). */
  elapsedMsSince(start: CudaEvent): number {
    this.device.makeCurrent();
    return native().eventElapsedMs(start.handle, this.handle);
  }

  dispose(): void {
    if (this.disposed) return;
    this.device.makeCurrent();
    native().eventDestroy(this.handle);
    this.disposed = true;
  }
}

interface TypedArrayConstructor<T> {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** Page-locked host memory. `slice` shares the memory; the whole allocation lives until collected. */
export class PinnedBuffer {
  constructor(
    readonly buffer: ArrayBuffer,
    private readonly base: Handle,
    readonly byteOffset: number,
    readonly byteLength: number,
  ) {}

  /** Host address of this slice, for asynchronous copies. */
  get address(): Handle {
    return this.base + BigInt(this.byteOffset);
  }

  bytes(): Uint8Array {
    return new Uint8Array(this.buffer, this.byteOffset, this.byteLength);
  }

  /** A typed view of the slice, e.g. `pinned.typed(Float32Array)`. */
  typed<T>(ctor: TypedArrayConstructor<T>): T {
    if (this.byteOffset % ctor.BYTES_PER_ELEMENT !== 0 || this.byteLength % ctor.BYTES_PER_ELEMENT !== 0) {
      throw new Error(`tsgc: pinned slice (offset ${this.byteOffset}, ${this.byteLength} bytes) is not a whole number of ${ctor.BYTES_PER_ELEMENT}-byte elements`);
    }
    return new ctor(this.buffer, this.byteOffset, this.byteLength / ctor.BYTES_PER_ELEMENT);
  }

  slice(offset: number, bytes: number): PinnedBuffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > this.byteLength) {
      throw new RangeError(`tsgc: pinned slice [${offset}, ${offset + bytes}) is outside a ${this.byteLength}-byte buffer`);
    }
    return new PinnedBuffer(this.buffer, this.base, this.byteOffset + offset, bytes);
  }
}

const kernelsByHandle = new Map<Handle, Kernel>();

export class CudaModule {
  private readonly kernels = new Map<string, Kernel>();
  private disposed = false;
  constructor(
    readonly device: Device,
    readonly handle: Handle,
  ) {}

  /** The kernel named `entry` (an extern "C" __global__ function). */
  kernel(entry: string): Kernel {
    const known = this.kernels.get(entry);
    if (known !== undefined) return known;
    this.device.makeCurrent();
    const kernel = new Kernel(this, entry, native().moduleGetFunction(this.handle, entry));
    this.kernels.set(entry, kernel);
    kernelsByHandle.set(kernel.handle, kernel);
    return kernel;
  }

  dispose(): void {
    if (this.disposed) return;
    this.device.makeCurrent();
    native().moduleUnload(this.handle);
    for (const kernel of this.kernels.values()) kernelsByHandle.delete(kernel.handle);
    this.disposed = true;
  }
}

export type Dim3 = number | readonly [number] | readonly [number, number] | readonly [number, number, number];

/**
 * One kernel argument: a device pointer (an arena view, or `{ptr}`), or a scalar tagged with its C type.
 * `[out, inp, { i32: n }, { f32: 0.5 }]` passes `(float* out, const float* inp, int n, float scale)`.
 */
export type KernelArg =
  | DevicePointer
  | { readonly ptr: bigint }
  | { readonly i32: number }
  | { readonly u32: number }
  | { readonly i64: bigint }
  | { readonly f32: number };

export interface LaunchConfig {
  grid: Dim3;
  block: Dim3;
  /** Dynamic shared memory per block, in bytes. */
  sharedBytes?: number;
  /** Defaults to the device's legacy default stream. */
  stream?: Stream;
  args: readonly KernelArg[];
  /**
   * Programmatic dependent launch (compute capability 9.0+; ignored below and on drivers without cuLaunchKernelEx):
   * the kernel may start while the previous kernel in the stream is still finishing. Only for kernels that wait
   * (griddepcontrol.wait, `tsgc_grid_dependency_wait` in every generated kernel) before reading anything.
   */
  programmatic?: boolean;
}

export function dim3(dims: Dim3, what: string): [number, number, number] {
  const list: readonly number[] = typeof dims === "number" ? [dims] : dims;
  const out: [number, number, number] = [list[0] ?? 1, list[1] ?? 1, list[2] ?? 1];
  for (const d of out) {
    if (!Number.isInteger(d) || d < 1 || d > 0x7fffffff) throw new RangeError(`tsgc: bad ${what} dimensions [${list.join(", ")}]`);
  }
  return out;
}

function argSize(arg: KernelArg): number {
  return "i32" in arg || "u32" in arg || "f32" in arg ? 4 : 8;
}

function describeArg(arg: KernelArg): string {
  if ("pointer" in arg || "ptr" in arg) return "pointer";
  return Object.keys(arg)[0] ?? "?";
}

/** Packs arguments into 8-byte slots, one per parameter, as the addon expects. */
export function packArgs(args: readonly KernelArg[]): Uint8Array {
  const bytes = new Uint8Array(8 * args.length);
  const view = new DataView(bytes.buffer);
  args.forEach((arg, i) => {
    const at = 8 * i;
    if ("pointer" in arg) view.setBigUint64(at, arg.pointer, true);
    else if ("ptr" in arg) view.setBigUint64(at, arg.ptr, true);
    else if ("i32" in arg) {
      if (!Number.isInteger(arg.i32) || arg.i32 < -0x80000000 || arg.i32 > 0x7fffffff) throw new RangeError(`tsgc: argument ${i}: ${arg.i32} is not an i32`);
      view.setInt32(at, arg.i32, true);
    } else if ("u32" in arg) {
      if (!Number.isInteger(arg.u32) || arg.u32 < 0 || arg.u32 > 0xffffffff) throw new RangeError(`tsgc: argument ${i}: ${arg.u32} is not a u32`);
      view.setUint32(at, arg.u32, true);
    } else if ("i64" in arg) view.setBigInt64(at, BigInt.asIntN(64, arg.i64), true);
    else view.setFloat32(at, arg.f32, true);
  });
  return bytes;
}

export class Kernel {
  /** Byte size of each parameter as the driver reports it, or null on drivers before CUDA 12.4. */
  readonly paramSizes: readonly number[] | null;

  constructor(
    readonly module: CudaModule,
    readonly name: string,
    readonly handle: Handle,
  ) {
    this.paramSizes = native().functionParamSizes(handle);
  }

  get device(): Device {
    return this.module.device;
  }

  attributes(): NativeFunctionAttributes {
    this.device.makeCurrent();
    return native().functionAttributes(this.handle);
  }

  /** Allows more than 48 KiB of dynamic shared memory per block (up to the device's opt-in limit). */
  setMaxDynamicSharedBytes(bytes: number): void {
    this.device.makeCurrent();
    native().functionSetMaxDynamicShared(this.handle, bytes);
  }

  /** Checks the arguments against the kernel's parameters (where the driver can say) and packs them. */
  packArgs(args: readonly KernelArg[]): Uint8Array {
    const sizes = this.paramSizes;
    if (sizes !== null) {
      if (sizes.length !== args.length) {
        throw new TypeError(`tsgc: kernel '${this.name}' takes ${sizes.length} parameters (${sizes.join(", ")} bytes) but was given ${args.length} arguments`);
      }
      args.forEach((arg, i) => {
        if (sizes[i] !== argSize(arg)) {
          throw new TypeError(`tsgc: kernel '${this.name}' parameter ${i} is ${String(sizes[i])} bytes but argument ${i} is a ${describeArg(arg)} (${argSize(arg)} bytes)`);
        }
      });
    }
    return packArgs(args);
  }

  launch(config: LaunchConfig): void {
    const [gx, gy, gz] = dim3(config.grid, "grid");
    const [bx, by, bz] = dim3(config.block, "block");
    const params = this.packArgs(config.args);
    const stream = config.stream ?? this.device.stream;
    this.device.makeCurrent();
    const programmatic = config.programmatic === true && this.device.info.computeCapability.major >= 9;
    native().launch(this.handle, gx, gy, gz, bx, by, bz, config.sharedBytes ?? 0, stream.handle, params, programmatic);
  }
}

export interface GraphKernelNode {
  /** Position among the graph's kernel nodes, in the driver's order (capture order in practice). */
  readonly index: number;
  readonly node: Handle;
  /** The kernel, when it was loaded through this runtime. */
  readonly kernel: Kernel | undefined;
  readonly functionHandle: Handle;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly sharedBytes: number;
}

export interface KernelNodeUpdate {
  /** Launch a different kernel in this node (same signature family); defaults to the captured one. */
  kernel?: Kernel;
  grid?: Dim3;
  block?: Dim3;
  sharedBytes?: number;
  args: readonly KernelArg[];
}

/** A captured, instantiated CUDA graph. Keeps its template graph, whose nodes name what to update. */
export class CudaGraph {
  private disposed = false;
  private constructor(
    readonly stream: Stream,
    private readonly graph: Handle,
    private readonly exec: Handle,
  ) {}

  static capture(stream: Stream, record: () => void): CudaGraph {
    if (stream.handle === 0n) throw new Error("tsgc: the legacy default stream cannot be captured; use device.createStream()");
    stream.device.makeCurrent();
    const addon = native();
    addon.streamBeginCapture(stream.handle);
    try {
      record();
    } catch (err) {
      try {
        addon.graphDestroy(addon.streamEndCapture(stream.handle));
      } catch {
        // the capture was already invalidated; the original error is the one to report
      }
      throw err;
    }
    const graph = addon.streamEndCapture(stream.handle);
    try {
      return new CudaGraph(stream, graph, addon.graphInstantiate(graph));
    } catch (err) {
      addon.graphDestroy(graph);
      throw err;
    }
  }

  /** Replays the whole graph on `stream` (default: the stream it was captured on). */
  launch(stream: Stream = this.stream): void {
    stream.device.makeCurrent();
    native().graphLaunch(this.exec, stream.handle);
  }

  kernelNodes(): GraphKernelNode[] {
    this.stream.device.makeCurrent();
    return native().graphKernelNodes(this.graph).map((raw, index) => ({
      index,
      node: raw.node,
      kernel: kernelsByHandle.get(raw.function),
      functionHandle: raw.function,
      grid: raw.grid,
      block: raw.block,
      sharedBytes: raw.sharedBytes,
    }));
  }

  /** Changes one kernel node of the instantiated graph (arguments, geometry) without re-capturing. */
  updateKernelNode(node: GraphKernelNode, update: KernelNodeUpdate): void {
    const kernel = update.kernel ?? node.kernel;
    const params = kernel !== undefined ? kernel.packArgs(update.args) : packArgs(update.args);
    const [gx, gy, gz] = dim3(update.grid ?? node.grid, "grid");
    const [bx, by, bz] = dim3(update.block ?? node.block, "block");
    this.stream.device.makeCurrent();
    native().graphExecSetKernelParams(
      this.exec, node.node, kernel?.handle ?? node.functionHandle,
      gx, gy, gz, bx, by, bz, update.sharedBytes ?? node.sharedBytes, params,
    );
  }

  dispose(): void {
    if (this.disposed) return;
    this.stream.device.makeCurrent();
    native().graphExecDestroy(this.exec);
    native().graphDestroy(this.graph);
    this.disposed = true;
  }
}
