// close, dup, fstat and fd flags: the fd calls the TypeScript layer builds ownership on.
#include <fcntl.h>
#include <sys/stat.h>
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

// fstat(fd): 64-bit fields as bigint so device numbers and sizes never round.
static Napi::Value Fstat(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  struct stat st;
  if (fstat(fd, &st) < 0) ThrowErrno(env, "fstat", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
  result.Set("ino", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
  result.Set("mode", Napi::Number::New(env, st.st_mode));
  result.Set("nlink", Napi::Number::New(env, static_cast<double>(st.st_nlink)));
  result.Set("uid", Napi::Number::New(env, st.st_uid));
  result.Set("gid", Napi::Number::New(env, st.st_gid));
  result.Set("rdev", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_rdev)));
  result.Set("size", Napi::BigInt::New(env, static_cast<int64_t>(st.st_size)));
  result.Set("blksize", Napi::Number::New(env, static_cast<double>(st.st_blksize)));
  return result;
}

// Turns one bit of the fd's status (F_GETFL) or descriptor (F_GETFD) flags on or off.
static void SetFlag(const Napi::CallbackInfo &info, int get, int set, int bit, const char *name) {
  int fd = FdArg(info, 0, "fd");
  bool on = BoolArg(info, 1, name);
  int flags = fcntl(fd, get);
  if (flags < 0) ThrowErrno(info.Env(), "fcntl", errno);
  int wanted = on ? (flags | bit) : (flags & ~bit);
  if (wanted != flags && fcntl(fd, set, wanted) < 0) ThrowErrno(info.Env(), "fcntl", errno);
}

// setNonBlocking(fd, on): for fds this library did not create (e.g. inherited from a parent),
// which the epoll-based waits need non-blocking.
static Napi::Value SetNonBlocking(const Napi::CallbackInfo &info) {
  SetFlag(info, F_GETFL, F_SETFL, O_NONBLOCK, "nonBlocking");
  return info.Env().Undefined();
}

// setCloseOnExec(fd, on): for inherited fds the library takes over, so they do not leak on into
// processes it spawns.
static Napi::Value SetCloseOnExec(const Napi::CallbackInfo &info) {
  SetFlag(info, F_GETFD, F_SETFD, FD_CLOEXEC, "closeOnExec");
  return info.Env().Undefined();
}

void InitFd(Napi::Env env, Napi::Object exports) {
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
  exports.Set("fstat", Napi::Function::New(env, Fstat, "fstat"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
  exports.Set("setCloseOnExec", Napi::Function::New(env, SetCloseOnExec, "setCloseOnExec"));
}

}  // namespace gdb
