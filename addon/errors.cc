#include "errors.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

namespace gdb {

Napi::Error ErrnoError(Napi::Env env, const char *syscall, int err) {
  const char *name = strerrorname_np(err);
  std::string code = name ? name : ("E" + std::to_string(err));
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err) + " (" + code + ")");
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char *syscall, int err) { throw ErrnoError(env, syscall, err); }

// Checked before any cast: casting NaN, an infinity or an out-of-range double to an integer
// type is undefined behaviour, so a cast cannot be the test.
bool IsIntegerIn(double value, double min, double max) {
  return std::isfinite(value) && value >= min && value <= max && std::trunc(value) == value;
}

static std::string Describe(const char *name) { return std::string("argument \"") + name + "\""; }

int FdArg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a file descriptor (number)");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(value, 0, 0x7fffffff)) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a non-negative integer file descriptor");
  }
  return static_cast<int>(value);
}

uint64_t U64Arg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() > index && info[index].IsBigInt()) {
    bool lossless = false;
    uint64_t value = info[index].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(info.Env(), Describe(name) + " does not fit in 64 bits");
    return value;
  }
  if (info.Length() > index && info[index].IsNumber()) {
    double value = info[index].As<Napi::Number>().DoubleValue();
    if (!IsIntegerIn(value, 0, 9007199254740991.0)) {
      throw Napi::RangeError::New(info.Env(), Describe(name) + " must be a non-negative safe integer");
    }
    return static_cast<uint64_t>(value);
  }
  throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a number or bigint");
}

uint32_t U32Arg(const Napi::CallbackInfo &info, size_t index, const char *name, uint32_t max) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!IsIntegerIn(value, 0, max)) {
    throw Napi::RangeError::New(info.Env(), Describe(name) + " must be an integer from 0 to " + std::to_string(max));
  }
  return static_cast<uint32_t>(value);
}

bool BoolArg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() <= index || !info[index].IsBoolean()) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a boolean");
  }
  return info[index].As<Napi::Boolean>().Value();
}

std::string StringArg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() <= index || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

Napi::TypedArray BytesArg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() <= index || !info[index].IsTypedArray() ||
      info[index].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), Describe(name) + " must be a Uint8Array");
  }
  return info[index].As<Napi::TypedArray>();
}

uint8_t *BytesOf(Napi::TypedArray view) {
  return static_cast<uint8_t *>(view.ArrayBuffer().Data()) + view.ByteOffset();
}

}  // namespace gdb
