// ioctl(fd, request, arg): arg is a Buffer (passed by pointer, the kernel may write it back)
// or an integer (passed by value). Returns the ioctl's non-negative result.
#include <sys/ioctl.h>

#include <cerrno>

#include "bindings.h"
#include "errors.h"

namespace gdb {

static Napi::Value Ioctl(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "ioctl: request must be a number");
  unsigned long request = info[1].As<Napi::Number>().Uint32Value();
  unsigned long arg = 0;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    Napi::TypedArray view = info[2].As<Napi::TypedArray>();
    arg = reinterpret_cast<unsigned long>(static_cast<uint8_t *>(view.ArrayBuffer().Data()) + view.ByteOffset());
  } else if (info.Length() > 2 && !info[2].IsUndefined()) {
    arg = static_cast<unsigned long>(U64Arg(info, 2, "arg"));
  }
  int ret;
  do {
    ret = ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  if (ret < 0) ThrowErrno(info.Env(), "ioctl", errno);
  return Napi::Number::New(info.Env(), ret);
}

void InitIoctl(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctl", Napi::Function::New(env, Ioctl, "ioctl"));
}

}  // namespace gdb
