// Small helpers shared by the binding files: JS errors with a `code`, BigInt handles, host spans.
#pragma once
#define NAPI_VERSION 8
#include <napi.h>

#include <cstdio>
#include <string>

#include "api.h"

namespace tsgc {

[[noreturn]] inline void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

// Runs `body`, turning a library that cannot be loaded into a JS error instead of a crash.
template <typename Body>
auto guarded(Napi::Env env, Body body) -> decltype(body()) {
  try {
    return body();
  } catch (const LibraryError& e) {
    throw_error(env, e.code, e.message);
  }
}

inline std::string format_bytes(double bytes) {
  char text[64];
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (bytes >= gib) std::snprintf(text, sizeof text, "%.1f GiB", bytes / gib);
  else if (bytes >= 1024.0 * 1024.0) std::snprintf(text, sizeof text, "%.1f MiB", bytes / (1024.0 * 1024.0));
  else std::snprintf(text, sizeof text, "%.0f bytes", bytes);
  return text;
}

// Pointers and handles cross into JS as BigInt (they are 64-bit); counts may come as Number too.
inline uint64_t to_u64(const Napi::Value& value) {
  if (value.IsBigInt()) {
    bool lossless = true;
    return value.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (value.IsNumber()) return static_cast<uint64_t>(value.As<Napi::Number>().Int64Value());
  if (value.IsNull() || value.IsUndefined()) return 0;
  throw_error(value.Env(), "TSGC_INVALID_ARGUMENT", "expected a bigint or number");
}

template <typename T>
T to_handle(const Napi::Value& value) {
  return reinterpret_cast<T>(static_cast<uintptr_t>(to_u64(value)));
}

inline Napi::BigInt from_u64(Napi::Env env, uint64_t value) { return Napi::BigInt::New(env, value); }
inline Napi::BigInt from_handle(Napi::Env env, const void* handle) {
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle)));
}

inline uint32_t to_u32(const Napi::Value& value) { return value.As<Napi::Number>().Uint32Value(); }

struct HostSpan {
  uint8_t* data;
  size_t bytes;
};

// Any ArrayBufferView (TypedArray, Buffer, DataView) or ArrayBuffer.
inline HostSpan host_span(const Napi::Value& value) {
  if (value.IsTypedArray()) {
    Napi::TypedArray array = value.As<Napi::TypedArray>();
    auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data());
    return {base + array.ByteOffset(), array.ByteLength()};
  }
  if (value.IsDataView()) {
    Napi::DataView view = value.As<Napi::DataView>();
    auto* base = static_cast<uint8_t*>(view.ArrayBuffer().Data());
    return {base + view.ByteOffset(), view.ByteLength()};
  }
  if (value.IsArrayBuffer()) {
    Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
    return {static_cast<uint8_t*>(buffer.Data()), buffer.ByteLength()};
  }
  throw_error(value.Env(), "TSGC_INVALID_ARGUMENT", "expected an ArrayBuffer or ArrayBufferView");
}

void register_cuda(Napi::Env env, Napi::Object exports);
void register_nvrtc(Napi::Env env, Napi::Object exports);
void register_nccl(Napi::Env env, Napi::Object exports);
void register_cublas(Napi::Env env, Napi::Object exports);

}  // namespace tsgc
