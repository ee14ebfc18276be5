// pidfd_open and pidfd_getfd: taking an fd from another process (ptrace-read permission).
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "bindings.h"
#include "errors.h"

namespace gdb {

static Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  int pid = FdArg(info, 0, "pid");
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) ThrowErrno(info.Env(), "pidfd_open", errno);
  return Napi::Number::New(info.Env(), fd);
}

static Napi::Value PidfdGetfd(const Napi::CallbackInfo &info) {
  int pidfd = FdArg(info, 0, "pidfd");
  int target = FdArg(info, 1, "targetFd");
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target, 0));
  if (fd < 0) ThrowErrno(info.Env(), "pidfd_getfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

void InitPidfd(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd, "pidfdGetfd"));
}

}  // namespace gdb
