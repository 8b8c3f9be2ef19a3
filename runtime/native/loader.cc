// Finds libcuda, libnvrtc, libnccl and libcublas at run time with dlopen and resolves the symbols in api.h.
// A library that cannot be found is an error naming it, every path tried (with dlerror's reason)
// and the environment variable that overrides the search.
#include <dlfcn.h>

// Bind to the oldest dl* symbol versions (glibc 2.2.5) rather than 2.34's, so the addon built on a
// new distribution still loads where node itself does (node needs glibc 2.28).
#if defined(__x86_64__) && defined(__GLIBC__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
#endif

#include <cstdlib>
#include <mutex>
#include <vector>

#include "api.h"

namespace tsgc {
namespace {

struct LibrarySpec {
  const char* what;     // shown in messages: "libnvrtc (NVIDIA's run-time CUDA compiler)"
  const char* env_var;  // overrides the search when set
  std::vector<std::string> candidates;
  const char* hint;  // one sentence on how to get the library
};

void* open_library(const LibrarySpec& spec, std::string& opened_path) {
  std::vector<std::string> tried;
  std::vector<std::string> paths;
  const char* from_env = std::getenv(spec.env_var);
  if (from_env != nullptr && *from_env != '\0') {
    paths.emplace_back(from_env);
  } else {
    paths = spec.candidates;
  }
  for (const std::string& path : paths) {
    dlerror();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      opened_path = path;
      return handle;
    }
    const char* reason = dlerror();
    tried.push_back("  " + path + (from_env != nullptr && *from_env != '\0' ? " (from " + std::string(spec.env_var) + ")" : "") +
                    ": " + (reason != nullptr ? reason : "not found"));
  }
  std::string message = std::string(spec.what) + " could not be loaded. Tried:\n";
  for (const std::string& line : tried) message += line + "\n";
  message += "Set " + std::string(spec.env_var) + " to the library's full path. " + spec.hint;
  throw LibraryError{"TSGC_LIBRARY_NOT_FOUND", message};
}

// Resolves the first of `names` that the library exports; `required` decides whether none is an error.
template <typename Fn>
void resolve(void* handle, const std::string& path, Fn& slot, std::initializer_list<const char*> names,
             bool required = true) {
  for (const char* name : names) {
    void* symbol = dlsym(handle, name);
    if (symbol != nullptr) {
      slot = reinterpret_cast<Fn>(symbol);
      return;
    }
  }
  slot = nullptr;
  if (required) {
    dlclose(handle);
    throw LibraryError{"TSGC_SYMBOL_NOT_FOUND", "symbol " + std::string(*names.begin()) + " not found in " + path +
                                                    " (is this the right library, and recent enough?)"};
  }
}

std::vector<std::string> with_cuda_dirs(std::initializer_list<const char*> sonames) {
  std::vector<std::string> out;
  for (const char* name : sonames) out.emplace_back(name);
  // Toolkit installs are often not in the loader's cache; look in the usual place after it.
  for (const char* name : sonames) out.push_back(std::string("/usr/local/cuda/lib64/") + name);
  return out;
}

template <typename Api>
const Api& load_once(std::mutex& mutex, Api*& loaded, void (*fill)(Api&)) {
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded == nullptr) {
    Api* api = new Api();
    try {
      fill(*api);
    } catch (...) {
      delete api;
      throw;
    }
    loaded = api;  // kept for the life of the process, like the dlopen handle
  }
  return *loaded;
}

