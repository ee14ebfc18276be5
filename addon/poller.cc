// waitFd(fd, events) -> Promise<revents>: fd readiness as promises, without libuv's headers.
//
// One epoll thread per Node environment (main thread or worker), started on first use. Each
// fd is registered EPOLLONESHOT with the union of what its waiters want; the thread only
// forwards (fd, revents) to the JS thread through a thread-safe function. Everything else,
// the fd -> waiters table included, lives on the JS thread, so it needs no lock.
//
// Every arm (EPOLL_CTL_ADD/MOD) gets a fresh generation number carried in the event data.
// An event whose generation is not the fd's current one is stale (it was already in flight
// when the waits were cancelled or the registration re-armed) and is dropped: a re-arm is
// level-triggered, so a still-ready fd reports again under the new generation.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bindings.h"
#include "errors.h"

namespace gdb {

namespace {

constexpr uint32_t kWaitable = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;
// epoll reports these whether asked or not; they wake every waiter so its next call fails.
constexpr uint32_t kAlwaysReported = EPOLLERR | EPOLLHUP;
constexpr uint64_t kWakeToken = UINT64_MAX;

uint64_t Token(int fd, uint32_t generation) { return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd); }

struct Ready {
  int fd;
  uint32_t generation;
  uint32_t revents;
};
using Batch = std::vector<Ready>;

struct Waiter {
  uint32_t events;
  napi_deferred deferred;
};

struct Registration {
  std::vector<Waiter> waiters;
  uint32_t generation = 0;
  uint32_t Events() const {
    uint32_t events = 0;
    for (const Waiter &waiter : waiters) events |= waiter.events;
    return events;
  }
};

class Poller;
void Deliver(Napi::Env env, Napi::Function, Poller *poller, Batch *batch);
using ReadyFunction = Napi::TypedThreadSafeFunction<Poller, Batch, Deliver>;

Napi::Error CancelledError(Napi::Env env) {
  Napi::Error error = Napi::Error::New(env, "waitFd: the wait was cancelled because the fd is being closed (ECANCELED)");
  error.Set("code", Napi::String::New(env, "ECANCELED"));
  error.Set("errno", Napi::Number::New(env, ECANCELED));
  return error;
}

class Poller {
 public:
  Napi::Value Wait(Napi::Env env, int fd, uint32_t events) {
    if (!started_) Start(env);
    napi_deferred deferred;
    napi_value promise;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Value());

    auto [it, inserted] = registrations_.try_emplace(fd);
    Registration &registration = it->second;
    int err = Arm(fd, registration, registration.Events() | events, inserted);
    if (err != 0) {
      // The fd cannot be polled (bad, closed, or a regular file): no waiter on it can ever wake.
      std::vector<Waiter> failed = std::move(registration.waiters);
      registrations_.erase(it);
      Settle(env, failed, nullptr, err);
      napi_reject_deferred(env, deferred, ErrnoError(env, "epoll_ctl", err).Value());
      return Napi::Value(env, promise);
    }
    registration.waiters.push_back({events, deferred});
    if (++pending_ == 1) ready_.Ref(env);
    return Napi::Value(env, promise);
  }

