// Errors thrown by the addon carry what Node's own system errors carry: code, errno, syscall.
#pragma once
#include <napi.h>

namespace gdb {

// Throws a JS Error for errno `err` from `syscall`.
[[noreturn]] void ThrowErrno(Napi::Env env, const char *syscall, int err);

// Argument helpers: a clear TypeError naming the argument.
int FdArg(const Napi::CallbackInfo &info, size_t index, const char *name);
uint64_t U64Arg(const Napi::CallbackInfo &info, size_t index, const char *name);

}  // namespace gdb