void fill_cuda(CudaApi& api) {
  const LibrarySpec spec{"libcuda (the NVIDIA driver API)", "TSGC_CUDA_LIBRARY", {"libcuda.so.1", "libcuda.so"},
                         "It ships with the NVIDIA driver; a machine without an NVIDIA GPU has none."};
  void* h = open_library(spec, api.path);
  const std::string& p = api.path;
  resolve(h, p, api.cuInit, {"cuInit"});
  resolve(h, p, api.cuDriverGetVersion, {"cuDriverGetVersion"});
  resolve(h, p, api.cuGetErrorName, {"cuGetErrorName"});
  resolve(h, p, api.cuDeviceGetCount, {"cuDeviceGetCount"});
  resolve(h, p, api.cuDeviceGet, {"cuDeviceGet"});
  resolve(h, p, api.cuDeviceGetName, {"cuDeviceGetName"});
  resolve(h, p, api.cuDeviceGetAttribute, {"cuDeviceGetAttribute"});
  resolve(h, p, api.cuDeviceTotalMem, {"cuDeviceTotalMem_v2"});
  resolve(h, p, api.cuDevicePrimaryCtxRetain, {"cuDevicePrimaryCtxRetain"});
  resolve(h, p, api.cuDevicePrimaryCtxRelease, {"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"});
  resolve(h, p, api.cuCtxSetCurrent, {"cuCtxSetCurrent"});
  resolve(h, p, api.cuCtxSynchronize, {"cuCtxSynchronize"});
  resolve(h, p, api.cuMemGetInfo, {"cuMemGetInfo_v2"});
  resolve(h, p, api.cuMemAlloc, {"cuMemAlloc_v2"});
  resolve(h, p, api.cuMemFree, {"cuMemFree_v2"});
  resolve(h, p, api.cuMemHostAlloc, {"cuMemHostAlloc"});
  resolve(h, p, api.cuMemFreeHost, {"cuMemFreeHost"});
  resolve(h, p, api.cuMemcpyHtoD, {"cuMemcpyHtoD_v2"});
  resolve(h, p, api.cuMemcpyDtoH, {"cuMemcpyDtoH_v2"});
  resolve(h, p, api.cuMemcpyDtoD, {"cuMemcpyDtoD_v2"});
  resolve(h, p, api.cuMemcpyHtoDAsync, {"cuMemcpyHtoDAsync_v2"});
  resolve(h, p, api.cuMemcpyDtoHAsync, {"cuMemcpyDtoHAsync_v2"});
  resolve(h, p, api.cuMemcpyDtoDAsync, {"cuMemcpyDtoDAsync_v2"});
  resolve(h, p, api.cuMemsetD8Async, {"cuMemsetD8Async"});
  resolve(h, p, api.cuModuleLoadDataEx, {"cuModuleLoadDataEx"});
  resolve(h, p, api.cuModuleUnload, {"cuModuleUnload"});
  resolve(h, p, api.cuModuleGetFunction, {"cuModuleGetFunction"});
  resolve(h, p, api.cuFuncGetAttribute, {"cuFuncGetAttribute"});
  resolve(h, p, api.cuFuncSetAttribute, {"cuFuncSetAttribute"});
  resolve(h, p, api.cuFuncGetParamInfo, {"cuFuncGetParamInfo"}, false);
  resolve(h, p, api.cuLaunchKernel, {"cuLaunchKernel"});
  resolve(h, p, api.cuLaunchKernelEx, {"cuLaunchKernelEx"}, false);
  resolve(h, p, api.cuStreamCreate, {"cuStreamCreate"});
  resolve(h, p, api.cuStreamDestroy, {"cuStreamDestroy_v2"});
  resolve(h, p, api.cuStreamSynchronize, {"cuStreamSynchronize"});
  resolve(h, p, api.cuStreamQuery, {"cuStreamQuery"});
  resolve(h, p, api.cuStreamWaitEvent, {"cuStreamWaitEvent"});
  resolve(h, p, api.cuEventCreate, {"cuEventCreate"});
  resolve(h, p, api.cuEventDestroy, {"cuEventDestroy_v2"});
  resolve(h, p, api.cuEventRecord, {"cuEventRecord"});
  resolve(h, p, api.cuEventSynchronize, {"cuEventSynchronize"});
  resolve(h, p, api.cuEventQuery, {"cuEventQuery"});
  resolve(h, p, api.cuEventElapsedTime, {"cuEventElapsedTime_v2", "cuEventElapsedTime"});
  resolve(h, p, api.cuStreamBeginCapture, {"cuStreamBeginCapture_v2"});
  resolve(h, p, api.cuStreamEndCapture, {"cuStreamEndCapture"});
  resolve(h, p, api.cuGraphInstantiateWithFlags, {"cuGraphInstantiateWithFlags"});
  resolve(h, p, api.cuGraphLaunch, {"cuGraphLaunch"});
  resolve(h, p, api.cuGraphDestroy, {"cuGraphDestroy"});
  resolve(h, p, api.cuGraphExecDestroy, {"cuGraphExecDestroy"});
  resolve(h, p, api.cuGraphGetNodes, {"cuGraphGetNodes"});
  resolve(h, p, api.cuGraphNodeGetType, {"cuGraphNodeGetType"});
  resolve(h, p, api.cuGraphKernelNodeGetParams, {"cuGraphKernelNodeGetParams_v2", "cuGraphKernelNodeGetParams"});
  resolve(h, p, api.cuGraphExecKernelNodeSetParams,
          {"cuGraphExecKernelNodeSetParams_v2", "cuGraphExecKernelNodeSetParams"});
}

