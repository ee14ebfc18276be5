// close and dup: the fd lifetime calls the TypeScript layer builds ownership on.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "bindings.h"
#include "errors.h"

namespace gdb {

static Napi::Value Close(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  // Linux releases the fd even when close reports an error; never retry.
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

static Napi::Value Dup(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) ThrowErrno(info.Env(), "dup", errno);
  return Napi::Number::New(info.Env(), copy);
}

void InitFd(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
}

}  // namespace gdb
