// eventfd: a 64-bit counter as an fd, for signalling between threads and processes. Always
// non-blocking; waiting is the poller's job, never a blocked read on the JS thread.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "bindings.h"
#include "errors.h"

namespace gdb {

// eventfd(initial, semaphore) -> fd
static Napi::Value Eventfd(const Napi::CallbackInfo &info) {
  uint32_t initial = U32Arg(info, 0, "initial");
  bool semaphore = BoolArg(info, 1, "semaphore");
  int fd = eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK | (semaphore ? EFD_SEMAPHORE : 0));
  if (fd < 0) ThrowErrno(info.Env(), "eventfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

// eventfdRead(fd) -> bigint, or null when the counter is zero (EAGAIN). Reads the whole count
// and resets it, or 1 in semaphore mode.
static Napi::Value EventfdRead(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t value;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return info.Env().Null();
  if (n < 0) ThrowErrno(info.Env(), "read", errno);
  if (n != sizeof value) ThrowErrno(info.Env(), "read", EINVAL);  // fd is not an eventfd
  return Napi::BigInt::New(info.Env(), value);
}

// eventfdWrite(fd, value): adds value to the counter. EAGAIN means the counter would pass
// 2^64 - 2 (the reader is not keeping up); it is thrown, not waited on.
static Napi::Value EventfdWrite(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t value = U64Arg(info, 1, "value");
  if (value == UINT64_MAX) throw Napi::RangeError::New(info.Env(), "eventfdWrite: argument \"value\" must be below 2^64 - 1");
  ssize_t n;
  do {
    n = write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(info.Env(), "write", errno);
  if (n != sizeof value) ThrowErrno(info.Env(), "write", EINVAL);
  return info.Env().Undefined();
}

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
}

}  // namespace gdb
