// CUDA driver bindings: devices, memory, copies, modules, launches, streams, events and graphs.
// Every call's CUresult is checked and reported by its name (cuGetErrorName) and the call it came from.
#include <atomic>
#include <cstring>
#include <vector>

#include "napi_util.h"

namespace tsgc {
namespace {

std::string cu_error_name(const CudaApi& cu, CUresult result) {
  const char* name = nullptr;
  if (cu.cuGetErrorName(result, &name) == CUDA_SUCCESS && name != nullptr) return name;
  return "CUDA_ERROR_" + std::to_string(result);
}

void check(Napi::Env env, const CudaApi& cu, CUresult result, const char* call, const std::string& detail = "") {
  if (result == CUDA_SUCCESS) return;
  const std::string name = cu_error_name(cu, result);
  throw_error(env, name, name + ": " + call + (detail.empty() ? "" : " " + detail));
}

std::atomic<bool> initialized{false};

// The driver, loaded and initialised. cuInit's failure (no device, driver/library mismatch) is
// reported like any other call, and retried next time.
const CudaApi& driver(Napi::Env env) {
  const CudaApi& cu = guarded(env, [] () -> const CudaApi& { return cuda_api(); });
  if (!initialized.load()) {
    check(env, cu, cu.cuInit(0), "cuInit", "(driver library " + cu.path + ")");
    initialized.store(true);
  }
  return cu;
}

Napi::Value DriverVersion(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  int version = 0;
  check(info.Env(), cu, cu.cuDriverGetVersion(&version), "cuDriverGetVersion");
  return Napi::Number::New(info.Env(), version);
}

Napi::Value LibraryPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), driver(info.Env()).path);
}

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  int count = 0;
  check(info.Env(), cu, cu.cuDeviceGetCount(&count), "cuDeviceGetCount");
  return Napi::Number::New(info.Env(), count);
}

CUdevice get_device(Napi::Env env, const CudaApi& cu, int ordinal) {
  CUdevice device = 0;
  check(env, cu, cu.cuDeviceGet(&device, ordinal), "cuDeviceGet", "(ordinal " + std::to_string(ordinal) + ")");
  return device;
}

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const int ordinal = info[0].As<Napi::Number>().Int32Value();
  const CUdevice device = get_device(env, cu, ordinal);
  char name[256] = {0};
  check(env, cu, cu.cuDeviceGetName(name, sizeof name - 1, device), "cuDeviceGetName");
  size_t total = 0;
  check(env, cu, cu.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem");
  auto attribute = [&](int which, const char* label) {
    int value = 0;
    check(env, cu, cu.cuDeviceGetAttribute(&value, which, device), "cuDeviceGetAttribute", label);
    return Napi::Number::New(env, value);
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", Napi::String::New(env, name));
  out.Set("major", attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "(compute capability major)"));
  out.Set("minor", attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "(compute capability minor)"));
  out.Set("smCount", attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "(multiprocessor count)"));
  out.Set("totalMemoryBytes", Napi::Number::New(env, static_cast<double>(total)));
  out.Set("maxSharedBytesPerBlockOptin",
          attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "(shared memory opt-in)"));
  out.Set("l2CacheBytes", attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, "(L2 size)"));
  out.Set("maxThreadsPerBlock", attribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, "(max threads per block)"));
  out.Set("warpSize", attribute(CU_DEVICE_ATTRIBUTE_WARP_SIZE, "(warp size)"));
  out.Set("pciBusId", attribute(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, "(PCI bus id)"));
  return out;
}

// Retains the device's primary context and makes it current on this thread.
Napi::Value ContextRetain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const CUdevice device = get_device(env, cu, info[0].As<Napi::Number>().Int32Value());
  CUcontext context = nullptr;
  check(env, cu, cu.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
  check(env, cu, cu.cuCtxSetCurrent(context), "cuCtxSetCurrent");
  return from_handle(env, context);
}

