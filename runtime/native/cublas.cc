// cuBLAS bindings, optional: a handle (bound to the context current when it is made), its stream, and
// one GEMM, bf16 in and out with f32 accumulation. The benchmarks time it as the card's dense bf16
// tensor-core ceiling; nothing in the compiled plan calls cuBLAS. Column-major, as cuBLAS is:
//   C[m×n] = op(A)[m×k] · op(B)[k×n], alpha 1, beta 0, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT.
// Every status is reported by its enum name (cublasGetStatusName where the library has it).
#include <climits>
#include <cmath>

#include "napi_util.h"

namespace tsgc {
namespace {

const CublasApi& blas(Napi::Env env) {
  return guarded(env, [] () -> const CublasApi& { return cublas_api(); });
}

const char* cublas_status_name(const CublasApi& cb, cublasStatus_t status) {
  if (cb.cublasGetStatusName != nullptr) {
    const char* name = cb.cublasGetStatusName(status);
    if (name != nullptr && *name != '\0') return name;
  }
  switch (status) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

void check(Napi::Env env, const CublasApi& cb, cublasStatus_t status, const char* call, const std::string& detail = "") {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  std::string name = cublas_status_name(cb, status);
  if (name == "CUBLAS_STATUS_UNKNOWN") name = "CUBLAS_STATUS_" + std::to_string(status);
  std::string message = name + ": " + call + (detail.empty() ? "" : " " + detail);
  if (cb.cublasGetStatusString != nullptr) {
    const char* description = cb.cublasGetStatusString(status);
    if (description != nullptr && *description != '\0') message += " (" + std::string(description) + ")";
  }
  throw_error(env, name, message);
}

// A GEMM dimension or leading dimension: a non-negative integer that fits cuBLAS's int.
int dimension(const Napi::CallbackInfo& info, size_t index, const char* what) {
  const Napi::Value value = info[index];
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1.0;
  if (!value.IsNumber() || number < 0 || number > INT_MAX || std::floor(number) != number) {
    throw_error(info.Env(), "TSGC_INVALID_ARGUMENT",
                std::string("cublasGemmBf16: ") + what + " must be an integer in [0, 2^31), got " +
                    value.ToString().Utf8Value());
  }
  return static_cast<int>(number);
}

cublasHandle_t handle_arg(const Napi::CallbackInfo& info) {
  const auto handle = to_handle<cublasHandle_t>(info[0]);
  if (handle == nullptr) throw_error(info.Env(), "TSGC_INVALID_ARGUMENT", "expected a cuBLAS handle, got a null one");
  return handle;
}

Napi::Value LibraryPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), blas(info.Env()).path);
}

// () -> handle, bound to the CUDA context current on this thread.
Napi::Value Create(const Napi::CallbackInfo& info) {
  const CublasApi& cb = blas(info.Env());
  cublasHandle_t handle = nullptr;
  check(info.Env(), cb, cb.cublasCreate(&handle), "cublasCreate_v2", "(library " + cb.path + ")");
  return from_handle(info.Env(), handle);
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  const CublasApi& cb = blas(info.Env());
  check(info.Env(), cb, cb.cublasDestroy(handle_arg(info)), "cublasDestroy_v2");
  return info.Env().Undefined();
}

// (handle, stream); stream 0 is the legacy default stream, cuBLAS's own default.
Napi::Value SetStream(const Napi::CallbackInfo& info) {
  const CublasApi& cb = blas(info.Env());
  check(info.Env(), cb, cb.cublasSetStream(handle_arg(info), to_handle<CUstream>(info[1])), "cublasSetStream_v2");
  return info.Env().Undefined();
}

// (handle) -> CUBLAS_VERSION as the library encodes it: major·10000 + minor·100 + patch.
Napi::Value Version(const Napi::CallbackInfo& info) {
  const CublasApi& cb = blas(info.Env());
  int version = 0;
  check(info.Env(), cb, cb.cublasGetVersion(handle_arg(info), &version), "cublasGetVersion_v2");
  return Napi::Number::New(info.Env(), version);
}

// (handle, m, n, k, A, B, C, lda, ldb, ldc, transA, transB): C = op(A)·op(B), column-major, bf16.
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CublasApi& cb = blas(env);
  const cublasHandle_t handle = handle_arg(info);
  const int m = dimension(info, 1, "m"), n = dimension(info, 2, "n"), k = dimension(info, 3, "k");
  const auto a = to_handle<const void*>(info[4]);
  const auto b = to_handle<const void*>(info[5]);
  const auto c = to_handle<void*>(info[6]);
  const int lda = dimension(info, 7, "lda"), ldb = dimension(info, 8, "ldb"), ldc = dimension(info, 9, "ldc");
  const bool trans_a = info[10].ToBoolean().Value(), trans_b = info[11].ToBoolean().Value();
  const float alpha = 1.0f, beta = 0.0f;  // host pointers: the handle's default pointer mode
  const cublasStatus_t status =
      cb.cublasGemmEx(handle, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha,
                      a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb, &beta, c, CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
  if (status != CUBLAS_STATUS_SUCCESS) {
    const std::string shape = "(bf16, m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k) +
                              ", op(A) " + (trans_a ? "T" : "N") + ", op(B) " + (trans_b ? "T" : "N") + ", lda " +
                              std::to_string(lda) + ", ldb " + std::to_string(ldb) + ", ldc " + std::to_string(ldc) + ")";
    check(env, cb, status, "cublasGemmEx", shape);
  }
  return env.Undefined();
}

}  // namespace

void register_cublas(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"cublasLibraryPath", LibraryPath}, {"cublasCreate", Create},   {"cublasDestroy", Destroy},
      {"cublasSetStream", SetStream},     {"cublasVersion", Version}, {"cublasGemmBf16", GemmBf16},
  };
  for (const auto& [name, callback] : functions) exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace tsgc