  void Cancel(Napi::Env env, int fd) {
    auto it = registrations_.find(fd);
    if (it == registrations_.end()) return;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);  // Fails harmlessly if fd is already closed.
    std::vector<Waiter> cancelled = std::move(it->second.waiters);
    registrations_.erase(it);
    Settle(env, cancelled, nullptr, ECANCELED);
  }

  void OnReady(Napi::Env env, const Batch &batch) {
    for (const Ready &ready : batch) {
      auto it = registrations_.find(ready.fd);
      if (it == registrations_.end() || it->second.generation != ready.generation) continue;
      Registration &registration = it->second;
      std::vector<Waiter> woken, waiting;
      for (const Waiter &waiter : registration.waiters) {
        (ready.revents & (waiter.events | kAlwaysReported) ? woken : waiting).push_back(waiter);
      }
      registration.waiters = std::move(waiting);
      int err = 0;
      if (registration.waiters.empty()) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, ready.fd, nullptr);
      } else {
        err = Arm(ready.fd, registration, registration.Events(), false);
      }
      std::vector<Waiter> failed;
      if (err != 0) {
        failed = std::move(registration.waiters);
        registration.waiters.clear();
      }
      if (registration.waiters.empty()) registrations_.erase(it);
      Settle(env, woken, &ready.revents, 0);
      Settle(env, failed, nullptr, err);
    }
  }

  // Env cleanup hook, registered after the thread-safe function was created so that it runs
  // before Node tears that function down: the thread must be gone before then.
  static void Stop(void *arg) {
    auto *self = static_cast<Poller *>(arg);
    uint64_t one = 1;
    if (write(self->wake_fd_, &one, sizeof one) < 0) {
      // Cannot fail on a fresh eventfd short of a counter overflow; the thread would still be
      // blocked, so leave it (and its fds) rather than hang teardown in join().
      self->thread_.detach();
      return;
    }
    self->thread_.join();
    if (!self->thread_lost_function_) self->ready_.Release();
    close(self->epoll_fd_);
    close(self->wake_fd_);
  }

  static void Delete(void *arg) { delete static_cast<Poller *>(arg); }

 private:
  void Start(Napi::Env env) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) ThrowErrno(env, "epoll_create1", errno);
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.u64 = kWakeToken;
    if (wake_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake) < 0) {
      int err = errno;
      CloseFds();
      ThrowErrno(env, wake_fd_ < 0 ? "eventfd" : "epoll_ctl", err);
    }
    ready_ = ReadyFunction::New(env, "guest-dmabuf:waitFd", 0, 1, this);
    // Only pending waits keep the process alive (Ref in Wait, Unref when the last settles).
    ready_.Unref(env);
    try {
      thread_ = std::thread([this] { Run(); });
    } catch (const std::system_error &e) {
      ready_.Release();
      CloseFds();
      throw Napi::Error::New(env, std::string("waitFd: cannot start the poll thread: ") + e.what());
    }
    napi_add_env_cleanup_hook(env, Stop, this);
    started_ = true;
  }

  void CloseFds() {
    if (wake_fd_ >= 0) close(wake_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    wake_fd_ = epoll_fd_ = -1;
  }

  // Arms fd for `events` under a new generation. Returns 0 or an errno.
  int Arm(int fd, Registration &registration, uint32_t events, bool fresh) {
    epoll_event event{};
    event.events = events | EPOLLONESHOT;
    uint32_t generation = ++next_generation_;
    event.data.u64 = Token(fd, generation);
    int ret = epoll_ctl(epoll_fd_, fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
    // The fd was closed and its number reused without cancelWaits (MOD finds nothing), or a
    // dup of an old registration is still in the set (ADD finds it): try the other operation.
    if (ret < 0 && errno == (fresh ? EEXIST : ENOENT)) {
      ret = epoll_ctl(epoll_fd_, fresh ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event);
    }
    if (ret < 0) return errno;
    registration.generation = generation;
    return 0;
  }

  // Resolves waiters with *revents, or rejects them with err (ECANCELED or an epoll_ctl errno).
  void Settle(Napi::Env env, const std::vector<Waiter> &waiters, const uint32_t *revents, int err) {
    if (waiters.empty()) return;
    for (const Waiter &waiter : waiters) {
      if (revents != nullptr) {
        napi_resolve_deferred(env, waiter.deferred, Napi::Number::New(env, *revents));
      } else {
        Napi::Error error = err == ECANCELED ? CancelledError(env) : ErrnoError(env, "epoll_ctl", err);
        napi_reject_deferred(env, waiter.deferred, error.Value());
      }
    }
    pending_ -= waiters.size();
    if (pending_ == 0) ready_.Unref(env);
  }

  // The poll thread: forwards ready fds until woken through wake_fd_.
  void Run() {
    epoll_event events[64];
    for (;;) {
      int count = epoll_wait(epoll_fd_, events, 64, -1);
      if (count < 0) {
        if (errno == EINTR) continue;
        return;  // Only EBADF/EINVAL, i.e. a bug; waits would hang either way.
      }
      auto batch = std::make_unique<Batch>();
      for (int i = 0; i < count; i++) {
        if (events[i].data.u64 == kWakeToken) return;
        batch->push_back({static_cast<int>(events[i].data.u64 & 0xffffffffu), static_cast<uint32_t>(events[i].data.u64 >> 32),
                          events[i].events});
      }
      if (ready_.NonBlockingCall(batch.get()) != napi_ok) {
        thread_lost_function_ = true;  // Closing: the call already gave up our thread's hold on it.
        return;
      }
      batch.release();  // Deliver owns it now.
    }
  }

  bool started_ = false;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  bool thread_lost_function_ = false;  // Written by the thread, read after join().
  ReadyFunction ready_;
  std::unordered_map<int, Registration> registrations_;
  size_t pending_ = 0;
  uint32_t next_generation_ = 0;
};

// Runs on the JS thread. env is null when Node discards the queue at teardown.
void Deliver(Napi::Env env, Napi::Function, Poller *poller, Batch *batch) {
  std::unique_ptr<Batch> owned(batch);
  if (env == nullptr) return;
  try {
    poller->OnReady(env, *owned);
  } catch (const Napi::Error &error) {
    error.ThrowAsJavaScriptException();
  }
}

uint32_t EventsArg(const Napi::CallbackInfo &info) {
  uint32_t events = U32Arg(info, 1, "events");
  if (events == 0 || (events & ~kWaitable) != 0) {
    throw Napi::RangeError::New(info.Env(),
                                "argument \"events\" must be a non-empty combination of EPOLLIN (1), EPOLLPRI (2), EPOLLOUT (4) "
                                "and EPOLLRDHUP (0x2000)");
  }
  return events;
}

}  // namespace

static Napi::Value WaitFd(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  uint32_t events = EventsArg(info);
  return static_cast<Poller *>(info.Data())->Wait(info.Env(), fd, events);
}

static Napi::Value CancelWaits(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  static_cast<Poller *>(info.Data())->Cancel(info.Env(), fd);
  return info.Env().Undefined();
}

void InitPoller(Napi::Env env, Napi::Object exports) {
  // One poller per environment, reached through the functions' data; deleted at teardown by a
  // hook registered now, so it runs after the Stop hook Start() registers later.
  auto *poller = new Poller();
  napi_add_env_cleanup_hook(env, Poller::Delete, poller);
  exports.Set("waitFd", Napi::Function::New(env, WaitFd, "waitFd", poller));
  exports.Set("cancelWaits", Napi::Function::New(env, CancelWaits, "cancelWaits", poller));
}

}  // namespace gdb