Napi::Value ContextRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const CUdevice device = get_device(env, cu, info[0].As<Napi::Number>().Int32Value());
  check(env, cu, cu.cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease");
  return env.Undefined();
}

Napi::Value ContextSetCurrent(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuCtxSetCurrent(to_handle<CUcontext>(info[0])), "cuCtxSetCurrent");
  return info.Env().Undefined();
}

Napi::Value ContextSynchronize(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuCtxSynchronize(), "cuCtxSynchronize");
  return info.Env().Undefined();
}

Napi::Value MemGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  size_t free_bytes = 0, total_bytes = 0;
  check(env, cu, cu.cuMemGetInfo(&free_bytes, &total_bytes), "cuMemGetInfo");
  Napi::Object out = Napi::Object::New(env);
  out.Set("freeBytes", Napi::Number::New(env, static_cast<double>(free_bytes)));
  out.Set("totalBytes", Napi::Number::New(env, static_cast<double>(total_bytes)));
  return out;
}

Napi::Value MemAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const size_t bytes = to_u64(info[0]);
  CUdeviceptr pointer = 0;
  const CUresult result = cu.cuMemAlloc(&pointer, bytes);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) {
    size_t free_bytes = 0, total_bytes = 0;
    cu.cuMemGetInfo(&free_bytes, &total_bytes);
    check(env, cu, result, "cuMemAlloc",
          "asked " + format_bytes(static_cast<double>(bytes)) + ", " + format_bytes(static_cast<double>(free_bytes)) +
              " free of " + format_bytes(static_cast<double>(total_bytes)));
  }
  check(env, cu, result, "cuMemAlloc", "(" + format_bytes(static_cast<double>(bytes)) + ")");
  return from_u64(env, pointer);
}

Napi::Value MemFree(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuMemFree(to_u64(info[0])), "cuMemFree");
  return info.Env().Undefined();
}

// Page-locked host memory, handed to JS as an external ArrayBuffer that frees it when collected.
Napi::Value HostAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const size_t bytes = to_u64(info[0]);
  void* pointer = nullptr;
  check(env, cu, cu.cuMemHostAlloc(&pointer, bytes == 0 ? 1 : bytes, CU_MEMHOSTALLOC_PORTABLE), "cuMemHostAlloc",
        "(" + format_bytes(static_cast<double>(bytes)) + ")");
  std::memset(pointer, 0, bytes);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, pointer, bytes, [](Napi::Env, void* data) {
    cuda_api().cuMemFreeHost(data);  // the library is loaded: it allocated this
  });
  Napi::Object out = Napi::Object::New(env);
  out.Set("buffer", buffer);
  out.Set("address", from_handle(env, pointer));
  return out;
}

Napi::Value MemcpyHtoD(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  const HostSpan source = host_span(info[1]);
  check(info.Env(), cu, cu.cuMemcpyHtoD(to_u64(info[0]), source.data, source.bytes), "cuMemcpyHtoD");
  return info.Env().Undefined();
}

Napi::Value MemcpyDtoH(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  const HostSpan target = host_span(info[0]);
  check(info.Env(), cu, cu.cuMemcpyDtoH(target.data, to_u64(info[1]), target.bytes), "cuMemcpyDtoH");
  return info.Env().Undefined();
}

Napi::Value MemcpyDtoD(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuMemcpyDtoD(to_u64(info[0]), to_u64(info[1]), to_u64(info[2])), "cuMemcpyDtoD");
  return info.Env().Undefined();
}

// Async copies take pinned host addresses (from HostAlloc), never JS-managed memory.
Napi::Value MemcpyHtoDAsync(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu,
        cu.cuMemcpyHtoDAsync(to_u64(info[0]), to_handle<const void*>(info[1]), to_u64(info[2]),
                             to_handle<CUstream>(info[3])),
        "cuMemcpyHtoDAsync");
  return info.Env().Undefined();
}

