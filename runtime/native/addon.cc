// Entry point of the tsgc native addon. Loading it never touches CUDA: each library is opened on
// first use, so a machine without a GPU (or without NVRTC, NCCL or cuBLAS) gets JS errors, not a crashed process.
#include "napi_util.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tsgc::register_cuda(env, exports);
  tsgc::register_nvrtc(env, exports);
  tsgc::register_nccl(env, exports);
  tsgc::register_cublas(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsgc_native, Init)
