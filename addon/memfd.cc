// memfd_create, ftruncate, fallocate and seals.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "bindings.h"
#include "errors.h"

namespace gdb {

// memfdCreate(name, flags): flags are MFD_* bits, including the hugetlb size bits.
static Napi::Value MemfdCreate(const Napi::CallbackInfo &info) {
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "memfdCreate(name: string, flags: number)");
  }
  std::string name = info[0].As<Napi::String>();
  unsigned flags = info[1].As<Napi::Number>().Uint32Value();
  int fd = memfd_create(name.c_str(), flags);
  if (fd < 0) ThrowErrno(info.Env(), "memfd_create", errno);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value Ftruncate(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t size = U64Arg(info, 1, "size");
  if (ftruncate(fd, static_cast<off_t>(size)) < 0) ThrowErrno(info.Env(), "ftruncate", errno);
  return info.Env().Undefined();
}

// fallocate(fd, mode, offset, length)
static Napi::Value Fallocate(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  int mode = info[1].As<Napi::Number>().Int32Value();
  uint64_t offset = U64Arg(info, 2, "offset");
  uint64_t length = U64Arg(info, 3, "length");
  if (fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) < 0) {
    ThrowErrno(info.Env(), "fallocate", errno);
  }
  return info.Env().Undefined();
}

static Napi::Value GetSeals(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) ThrowErrno(info.Env(), "fcntl(F_GET_SEALS)", errno);
  return Napi::Number::New(info.Env(), seals);
}

static Napi::Value AddSeals(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  int seals = info[1].As<Napi::Number>().Int32Value();
  if (fcntl(fd, F_ADD_SEALS, seals) < 0) ThrowErrno(info.Env(), "fcntl(F_ADD_SEALS)", errno);
  return info.Env().Undefined();
}

void InitMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("ftruncate", Napi::Function::New(env, Ftruncate, "ftruncate"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals, "getSeals"));
  exports.Set("addSeals", Napi::Function::New(env, AddSeals, "addSeals"));
}

}  // namespace gdb