Napi::Value MemcpyDtoHAsync(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu,
        cu.cuMemcpyDtoHAsync(to_handle<void*>(info[0]), to_u64(info[1]), to_u64(info[2]), to_handle<CUstream>(info[3])),
        "cuMemcpyDtoHAsync");
  return info.Env().Undefined();
}

Napi::Value MemcpyDtoDAsync(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu,
        cu.cuMemcpyDtoDAsync(to_u64(info[0]), to_u64(info[1]), to_u64(info[2]), to_handle<CUstream>(info[3])),
        "cuMemcpyDtoDAsync");
  return info.Env().Undefined();
}

Napi::Value MemsetD8Async(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu,
        cu.cuMemsetD8Async(to_u64(info[0]), static_cast<unsigned char>(to_u32(info[1])), to_u64(info[2]),
                           to_handle<CUstream>(info[3])),
        "cuMemsetD8Async");
  return info.Env().Undefined();
}

Napi::Value ModuleLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const HostSpan image = host_span(info[0]);
  // A cubin is an ELF file; PTX is text that the driver reads up to a NUL, which we add.
  const bool is_elf = image.bytes >= 4 && std::memcmp(image.data, "\x7f" "ELF", 4) == 0;
  std::string ptx;
  const void* data = image.data;
  if (!is_elf) {
    ptx.assign(reinterpret_cast<const char*>(image.data), image.bytes);
    data = ptx.c_str();
  }
  std::vector<char> log(16384, '\0');
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void* values[] = {log.data(), reinterpret_cast<void*>(static_cast<uintptr_t>(log.size() - 1))};
  CUmodule module = nullptr;
  const CUresult result = cu.cuModuleLoadDataEx(&module, data, 2, options, values);
  if (result != CUDA_SUCCESS) {
    const std::string jit_log(log.data());
    check(env, cu, result, "cuModuleLoadDataEx",
          std::string("(") + (is_elf ? "cubin" : "PTX") + ", " + std::to_string(image.bytes) + " bytes)" +
              (jit_log.empty() ? "" : "\n" + jit_log));
  }
  return from_handle(env, module);
}

Napi::Value ModuleUnload(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuModuleUnload(to_handle<CUmodule>(info[0])), "cuModuleUnload");
  return info.Env().Undefined();
}

Napi::Value ModuleGetFunction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  CUfunction function = nullptr;
  check(env, cu, cu.cuModuleGetFunction(&function, to_handle<CUmodule>(info[0]), name.c_str()), "cuModuleGetFunction",
        "(entry '" + name + "'; kernels need extern \"C\" to keep their names)");
  return from_handle(env, function);
}

Napi::Value FunctionAttributes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const auto function = to_handle<CUfunction>(info[0]);
  auto attribute = [&](int which) {
    int value = 0;
    check(env, cu, cu.cuFuncGetAttribute(&value, which, function), "cuFuncGetAttribute");
    return Napi::Number::New(env, value);
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("maxThreadsPerBlock", attribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK));
  out.Set("staticSharedBytes", attribute(CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES));
  out.Set("localBytes", attribute(CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES));
  out.Set("registers", attribute(CU_FUNC_ATTRIBUTE_NUM_REGS));
  out.Set("maxDynamicSharedBytes", attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES));
  return out;
}

Napi::Value FunctionSetMaxDynamicShared(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu,
        cu.cuFuncSetAttribute(to_handle<CUfunction>(info[0]), CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                              static_cast<int>(to_u32(info[1]))),
        "cuFuncSetAttribute", "(max dynamic shared memory " + std::to_string(to_u32(info[1])) + " bytes)");
  return info.Env().Undefined();
}