void fill_nvrtc(NvrtcApi& api) {
  const LibrarySpec spec{"libnvrtc (NVIDIA's run-time CUDA compiler)",
                         "TSGC_NVRTC_LIBRARY",
                         with_cuda_dirs({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}),
                         "It ships with the CUDA toolkit; on Debian, scripts/install-nvrtc installs it."};
  void* h = open_library(spec, api.path);
  const std::string& p = api.path;
  resolve(h, p, api.nvrtcGetErrorString, {"nvrtcGetErrorString"});
  resolve(h, p, api.nvrtcVersion, {"nvrtcVersion"});
  resolve(h, p, api.nvrtcGetNumSupportedArchs, {"nvrtcGetNumSupportedArchs"}, false);
  resolve(h, p, api.nvrtcGetSupportedArchs, {"nvrtcGetSupportedArchs"}, false);
  resolve(h, p, api.nvrtcCreateProgram, {"nvrtcCreateProgram"});
  resolve(h, p, api.nvrtcDestroyProgram, {"nvrtcDestroyProgram"});
  resolve(h, p, api.nvrtcCompileProgram, {"nvrtcCompileProgram"});
  resolve(h, p, api.nvrtcGetProgramLogSize, {"nvrtcGetProgramLogSize"});
  resolve(h, p, api.nvrtcGetProgramLog, {"nvrtcGetProgramLog"});
  resolve(h, p, api.nvrtcGetPTXSize, {"nvrtcGetPTXSize"});
  resolve(h, p, api.nvrtcGetPTX, {"nvrtcGetPTX"});
  resolve(h, p, api.nvrtcGetCUBINSize, {"nvrtcGetCUBINSize"}, false);
  resolve(h, p, api.nvrtcGetCUBIN, {"nvrtcGetCUBIN"}, false);
}

void fill_nccl(NcclApi& api) {
  const LibrarySpec spec{"libnccl (NVIDIA's collective communication library)", "TSGC_NCCL_LIBRARY",
                         {"libnccl.so.2", "libnccl.so"},
                         "It ships with NCCL packages (or the nvidia-nccl Python wheel, under nvidia/nccl/lib)."};
  void* h = open_library(spec, api.path);
  const std::string& p = api.path;
  resolve(h, p, api.ncclGetVersion, {"ncclGetVersion"});
  resolve(h, p, api.ncclGetErrorString, {"ncclGetErrorString"});
  resolve(h, p, api.ncclGetLastError, {"ncclGetLastError"}, false);
  resolve(h, p, api.ncclGetUniqueId, {"ncclGetUniqueId"});
  resolve(h, p, api.ncclCommInitRank, {"ncclCommInitRank"});
  resolve(h, p, api.ncclCommDestroy, {"ncclCommDestroy"});
  resolve(h, p, api.ncclAllReduce, {"ncclAllReduce"});
  resolve(h, p, api.ncclAllGather, {"ncclAllGather"});
  resolve(h, p, api.ncclReduceScatter, {"ncclReduceScatter"});
  resolve(h, p, api.ncclBroadcast, {"ncclBroadcast"});
  resolve(h, p, api.ncclGroupStart, {"ncclGroupStart"});
  resolve(h, p, api.ncclGroupEnd, {"ncclGroupEnd"});
}

void fill_cublas(CublasApi& api) {
  const LibrarySpec spec{"libcublas (NVIDIA's dense linear algebra library)",
                         "TSGC_CUBLAS_LIBRARY",
                         with_cuda_dirs({"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}),
                         "It ships with the CUDA toolkit and with the nvidia-cublas Python wheel (under nvidia/cublas/lib, "
                         "or nvidia/cu13/lib for CUDA 13); tsgc uses it only to measure the dense bf16 GEMM rate."};
  void* h = open_library(spec, api.path);
  const std::string& p = api.path;
  resolve(h, p, api.cublasCreate, {"cublasCreate_v2"});
  resolve(h, p, api.cublasDestroy, {"cublasDestroy_v2"});
  resolve(h, p, api.cublasSetStream, {"cublasSetStream_v2"});
  resolve(h, p, api.cublasGetVersion, {"cublasGetVersion_v2"});
  resolve(h, p, api.cublasGemmEx, {"cublasGemmEx"});
  resolve(h, p, api.cublasGetStatusName, {"cublasGetStatusName"}, false);
  resolve(h, p, api.cublasGetStatusString, {"cublasGetStatusString"}, false);
}

std::mutex cuda_mutex, nvrtc_mutex, nccl_mutex, cublas_mutex;
CudaApi* cuda_loaded = nullptr;
NvrtcApi* nvrtc_loaded = nullptr;
NcclApi* nccl_loaded = nullptr;
CublasApi* cublas_loaded = nullptr;

}  // namespace

const CudaApi& cuda_api() { return load_once(cuda_mutex, cuda_loaded, fill_cuda); }
const NvrtcApi& nvrtc_api() { return load_once(nvrtc_mutex, nvrtc_loaded, fill_nvrtc); }
const NcclApi& nccl_api() { return load_once(nccl_mutex, nccl_loaded, fill_nccl); }
const CublasApi& cublas_api() { return load_once(cublas_mutex, cublas_loaded, fill_cublas); }

}  // namespace tsgc
