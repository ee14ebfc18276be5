// Errors thrown by the addon carry what Node's own system errors carry: code, errno, syscall.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

namespace gdb {

// The JS Error for errno `err` from `syscall`, for rejecting a promise.
Napi::Error ErrnoError(Napi::Env env, const char *syscall, int err);

// Throws ErrnoError(env, syscall, err).
[[noreturn]] void ThrowErrno(Napi::Env env, const char *syscall, int err);

// True when value is a whole number in [min, max] (false for NaN and infinities): the check
// to make before casting a JS number to an integer type.
bool IsIntegerIn(double value, double min, double max);

// Argument helpers: a clear TypeError (wrong type) or RangeError (bad value) naming the argument.
int FdArg(const Napi::CallbackInfo &info, size_t index, const char *name);
uint64_t U64Arg(const Napi::CallbackInfo &info, size_t index, const char *name);
// An integer in [0, max].
uint32_t U32Arg(const Napi::CallbackInfo &info, size_t index, const char *name, uint32_t max = UINT32_MAX);
bool BoolArg(const Napi::CallbackInfo &info, size_t index, const char *name);
std::string StringArg(const Napi::CallbackInfo &info, size_t index, const char *name);
// A Uint8Array (Buffer included). BytesOf gives the view's first byte, not its ArrayBuffer's.
Napi::TypedArray BytesArg(const Napi::CallbackInfo &info, size_t index, const char *name);
uint8_t *BytesOf(Napi::TypedArray view);

}  // namespace gdb