// Sizes of the kernel's parameters, or null where the driver predates cuFuncGetParamInfo (12.4).
Napi::Value FunctionParamSizes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  if (cu.cuFuncGetParamInfo == nullptr) return env.Null();
  const auto function = to_handle<CUfunction>(info[0]);
  Napi::Array sizes = Napi::Array::New(env);
  for (uint32_t index = 0; index < 4096; ++index) {
    size_t offset = 0, size = 0;
    if (cu.cuFuncGetParamInfo(function, index, &offset, &size) != CUDA_SUCCESS) break;
    sizes.Set(index, Napi::Number::New(env, static_cast<double>(size)));
  }
  return sizes;
}

// Kernel arguments arrive packed in 8-byte slots (one per parameter, value at the slot's start);
// the driver copies each parameter out of its slot using the kernel's own parameter sizes.
struct PackedParams {
  std::vector<void*> pointers;
  explicit PackedParams(const Napi::Value& value) {
    const HostSpan span = host_span(value);
    pointers.resize(span.bytes / 8);
    for (size_t i = 0; i < pointers.size(); ++i) pointers[i] = span.data + 8 * i;
  }
  void** data() { return pointers.empty() ? nullptr : pointers.data(); }
};

// (function, gx, gy, gz, bx, by, bz, sharedBytes, stream, packed params, programmatic): with `programmatic`, the
// launch allows programmatic stream serialization (Hopper's programmatic dependent launch): the kernel may begin
// while the previous kernel in the stream finishes, and must itself wait (griddepcontrol.wait) before it reads what
// that kernel wrote. Drivers without cuLaunchKernelEx launch it plainly, which is always correct.
Napi::Value Launch(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  PackedParams params(info[9]);
  const bool programmatic = info.Length() > 10 && info[10].ToBoolean().Value();
  if (programmatic && cu.cuLaunchKernelEx != nullptr) {
    LaunchAttribute attribute{};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    LaunchConfig config{};
    config.gridDimX = to_u32(info[1]), config.gridDimY = to_u32(info[2]), config.gridDimZ = to_u32(info[3]);
    config.blockDimX = to_u32(info[4]), config.blockDimY = to_u32(info[5]), config.blockDimZ = to_u32(info[6]);
    config.sharedMemBytes = to_u32(info[7]);
    config.hStream = to_handle<CUstream>(info[8]);
    config.attrs = &attribute;
    config.numAttrs = 1;
    check(info.Env(), cu, cu.cuLaunchKernelEx(&config, to_handle<CUfunction>(info[0]), params.data(), nullptr),
          "cuLaunchKernelEx", "(programmatic dependent launch)");
    return info.Env().Undefined();
  }
  check(info.Env(), cu,
        cu.cuLaunchKernel(to_handle<CUfunction>(info[0]), to_u32(info[1]), to_u32(info[2]), to_u32(info[3]),
                          to_u32(info[4]), to_u32(info[5]), to_u32(info[6]), to_u32(info[7]),
                          to_handle<CUstream>(info[8]), params.data(), nullptr),
        "cuLaunchKernel");
  return info.Env().Undefined();
}

Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  CUstream stream = nullptr;
  check(info.Env(), cu, cu.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  return from_handle(info.Env(), stream);
}

Napi::Value StreamDestroy(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuStreamDestroy(to_handle<CUstream>(info[0])), "cuStreamDestroy");
  return info.Env().Undefined();
}

Napi::Value StreamSynchronize(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuStreamSynchronize(to_handle<CUstream>(info[0])), "cuStreamSynchronize");
  return info.Env().Undefined();
}

Napi::Value StreamQuery(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  const CUresult result = cu.cuStreamQuery(to_handle<CUstream>(info[0]));
  if (result == CUDA_ERROR_NOT_READY) return Napi::Boolean::New(info.Env(), false);
  check(info.Env(), cu, result, "cuStreamQuery");
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value StreamWaitEvent(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuStreamWaitEvent(to_handle<CUstream>(info[0]), to_handle<CUevent>(info[1]), 0),
        "cuStreamWaitEvent");
  return info.Env().Undefined();
}

Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  const bool timing = info[0].ToBoolean().Value();
  CUevent event = nullptr;
  check(info.Env(), cu, cu.cuEventCreate(&event, timing ? 0 : CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  return from_handle(info.Env(), event);
}

Napi::Value EventDestroy(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuEventDestroy(to_handle<CUevent>(info[0])), "cuEventDestroy");
  return info.Env().Undefined();
}

