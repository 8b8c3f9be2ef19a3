// NVRTC bindings: version, supported architectures, and compiling one source to PTX or CUBIN.
// A compile that fails is a normal result ({ok: false, log}); only library failures throw.
// Safe to call from worker threads: each call owns its nvrtcProgram.
#include <vector>

#include "napi_util.h"

namespace tsgc {
namespace {

const NvrtcApi& compiler(Napi::Env env) {
  return guarded(env, [] () -> const NvrtcApi& { return nvrtc_api(); });
}

void check(Napi::Env env, const NvrtcApi& nv, nvrtcResult result, const char* call) {
  if (result == NVRTC_SUCCESS) return;
  const std::string name = nv.nvrtcGetErrorString(result);
  throw_error(env, name, name + ": " + call + " (library " + nv.path + ")");
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  const NvrtcApi& nv = compiler(info.Env());
  int major = 0, minor = 0;
  check(info.Env(), nv, nv.nvrtcVersion(&major, &minor), "nvrtcVersion");
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("major", major);
  out.Set("minor", minor);
  out.Set("libraryPath", nv.path);
  return out;
}

// Compute capabilities this NVRTC can target (e.g. [50, ..., 80, 86, 89, 90]), or null before 11.2.
Napi::Value SupportedArchs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const NvrtcApi& nv = compiler(env);
  if (nv.nvrtcGetNumSupportedArchs == nullptr || nv.nvrtcGetSupportedArchs == nullptr) return env.Null();
  int count = 0;
  check(env, nv, nv.nvrtcGetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<size_t>(count));
  if (count > 0) check(env, nv, nv.nvrtcGetSupportedArchs(archs.data()), "nvrtcGetSupportedArchs");
  Napi::Array out = Napi::Array::New(env, archs.size());
  for (uint32_t i = 0; i < archs.size(); ++i) out.Set(i, archs[i]);
  return out;
}

// (source, programName, options[], output "cubin" | "ptx") -> {ok, status, log, image?}
Napi::Value Compile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const NvrtcApi& nv = compiler(env);
  const std::string source = info[0].As<Napi::String>().Utf8Value();
  const std::string program_name = info[1].As<Napi::String>().Utf8Value();
  Napi::Array option_values = info[2].As<Napi::Array>();
  const bool want_cubin = info[3].As<Napi::String>().Utf8Value() == "cubin";
  if (want_cubin && nv.nvrtcGetCUBIN == nullptr) {
    throw_error(env, "TSGC_NVRTC_TOO_OLD", "this NVRTC (" + nv.path + ") cannot emit CUBIN; ask for PTX instead");
  }
  std::vector<std::string> options;
  for (uint32_t i = 0; i < option_values.Length(); ++i) {
    options.push_back(option_values.Get(i).As<Napi::String>().Utf8Value());
  }
  std::vector<const char*> option_pointers;
  for (const std::string& option : options) option_pointers.push_back(option.c_str());

  nvrtcProgram program = nullptr;
  check(env, nv, nv.nvrtcCreateProgram(&program, source.c_str(), program_name.c_str(), 0, nullptr, nullptr),
        "nvrtcCreateProgram");
  struct Destroy {
    const NvrtcApi& nv;
    nvrtcProgram& program;
    ~Destroy() { nv.nvrtcDestroyProgram(&program); }
  } destroy{nv, program};

  const nvrtcResult status =
      nv.nvrtcCompileProgram(program, static_cast<int>(option_pointers.size()), option_pointers.data());
  size_t log_size = 0;
  check(env, nv, nv.nvrtcGetProgramLogSize(program, &log_size), "nvrtcGetProgramLogSize");
  std::string log(log_size, '\0');
  if (log_size > 0) check(env, nv, nv.nvrtcGetProgramLog(program, log.data()), "nvrtcGetProgramLog");
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();

  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", status == NVRTC_SUCCESS);
  out.Set("status", nv.nvrtcGetErrorString(status));
  out.Set("log", log);
  if (status != NVRTC_SUCCESS) return out;

  size_t image_size = 0;
  std::vector<char> image;
  if (want_cubin) {
    check(env, nv, nv.nvrtcGetCUBINSize(program, &image_size), "nvrtcGetCUBINSize");
    if (image_size == 0) {
      throw_error(env, "TSGC_NVRTC_NO_CUBIN",
                  "NVRTC produced no CUBIN: the architecture option must name a real GPU (sm_XX), not compute_XX");
    }
    image.resize(image_size);
    check(env, nv, nv.nvrtcGetCUBIN(program, image.data()), "nvrtcGetCUBIN");
  } else {
    check(env, nv, nv.nvrtcGetPTXSize(program, &image_size), "nvrtcGetPTXSize");
    image.resize(image_size);
    check(env, nv, nv.nvrtcGetPTX(program, image.data()), "nvrtcGetPTX");
    while (!image.empty() && image.back() == '\0') image.pop_back();  // PTX text without its NUL
  }
  out.Set("image", Napi::Buffer<char>::Copy(env, image.data(), image.size()));
  return out;
}

}  // namespace

void register_nvrtc(Napi::Env env, Napi::Object exports) {
  exports.Set("nvrtcVersion", Napi::Function::New(env, Version, "nvrtcVersion"));
  exports.Set("nvrtcSupportedArchs", Napi::Function::New(env, SupportedArchs, "nvrtcSupportedArchs"));
  exports.Set("nvrtcCompile", Napi::Function::New(env, Compile, "nvrtcCompile"));
}

}  // namespace tsgc
