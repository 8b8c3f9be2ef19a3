// NCCL bindings: unique id, one communicator per rank, the four collectives we use, group calls.
// Results are reported by their enum name, with NCCL's description and last error where it has one.
#include <cstring>

#include "napi_util.h"

namespace tsgc {
namespace {

const NcclApi& collectives(Napi::Env env) {
  return guarded(env, [] () -> const NcclApi& { return nccl_api(); });
}

const char* nccl_result_name(ncclResult_t result) {
  static const char* const names[] = {"ncclSuccess",       "ncclUnhandledCudaError", "ncclSystemError",
                                      "ncclInternalError", "ncclInvalidArgument",    "ncclInvalidUsage",
                                      "ncclRemoteError",   "ncclInProgress"};
  return result >= 0 && result < 8 ? names[result] : "ncclUnknownResult";
}

void check(Napi::Env env, const NcclApi& nc, ncclResult_t result, const char* call, ncclComm_t comm = nullptr) {
  if (result == 0) return;
  std::string message = std::string(nccl_result_name(result)) + ": " + call + " (" + nc.ncclGetErrorString(result) + ")";
  if (nc.ncclGetLastError != nullptr) {
    const char* last = nc.ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') message += ": " + std::string(last);
  }
  throw_error(env, nccl_result_name(result), message);
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  int version = 0;
  check(info.Env(), nc, nc.ncclGetVersion(&version), "ncclGetVersion");
  return Napi::Number::New(info.Env(), version);
}

Napi::Value GetUniqueId(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  ncclUniqueId id{};
  check(info.Env(), nc, nc.ncclGetUniqueId(&id), "ncclGetUniqueId");
  return Napi::Buffer<char>::Copy(info.Env(), id.internal, sizeof id.internal);
}

// (nranks, id bytes, rank) -> comm; blocks until every rank has joined.
Napi::Value CommInitRank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const NcclApi& nc = collectives(env);
  const HostSpan id_bytes = host_span(info[1]);
  ncclUniqueId id{};
  if (id_bytes.bytes != sizeof id.internal) {
    throw_error(env, "TSGC_INVALID_ARGUMENT", "an NCCL unique id is 128 bytes, got " + std::to_string(id_bytes.bytes));
  }
  std::memcpy(id.internal, id_bytes.data, sizeof id.internal);
  ncclComm_t comm = nullptr;
  check(env, nc, nc.ncclCommInitRank(&comm, info[0].As<Napi::Number>().Int32Value(), id,
                                     info[2].As<Napi::Number>().Int32Value()),
        "ncclCommInitRank");
  return from_handle(env, comm);
}

Napi::Value CommDestroy(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  check(info.Env(), nc, nc.ncclCommDestroy(to_handle<ncclComm_t>(info[0])), "ncclCommDestroy");
  return info.Env().Undefined();
}

// (send, recv, count, dtype, op, comm, stream)
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  const auto comm = to_handle<ncclComm_t>(info[5]);
  check(info.Env(), nc,
        nc.ncclAllReduce(to_handle<const void*>(info[0]), to_handle<void*>(info[1]), to_u64(info[2]), to_u32(info[3]),
                         to_u32(info[4]), comm, to_handle<CUstream>(info[6])),
        "ncclAllReduce", comm);
  return info.Env().Undefined();
}

// (send, recv, sendCount, dtype, comm, stream)
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  const auto comm = to_handle<ncclComm_t>(info[4]);
  check(info.Env(), nc,
        nc.ncclAllGather(to_handle<const void*>(info[0]), to_handle<void*>(info[1]), to_u64(info[2]), to_u32(info[3]),
                         comm, to_handle<CUstream>(info[5])),
        "ncclAllGather", comm);
  return info.Env().Undefined();
}

// (send, recv, recvCount, dtype, op, comm, stream)
Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  const auto comm = to_handle<ncclComm_t>(info[5]);
  check(info.Env(), nc,
        nc.ncclReduceScatter(to_handle<const void*>(info[0]), to_handle<void*>(info[1]), to_u64(info[2]),
                             to_u32(info[3]), to_u32(info[4]), comm, to_handle<CUstream>(info[6])),
        "ncclReduceScatter", comm);
  return info.Env().Undefined();
}

// (send, recv, count, dtype, root, comm, stream)
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  const auto comm = to_handle<ncclComm_t>(info[5]);
  check(info.Env(), nc,
        nc.ncclBroadcast(to_handle<const void*>(info[0]), to_handle<void*>(info[1]), to_u64(info[2]), to_u32(info[3]),
                         info[4].As<Napi::Number>().Int32Value(), comm, to_handle<CUstream>(info[6])),
        "ncclBroadcast", comm);
  return info.Env().Undefined();
}

Napi::Value GroupStart(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  check(info.Env(), nc, nc.ncclGroupStart(), "ncclGroupStart");
  return info.Env().Undefined();
}

Napi::Value GroupEnd(const Napi::CallbackInfo& info) {
  const NcclApi& nc = collectives(info.Env());
  check(info.Env(), nc, nc.ncclGroupEnd(), "ncclGroupEnd");
  return info.Env().Undefined();
}

Napi::Value LibraryPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), collectives(info.Env()).path);
}

}  // namespace

void register_nccl(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"ncclVersion", Version},         {"ncclLibraryPath", LibraryPath}, {"ncclGetUniqueId", GetUniqueId},
      {"ncclCommInitRank", CommInitRank}, {"ncclCommDestroy", CommDestroy}, {"ncclAllReduce", AllReduce},
      {"ncclAllGather", AllGather},     {"ncclReduceScatter", ReduceScatter}, {"ncclBroadcast", Broadcast},
      {"ncclGroupStart", GroupStart},   {"ncclGroupEnd", GroupEnd},
  };
  for (const auto& [name, callback] : functions) exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace tsgc