Napi::Value EventRecord(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuEventRecord(to_handle<CUevent>(info[0]), to_handle<CUstream>(info[1])), "cuEventRecord");
  return info.Env().Undefined();
}

Napi::Value EventSynchronize(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuEventSynchronize(to_handle<CUevent>(info[0])), "cuEventSynchronize");
  return info.Env().Undefined();
}

Napi::Value EventQuery(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  const CUresult result = cu.cuEventQuery(to_handle<CUevent>(info[0]));
  if (result == CUDA_ERROR_NOT_READY) return Napi::Boolean::New(info.Env(), false);
  check(info.Env(), cu, result, "cuEventQuery");
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value EventElapsedMs(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  float milliseconds = 0;
  check(info.Env(), cu,
        cu.cuEventElapsedTime(&milliseconds, to_handle<CUevent>(info[0]), to_handle<CUevent>(info[1])),
        "cuEventElapsedTime");
  return Napi::Number::New(info.Env(), milliseconds);
}

Napi::Value StreamBeginCapture(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuStreamBeginCapture(to_handle<CUstream>(info[0]), CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
        "cuStreamBeginCapture");
  return info.Env().Undefined();
}

Napi::Value StreamEndCapture(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  CUgraph graph = nullptr;
  check(info.Env(), cu, cu.cuStreamEndCapture(to_handle<CUstream>(info[0]), &graph), "cuStreamEndCapture");
  return from_handle(info.Env(), graph);
}

Napi::Value GraphInstantiate(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  CUgraphExec exec = nullptr;
  check(info.Env(), cu, cu.cuGraphInstantiateWithFlags(&exec, to_handle<CUgraph>(info[0]), 0),
        "cuGraphInstantiateWithFlags");
  return from_handle(info.Env(), exec);
}

Napi::Value GraphLaunch(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuGraphLaunch(to_handle<CUgraphExec>(info[0]), to_handle<CUstream>(info[1])),
        "cuGraphLaunch");
  return info.Env().Undefined();
}

Napi::Value GraphDestroy(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuGraphDestroy(to_handle<CUgraph>(info[0])), "cuGraphDestroy");
  return info.Env().Undefined();
}

Napi::Value GraphExecDestroy(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  check(info.Env(), cu, cu.cuGraphExecDestroy(to_handle<CUgraphExec>(info[0])), "cuGraphExecDestroy");
  return info.Env().Undefined();
}

// The graph's kernel nodes, in the order the driver lists them, with their launch geometry.
Napi::Value GraphKernelNodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaApi& cu = driver(env);
  const auto graph = to_handle<CUgraph>(info[0]);
  size_t count = 0;
  check(env, cu, cu.cuGraphGetNodes(graph, nullptr, &count), "cuGraphGetNodes");
  std::vector<CUgraphNode> nodes(count);
  if (count > 0) check(env, cu, cu.cuGraphGetNodes(graph, nodes.data(), &count), "cuGraphGetNodes");
  Napi::Array out = Napi::Array::New(env);
  uint32_t index = 0;
  for (CUgraphNode node : nodes) {
    int type = -1;
    check(env, cu, cu.cuGraphNodeGetType(node, &type), "cuGraphNodeGetType");
    if (type != CU_GRAPH_NODE_TYPE_KERNEL) continue;
    KernelNodeParams params{};
    check(env, cu, cu.cuGraphKernelNodeGetParams(node, &params), "cuGraphKernelNodeGetParams");
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("node", from_handle(env, node));
    entry.Set("function", from_handle(env, params.func));
    Napi::Array grid = Napi::Array::New(env, 3), block = Napi::Array::New(env, 3);
    grid.Set(0u, params.gridDimX), grid.Set(1u, params.gridDimY), grid.Set(2u, params.gridDimZ);
    block.Set(0u, params.blockDimX), block.Set(1u, params.blockDimY), block.Set(2u, params.blockDimZ);
    entry.Set("grid", grid);
    entry.Set("block", block);
    entry.Set("sharedBytes", params.sharedMemBytes);
    out.Set(index++, entry);
  }
  return out;
}

