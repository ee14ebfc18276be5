// mmap as an external ArrayBuffer. The mapping is undone exactly once: by munmap(), which also
// detaches the buffer so later access sees no memory instead of a dangling pointer, or by the
// finalizer when the buffer is collected without munmap().
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <unordered_map>

#include "bindings.h"
#include "errors.h"

namespace gdb {

namespace {

struct Mapping {
  void *addr;
  size_t length;
  bool unmapped;
};

// Keyed by address: munmap() receives the ArrayBuffer and must find its record. Worker threads
// share this process-wide table.
std::mutex mappings_lock;
std::unordered_map<void *, Mapping *> mappings;

void Finalize(Napi::Env, void *, Mapping *mapping) {
  {
    std::lock_guard<std::mutex> guard(mappings_lock);
    if (!mapping->unmapped) {
      munmap(mapping->addr, mapping->length);
      mappings.erase(mapping->addr);
    }
  }
  delete mapping;
}

}  // namespace

// mmap(fd, length, prot, flags, offset) -> ArrayBuffer
static Napi::Value Mmap(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  uint64_t length = U64Arg(info, 1, "length");
  int prot = static_cast<int>(U32Arg(info, 2, "prot", 0xff));
  int flags = static_cast<int>(U32Arg(info, 3, "flags", 0x7fffffff));
  uint64_t offset = U64Arg(info, 4, "offset");
  if (length == 0) throw Napi::RangeError::New(info.Env(), "mmap: length must be positive");
  void *addr = mmap(nullptr, length, prot, flags, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) ThrowErrno(info.Env(), "mmap", errno);
  auto *mapping = new Mapping{addr, static_cast<size_t>(length), false};
  {
    std::lock_guard<std::mutex> guard(mappings_lock);
    mappings[addr] = mapping;
  }
  try {
    return Napi::ArrayBuffer::New(info.Env(), addr, length, Finalize, mapping);
  } catch (...) {
    // No buffer owns the mapping (external buffers can be refused, e.g. under a V8 sandbox):
    // undo it here, or nothing ever will.
    {
      std::lock_guard<std::mutex> guard(mappings_lock);
      mappings.erase(addr);
    }
    munmap(addr, static_cast<size_t>(length));
    delete mapping;
    throw;
  }
}

// munmap(arrayBuffer): unmaps and detaches. A second call is a no-op.
static Napi::Value Munmap(const Napi::CallbackInfo &info) {
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(info.Env(), "munmap: expects the ArrayBuffer mmap returned");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (buffer.IsDetached()) return info.Env().Undefined();
  void *addr = buffer.Data();
  Mapping *mapping = nullptr;
  {
    std::lock_guard<std::mutex> guard(mappings_lock);
    auto it = mappings.find(addr);
    if (it == mappings.end()) throw Napi::TypeError::New(info.Env(), "munmap: this ArrayBuffer is not a mapping made by mmap()");
    mapping = it->second;
    if (munmap(mapping->addr, mapping->length) < 0) ThrowErrno(info.Env(), "munmap", errno);
    mapping->unmapped = true;
    mappings.erase(it);
  }
  buffer.Detach();
  return info.Env().Undefined();
}

void InitMman(Napi::Env env, Napi::Object exports) {
  // The system's page size, for alignment checks (4096 on x86-64; 16K or 64K on some arm64).
  exports.Set("PAGE_SIZE", Napi::Number::New(env, static_cast<double>(sysconf(_SC_PAGESIZE))));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
}

}  // namespace gdb
