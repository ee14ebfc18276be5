// waitFd(watch, fd, events, wait) -> Promise<revents>: fd readiness as promises, without
// libuv's headers.
//
// One epoll thread per Node environment (main thread or worker), started on first use. The
// thread only forwards (token, revents) to the JS thread through a thread-safe function.
// Everything else lives on the JS thread, so it needs no lock.
//
// Registrations are keyed by a watch id the caller chooses (one per fd-owning object), never
// by fd number: fd numbers are reused as soon as an fd is closed, so a table keyed by number
// would merge a closed fd's forgotten waiters with a new fd's, and wake them when an unrelated
// file becomes ready. A watch is one EPOLLONESHOT registration armed with the union of what
// its waiters want; it exists only while it has waiters (removed with EPOLL_CTL_DEL when the
// last one settles), so an object with no pending wait leaves nothing here. Each wait has its
// own id too, so one wait can be cancelled (an AbortSignal) without disturbing the others.
// The caller must cancel a watch (cancelWatch) before closing its fd: that is when
// EPOLL_CTL_DEL still reaches the right file.
//
// Every arm (EPOLL_CTL_ADD/MOD) gets a fresh token carried in the event data. An event whose
// token is not a watch's current one is stale (it was in flight when the watch was cancelled
// or re-armed) and is dropped: a re-arm is level-triggered, so a still-ready fd reports again
// under the new token.
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
constexpr uint64_t kWakeToken = 0;  // Arm tokens start at 1.

struct Ready {
  uint64_t token;
  uint32_t revents;
};
using Batch = std::vector<Ready>;

struct Waiter {
  uint64_t id;
  uint32_t events;
  napi_deferred deferred;
};

struct Watch {
  int fd = -1;
  uint64_t token = 0;
  std::vector<Waiter> waiters;
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
  Napi::Error error = Napi::Error::New(env, "waitFd: the wait was cancelled (ECANCELED)");
  error.Set("code", Napi::String::New(env, "ECANCELED"));
  error.Set("errno", Napi::Number::New(env, ECANCELED));
  error.Set("syscall", Napi::String::New(env, "epoll_ctl"));
  return error;
}

