#include "bindings.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  gdb::InitFd(env, exports);
  gdb::InitMemfd(env, exports);
  gdb::InitMman(env, exports);
  gdb::InitIoctl(env, exports);
  gdb::InitPidfd(env, exports);
  gdb::InitPoller(env, exports);
  gdb::InitEventfd(env, exports);
  gdb::InitSocket(env, exports);
  return exports;
}

NODE_API_MODULE(guest_dmabuf_addon, Init)
