// The native runtime's public surface: NVRTC, the CUDA driver (devices, streams, events, modules,
// launches, graphs), the arena, NCCL collectives, the optional cuBLAS GEMM and the compiled-kernel cache.
export { addonPath, errorCode, native, type Handle } from "./native.js";
export {
  compile, imageOrThrow, nvrtcOptions, nvrtcSupportedArchs, nvrtcVersion, parseArch, NvrtcCompileError,
  type CompileOptions, type CompiledImage, type NvrtcVersion, type OutputKind,
} from "./nvrtc.js";
export {
  cudaDriverVersion, CudaEvent, CudaGraph, CudaModule, Device, deviceCount, deviceInfo, dim3, Kernel, listDevices,
  packArgs, PinnedBuffer, Stream,
  type DeviceInfo, type DevicePointer, type Dim3, type GraphKernelNode, type KernelArg, type KernelNodeUpdate, type LaunchConfig,
} from "./cuda.js";
export { Arena, ARENA_ALIGNMENT, DeviceView } from "./arena.js";
export { NcclComm, ncclGroup, ncclUniqueId, ncclVersion, NCCL_UNIQUE_ID_BYTES, type ReduceOp } from "./nccl.js";
export {
  Cublas, cublasAvailable, cublasLibraryPath, rowMajorABt, type GemmBf16, type GemmOperand, type RowMajorABt,
} from "./cublas.js";
export {
  cacheKey, CacheArchiveError, CacheEntryError, CacheFullError, CacheUnusableError, clearKernelMemo, CODEGEN_VERSION, compileCount, compileKernels,
  decodeEntry, decodePack, defaultCacheDir, encodeEntry, encodePack, KernelCache, loadKernels,
  type CacheEntry, type CacheKeyInputs, type CacheListing, type CacheProblem, type CompiledKernel, type CompileKernelsOptions,
  type CompileKernelsResult, type CompileProgress, type EntryHeader, type KernelOrigin, type KernelSource, type LoadedKernels,
  type PackFile,
} from "./kernel-cache.js";
export { type PoolKind } from "./compile-pool.js";
export { PlanExecutor, type ExecutorOptions } from "./executor.js";