class Poller {
 public:
  Napi::Value Wait(Napi::Env env, uint64_t watch_id, int fd, uint32_t events, uint64_t wait_id) {
    if (!started_) Start(env);
    auto [it, inserted] = watches_.try_emplace(watch_id);
    Watch &watch = it->second;
    if (!inserted && watch.fd != fd) {
      throw Napi::RangeError::New(env, "waitFd: argument \"watch\" " + std::to_string(watch_id) + " watches fd " + std::to_string(watch.fd) +
                                           ", not fd " + std::to_string(fd) + ": use one watch per fd");
    }
    watch.fd = fd;
    napi_deferred deferred;
    napi_value promise;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Value());
    // No fallback between ADD and MOD: MOD failing with ENOENT means the fd was closed behind
    // the watch's back, and ADDing whatever file now has that number is the confusion this
    // design exists to prevent.
    int err = Arm(watch_id, watch, watch.Events() | events, inserted);
    if (err != 0) {
      // The fd cannot be polled (bad, closed, or a regular file): no waiter on it can ever wake.
      std::vector<Waiter> failed = std::move(watch.waiters);
      Remove(it);
      Settle(env, failed, nullptr, err);
      napi_reject_deferred(env, deferred, ErrnoError(env, "epoll_ctl", err).Value());
      return Napi::Value(env, promise);
    }
    watch.waiters.push_back({wait_id, events, deferred});
    if (++pending_ == 1) ready_.Ref(env);
    return Napi::Value(env, promise);
  }

  // Rejects one wait with ECANCELED; true when it was pending.
  bool CancelWait(Napi::Env env, uint64_t watch_id, uint64_t wait_id) {
    auto it = watches_.find(watch_id);
    if (it == watches_.end()) return false;
    Watch &watch = it->second;
    std::vector<Waiter> cancelled, kept;
    for (const Waiter &waiter : watch.waiters) (waiter.id == wait_id ? cancelled : kept).push_back(waiter);
    if (cancelled.empty()) return false;
    watch.waiters = std::move(kept);
    std::vector<Waiter> failed;
    int err = Rearm(it, &failed);
    Settle(env, cancelled, nullptr, ECANCELED);
    Settle(env, failed, nullptr, err);
    return true;
  }

  // Rejects every wait of a watch with ECANCELED and unregisters its fd: call before closing it.
  void CancelWatch(Napi::Env env, uint64_t watch_id) {
    auto it = watches_.find(watch_id);
    if (it == watches_.end()) return;
    std::vector<Waiter> cancelled = std::move(it->second.waiters);
    Remove(it);
    Settle(env, cancelled, nullptr, ECANCELED);
  }

  Napi::Value Stats(Napi::Env env) const {
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("watches", Napi::Number::New(env, static_cast<double>(watches_.size())));
    stats.Set("waits", Napi::Number::New(env, static_cast<double>(pending_)));
    return stats;
  }

  void OnReady(Napi::Env env, const Batch &batch) {
    for (const Ready &ready : batch) {
      auto armed = armed_.find(ready.token);
      if (armed == armed_.end()) continue;  // Stale: the watch was cancelled or re-armed since.
      auto it = watches_.find(armed->second);
      if (it == watches_.end() || it->second.token != ready.token) continue;
      Watch &watch = it->second;
      std::vector<Waiter> woken, waiting;
      for (const Waiter &waiter : watch.waiters) {
        (ready.revents & (waiter.events | kAlwaysReported) ? woken : waiting).push_back(waiter);
      }
      watch.waiters = std::move(waiting);
      std::vector<Waiter> failed;
      int err = Rearm(it, &failed);
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

  using WatchMap = std::unordered_map<uint64_t, Watch>;

  // Arms the watch's fd for `events` under a new token. Returns 0 or an errno.
  int Arm(uint64_t watch_id, Watch &watch, uint32_t events, bool fresh) {
    epoll_event event{};
    event.events = events | EPOLLONESHOT;
    uint64_t token = ++next_token_;
    event.data.u64 = token;
    if (epoll_ctl(epoll_fd_, fresh ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, watch.fd, &event) < 0) return errno;
    armed_.erase(watch.token);
    armed_[token] = watch_id;
    watch.token = token;
    return 0;
  }

  // After waiters left: removes a watch with none left, else re-arms it for what the rest want.
  // A failed re-arm moves the rest to *failed and returns the errno.
  int Rearm(WatchMap::iterator it, std::vector<Waiter> *failed) {
    Watch &watch = it->second;
    if (watch.waiters.empty()) {
      Remove(it);
      return 0;
    }
    int err = Arm(it->first, watch, watch.Events(), false);
    if (err != 0) {
      *failed = std::move(watch.waiters);
      Remove(it);
    }
    return err;
  }

  void Remove(WatchMap::iterator it) {
    // Fails harmlessly when the registration is already gone (never armed, or the fd closed).
    if (it->second.token != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
    armed_.erase(it->second.token);
    watches_.erase(it);
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
        batch->push_back({events[i].data.u64, events[i].events});
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
  WatchMap watches_;
  std::unordered_map<uint64_t, uint64_t> armed_;  // Current arm token -> watch id.
  size_t pending_ = 0;
  uint64_t next_token_ = kWakeToken;
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

uint32_t EventsArg(const Napi::CallbackInfo &info, size_t index) {
  uint32_t events = U32Arg(info, index, "events");
  if (events == 0 || (events & ~kWaitable) != 0) {
    throw Napi::RangeError::New(info.Env(),
                                "argument \"events\" must be a non-empty combination of EPOLLIN (1), EPOLLPRI (2), EPOLLOUT (4) "
                                "and EPOLLRDHUP (0x2000)");
  }
  return events;
}

}  // namespace

static Poller *PollerOf(const Napi::CallbackInfo &info) { return static_cast<Poller *>(info.Data()); }

static Napi::Value WaitFd(const Napi::CallbackInfo &info) {
  uint64_t watch = U64Arg(info, 0, "watch");
  int fd = FdArg(info, 1, "fd");
  uint32_t events = EventsArg(info, 2);
  uint64_t wait = U64Arg(info, 3, "wait");
  return PollerOf(info)->Wait(info.Env(), watch, fd, events, wait);
}

static Napi::Value CancelWait(const Napi::CallbackInfo &info) {
  uint64_t watch = U64Arg(info, 0, "watch");
  uint64_t wait = U64Arg(info, 1, "wait");
  return Napi::Boolean::New(info.Env(), PollerOf(info)->CancelWait(info.Env(), watch, wait));
}

static Napi::Value CancelWatch(const Napi::CallbackInfo &info) {
  PollerOf(info)->CancelWatch(info.Env(), U64Arg(info, 0, "watch"));
  return info.Env().Undefined();
}

static Napi::Value PollerStats(const Napi::CallbackInfo &info) { return PollerOf(info)->Stats(info.Env()); }

void InitPoller(Napi::Env env, Napi::Object exports) {
  // One poller per environment, reached through the functions' data; deleted at teardown by a
  // hook registered now, so it runs after the Stop hook Start() registers later.
  auto *poller = new Poller();
  napi_add_env_cleanup_hook(env, Poller::Delete, poller);
  exports.Set("waitFd", Napi::Function::New(env, WaitFd, "waitFd", poller));
  exports.Set("cancelWait", Napi::Function::New(env, CancelWait, "cancelWait", poller));
  exports.Set("cancelWatch", Napi::Function::New(env, CancelWatch, "cancelWatch", poller));
  exports.Set("pollerStats", Napi::Function::New(env, PollerStats, "pollerStats", poller));
}

}  // namespace gdb
