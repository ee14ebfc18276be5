// ioctl(fd, request, arg): arg is a Buffer (passed by pointer, the kernel may write it back)
// or an integer (passed by value). Returns the ioctl's non-negative result.
// ioctlAsync(fd, request, arg) runs the same call on the libuv thread pool, for kernel calls
// long enough to stall the event loop (pinning the pages of a huge dma-buf).
#include <sys/ioctl.h>

#include <cerrno>

#include "bindings.h"
#include "errors.h"

namespace gdb {

static unsigned long RequestArg(const Napi::CallbackInfo &info) {
  if (info.Length() < 2 || !info[1].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "ioctl: argument \"request\" must be a number");
  }
  return info[1].As<Napi::Number>().Uint32Value();
}

static int IoctlRetrying(int fd, unsigned long request, unsigned long arg) {
  int ret;
  do {
    ret = ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  return ret;
}

static Napi::Value Ioctl(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  unsigned long request = RequestArg(info);
  unsigned long arg = 0;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    arg = reinterpret_cast<unsigned long>(BytesOf(info[2].As<Napi::TypedArray>()));
  } else if (info.Length() > 2 && !info[2].IsUndefined()) {
    arg = static_cast<unsigned long>(U64Arg(info, 2, "arg"));
  }
  int ret = IoctlRetrying(fd, request, arg);
  if (ret < 0) ThrowErrno(info.Env(), "ioctl", errno);
  return Napi::Number::New(info.Env(), ret);
}

namespace {

class IoctlWorker : public Napi::AsyncWorker {
 public:
  IoctlWorker(Napi::Env env, int fd, unsigned long request, Napi::TypedArray arg)
      : Napi::AsyncWorker(env, "guest-dmabuf:ioctl"),
        deferred_(Napi::Promise::Deferred::New(env)),
        // The pool thread writes through this pointer: the reference keeps the buffer from
        // being collected until OnOK. (Detaching it meanwhile is the caller's bug.)
        arg_ref_(Napi::Persistent(static_cast<Napi::Object>(arg))),
        fd_(fd),
        request_(request),
        arg_(reinterpret_cast<unsigned long>(BytesOf(arg))) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    result_ = IoctlRetrying(fd_, request_, arg_);
    error_ = result_ < 0 ? errno : 0;
  }

  // Errors are reported here rather than through SetError so they keep code/errno/syscall.
  void OnOK() override {
    Napi::Env env = Env();
    if (error_ != 0) {
      deferred_.Reject(ErrnoError(env, "ioctl", error_).Value());
    } else {
      deferred_.Resolve(Napi::Number::New(env, result_));
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference arg_ref_;
  int fd_;
  unsigned long request_;
  unsigned long arg_;
  int result_ = 0;
  int error_ = 0;
};

}  // namespace

// ioctlAsync(fd, request, arg: Uint8Array) -> Promise<number>
static Napi::Value IoctlAsync(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  unsigned long request = RequestArg(info);
  Napi::TypedArray arg = BytesArg(info, 2, "arg");
  auto *worker = new IoctlWorker(info.Env(), fd, request, arg);
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // The worker deletes itself after OnOK.
  return promise;
}

void InitIoctl(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctl", Napi::Function::New(env, Ioctl, "ioctl"));
  exports.Set("ioctlAsync", Napi::Function::New(env, IoctlAsync, "ioctlAsync"));
}

}  // namespace gdb
