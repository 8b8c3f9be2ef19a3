// Loads the compiled addon (build/Release/tsgc_native.node) and declares its raw interface.
// Everything here is untyped-by-nature C++ surface; the rest of runtime/ wraps it in classes.
// Handles and device pointers are bigints; counts and sizes are numbers.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export type Handle = bigint;

export interface NativeDeviceInfo {
  name: string;
  major: number;
  minor: number;
  smCount: number;
  totalMemoryBytes: number;
  maxSharedBytesPerBlockOptin: number;
  l2CacheBytes: number;
  maxThreadsPerBlock: number;
  warpSize: number;
  pciBusId: number;
}

export interface NativeFunctionAttributes {
  maxThreadsPerBlock: number;
  staticSharedBytes: number;
  localBytes: number;
  registers: number;
  maxDynamicSharedBytes: number;
}

export interface NativeGraphKernelNode {
  node: Handle;
  function: Handle;
  grid: [number, number, number];
  block: [number, number, number];
  sharedBytes: number;
}

export interface NativeCompileResult {
  ok: boolean;
  status: string;
  log: string;
  image?: Uint8Array;
}

export interface NativeAddon {
  abiVersion: number;
  // CUDA driver
  cudaDriverVersion(): number;
  cudaLibraryPath(): string;
  deviceCount(): number;
  deviceInfo(ordinal: number): NativeDeviceInfo;
  contextRetain(ordinal: number): Handle;
  contextRelease(ordinal: number): void;
  contextSetCurrent(context: Handle): void;
  contextSynchronize(): void;
  memGetInfo(): { freeBytes: number; totalBytes: number };
  memAlloc(bytes: number | bigint): Handle;
  memFree(pointer: Handle): void;
  hostAlloc(bytes: number): { buffer: ArrayBuffer; address: Handle };
  memcpyHtoD(dst: Handle, src: ArrayBufferView): void;
  memcpyDtoH(dst: ArrayBufferView, src: Handle): void;
  memcpyDtoD(dst: Handle, src: Handle, bytes: number): void;
  memcpyHtoDAsync(dst: Handle, srcHost: Handle, bytes: number, stream: Handle): void;
  memcpyDtoHAsync(dstHost: Handle, src: Handle, bytes: number, stream: Handle): void;
  memcpyDtoDAsync(dst: Handle, src: Handle, bytes: number, stream: Handle): void;
  memsetD8Async(dst: Handle, value: number, bytes: number, stream: Handle): void;
  moduleLoad(image: Uint8Array): Handle;
  moduleUnload(module: Handle): void;
  moduleGetFunction(module: Handle, name: string): Handle;
  functionAttributes(fn: Handle): NativeFunctionAttributes;
  functionSetMaxDynamicShared(fn: Handle, bytes: number): void;
  functionParamSizes(fn: Handle): number[] | null;
  launch(
    fn: Handle,
    gx: number, gy: number, gz: number,
    bx: number, by: number, bz: number,
    sharedBytes: number, stream: Handle, params: Uint8Array,
    programmatic?: boolean,
  ): void;
  streamCreate(): Handle;
  streamDestroy(stream: Handle): void;
  streamSynchronize(stream: Handle): void;
  streamQuery(stream: Handle): boolean;
  streamWaitEvent(stream: Handle, event: Handle): void;
  eventCreate(timing: boolean): Handle;
  eventDestroy(event: Handle): void;
  eventRecord(event: Handle, stream: Handle): void;
  eventSynchronize(event: Handle): void;
  eventQuery(event: Handle): boolean;
  eventElapsedMs(start: Handle, end: Handle): number;
  streamBeginCapture(stream: Handle): void;
  streamEndCapture(stream: Handle): Handle;
  graphInstantiate(graph: Handle): Handle;
  graphLaunch(exec: Handle, stream: Handle): void;
  graphDestroy(graph: Handle): void;
  graphExecDestroy(exec: Handle): void;
  graphKernelNodes(graph: Handle): NativeGraphKernelNode[];
  graphExecSetKernelParams(
    exec: Handle, node: Handle, fn: Handle,
    gx: number, gy: number, gz: number,
    bx: number, by: number, bz: number,
    sharedBytes: number, params: Uint8Array,
  ): void;
  // NVRTC
  nvrtcVersion(): { major: number; minor: number; libraryPath: string };
  nvrtcSupportedArchs(): number[] | null;
  nvrtcCompile(source: string, programName: string, options: readonly string[], output: "cubin" | "ptx"): NativeCompileResult;
  // NCCL
  ncclVersion(): number;
  ncclLibraryPath(): string;
  ncclGetUniqueId(): Uint8Array;
  ncclCommInitRank(nranks: number, id: Uint8Array, rank: number): Handle;
  ncclCommDestroy(comm: Handle): void;
  ncclAllReduce(send: Handle, recv: Handle, count: number, dtype: number, op: number, comm: Handle, stream: Handle): void;
  ncclAllGather(send: Handle, recv: Handle, sendCount: number, dtype: number, comm: Handle, stream: Handle): void;
  ncclReduceScatter(send: Handle, recv: Handle, recvCount: number, dtype: number, op: number, comm: Handle, stream: Handle): void;
  ncclBroadcast(send: Handle, recv: Handle, count: number, dtype: number, root: number, comm: Handle, stream: Handle): void;
  ncclGroupStart(): void;
  ncclGroupEnd(): void;
  // cuBLAS (optional; column-major, bf16 in and out, f32 accumulation)
  cublasLibraryPath(): string;
  cublasCreate(): Handle;
  cublasDestroy(handle: Handle): void;
  cublasSetStream(handle: Handle, stream: Handle): void;
  cublasVersion(handle: Handle): number;
  cublasGemmBf16(
    handle: Handle, m: number, n: number, k: number,
    a: Handle, b: Handle, c: Handle, lda: number, ldb: number, ldc: number,
    transA: boolean, transB: boolean,
  ): void;
}

const ADDON_FILE = join("build", "Release", "tsgc_native.node");

/** The repository (package) root: the nearest ancestor of this module holding build/ or package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "binding.gyp"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("tsgc: cannot find the package root (binding.gyp) above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** Absolute path of the compiled addon; worker threads load it from here too. */
export function addonPath(): string {
  return join(packageRoot(), ADDON_FILE);
}

let loaded: NativeAddon | undefined;

/** The addon, loaded once. Throws a clear error when it was never built; never touches CUDA itself. */
export function native(): NativeAddon {
  if (loaded !== undefined) return loaded;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new Error(`tsgc: the native addon is not built (${path} is missing); run \`npm install\` or \`npx node-gyp rebuild\``);
  }
  const require = createRequire(import.meta.url);
  loaded = require(path) as NativeAddon;
  return loaded;
}

/** The `code` of an error thrown by the addon (e.g. CUDA_ERROR_OUT_OF_MEMORY), if it has one. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}