// (exec, node, function, gx, gy, gz, bx, by, bz, sharedBytes, packed params)
Napi::Value GraphExecSetKernelParams(const Napi::CallbackInfo& info) {
  const CudaApi& cu = driver(info.Env());
  PackedParams packed(info[10]);
  KernelNodeParams params{};
  params.func = to_handle<CUfunction>(info[2]);
  params.gridDimX = to_u32(info[3]), params.gridDimY = to_u32(info[4]), params.gridDimZ = to_u32(info[5]);
  params.blockDimX = to_u32(info[6]), params.blockDimY = to_u32(info[7]), params.blockDimZ = to_u32(info[8]);
  params.sharedMemBytes = to_u32(info[9]);
  params.kernelParams = packed.data();
  check(info.Env(), cu,
        cu.cuGraphExecKernelNodeSetParams(to_handle<CUgraphExec>(info[0]), to_handle<CUgraphNode>(info[1]), &params),
        "cuGraphExecKernelNodeSetParams");
  return info.Env().Undefined();
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"cudaDriverVersion", DriverVersion},
      {"cudaLibraryPath", LibraryPath},
      {"deviceCount", DeviceCount},
      {"deviceInfo", DeviceInfo},
      {"contextRetain", ContextRetain},
      {"contextRelease", ContextRelease},
      {"contextSetCurrent", ContextSetCurrent},
      {"contextSynchronize", ContextSynchronize},
      {"memGetInfo", MemGetInfo},
      {"memAlloc", MemAlloc},
      {"memFree", MemFree},
      {"hostAlloc", HostAlloc},
      {"memcpyHtoD", MemcpyHtoD},
      {"memcpyDtoH", MemcpyDtoH},
      {"memcpyDtoD", MemcpyDtoD},
      {"memcpyHtoDAsync", MemcpyHtoDAsync},
      {"memcpyDtoHAsync", MemcpyDtoHAsync},
      {"memcpyDtoDAsync", MemcpyDtoDAsync},
      {"memsetD8Async", MemsetD8Async},
      {"moduleLoad", ModuleLoad},
      {"moduleUnload", ModuleUnload},
      {"moduleGetFunction", ModuleGetFunction},
      {"functionAttributes", FunctionAttributes},
      {"functionSetMaxDynamicShared", FunctionSetMaxDynamicShared},
      {"functionParamSizes", FunctionParamSizes},
      {"launch", Launch},
      {"streamCreate", StreamCreate},
      {"streamDestroy", StreamDestroy},
      {"streamSynchronize", StreamSynchronize},
      {"streamQuery", StreamQuery},
      {"streamWaitEvent", StreamWaitEvent},
      {"eventCreate", EventCreate},
      {"eventDestroy", EventDestroy},
      {"eventRecord", EventRecord},
      {"eventSynchronize", EventSynchronize},
      {"eventQuery", EventQuery},
      {"eventElapsedMs", EventElapsedMs},
      {"streamBeginCapture", StreamBeginCapture},
      {"streamEndCapture", StreamEndCapture},
      {"graphInstantiate", GraphInstantiate},
      {"graphLaunch", GraphLaunch},
      {"graphDestroy", GraphDestroy},
      {"graphExecDestroy", GraphExecDestroy},
      {"graphKernelNodes", GraphKernelNodes},
      {"graphExecSetKernelParams", GraphExecSetKernelParams},
  };
  for (const auto& [name, callback] : functions) exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace tsgc
