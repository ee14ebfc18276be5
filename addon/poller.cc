// waitFd(watch, fd, events, wait) -> Promise<revents>: fd readiness as promises, polled by the
// Node environment's own libuv loop (main thread or worker: each env has its own loop).
//
// Each watch is one uv_poll_t on that loop, so readiness arrives in the loop's own epoll_wait
// and is settled right there: no thread, no thread-safe function, no cross-thread wake-up. All
// of it runs on the JS thread, so it needs no lock. A callback runs inside a napi callback
// scope, so promise reactions (and process.nextTick) run as soon as it returns.
//
// Registrations are keyed by a watch id the caller chooses (one per fd-owning object), never
// by fd number: fd numbers are reused as soon as an fd is closed, so a table keyed by number
// would merge a closed fd's forgotten waiters with a new fd's, and wake them when an unrelated
// file becomes ready. Each wait has its own id too, so one wait can be cancelled (an
// AbortSignal) without disturbing the others.
//
// A watch's handle is started for the union of what its waiters want (UV_READABLE,
// UV_WRITABLE, UV_DISCONNECT, UV_PRIORITIZED; level-triggered, so nothing needs re-arming after
// a wake-up) and restarted only when that union changes (libuv restarts with an epoll_ctl DEL
// and ADD). A started handle is an active one: it is what keeps the loop, and so the process,
// alive, and a watch's handle is started only while it has waiters, give or take one loop
// iteration. When its last wait is cancelled, the handle is stopped and closed at once
// (uv_close, freed in the close callback). When its last wait wakes, the watch lingers with its
// handle started until the check phase of the same loop iteration (a uv_check_t, run before
// setImmediate callbacks), and is closed then unless a new wait came first. The promise
// reactions of a wake-up run before that check, and the usual caller reads, gets EAGAIN and
// waits again right there: that wait finds its handle started for the same events and costs no
// syscall, where closing and reopening the handle would cost five (uv_poll_init's epoll_ctl ADD
// and DEL and its O_NONBLOCK ioctl, the loop's epoll_ctl ADD, the DEL on stop). So an object
// with no pending wait leaves nothing here by the end of the iteration that woke it, and
// pollerStats counts only watches with waiters.
//
// The caller must cancel a watch (cancelWatch) before closing its fd, and, since a lingering
// watch has no pending wait, every watch it ever waited on, not only one with waits pending:
// stopping a handle removes the fd number from the loop's epoll set (epoll_ctl DEL by number),
// which must still be the watched file then, and a lingering handle whose fd was closed (the
// kernel dropping its registration) would never report the file that reuses the number.
//
// libuv's uv_poll_init checks that the fd can be polled (an epoll_ctl ADD and DEL on the
// loop's epoll fd: a regular file fails with EPERM, a bad fd with EBADF; both reject the wait
// with that errno and syscall "epoll_ctl") and sets O_NONBLOCK on the file description. The
// description may be shared with another process (an adopted socket), and every call here is
// non-blocking without O_NONBLOCK, so a blocking description gets its flags back at once.
//
// libuv allows one poll handle per fd number in a loop. A second watch on an fd number another
// watch holds means one of two things. If the kernel's epoll set still holds that file under
// that number, both watch the same file: the new wait rejects with EEXIST (as a second
// EPOLL_CTL_ADD would). Otherwise the holder's fd was closed without cancelWatch and the
// number reused: the holder is orphaned (its handle closed, its waiters left pending until
// cancelled, never woken by the new file) and the new watch takes the number. The probe has a
// blind spot: libuv adds a (re)started handle to the kernel's set only at its next poll phase,
// so a second watch on the same live file in the same loop iteration as the holder's (re)start
// is taken for the reuse case. The library keeps one watch per fd-owning object, so only a
// raw caller breaking that rule meets it. Likewise, after a reuse the old file stays in the
// kernel's set if its description is still open elsewhere (a dup, a child): its readiness then
// reaches the new watch, which is woken again and again while that file stays ready (epoll is
// level-triggered): closing without cancelWatch is the caller's bug, and this is its cost.
//
// Readiness is reported as epoll bits: UV_READABLE -> EPOLLIN, UV_WRITABLE -> EPOLLOUT,
// UV_DISCONNECT -> EPOLLRDHUP, UV_PRIORITIZED -> EPOLLPRI. A hang-up (UV_DISCONNECT, asked for
// along with readability) or an error (libuv's negative status, for EPOLLERR) is rare, and
// then one poll(2) gives the exact bits, EPOLLHUP and EPOLLERR included. EPOLLERR and EPOLLHUP
// wake every waiter so its next call reports what happened.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bindings.h"
#include "errors.h"

static_assert(UV_VERSION_MAJOR == 1, "libuv 1.x: its ABI is stable across minor versions");

namespace gdb {

namespace {

constexpr uint32_t kWaitable = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP;
// epoll reports these whether asked or not; they wake every waiter so its next call fails.
constexpr uint32_t kAlwaysReported = EPOLLERR | EPOLLHUP;

struct Waiter {
  uint64_t id;
  uint32_t events;
  napi_deferred deferred;
};

class Poller;

// Heap-allocated, since libuv holds its address until the close callback frees it.
struct PollHandle {
  uv_poll_t uv;
  Poller *poller;
  uint64_t watch_id;
};

struct Watch {
  int fd = -1;
  PollHandle *handle = nullptr;  // Null once orphaned (see the header comment).
  int started = 0;               // The uv events the handle is started for; 0 when stopped.
  bool lingering = false;        // No waiters since a wake-up; closed by the sweep unless one comes.
  std::vector<Waiter> waiters;
  uint32_t Events() const {
    uint32_t events = 0;
    for (const Waiter &waiter : waiters) events |= waiter.events;
    return events;
  }
};

int UvEvents(uint32_t events) {
  int uv = 0;
  // UV_DISCONNECT along with readability: a hang-up is then told apart from data (see OnPoll).
  if (events & EPOLLIN) uv |= UV_READABLE | UV_DISCONNECT;
  if (events & EPOLLOUT) uv |= UV_WRITABLE;
  if (events & EPOLLRDHUP) uv |= UV_DISCONNECT;
  if (events & EPOLLPRI) uv |= UV_PRIORITIZED;
  return uv;
}

uint32_t EpollEvents(int uv) {
  uint32_t events = 0;
  if (uv & UV_READABLE) events |= EPOLLIN;
  if (uv & UV_WRITABLE) events |= EPOLLOUT;
  if (uv & UV_DISCONNECT) events |= EPOLLRDHUP;
  if (uv & UV_PRIORITIZED) events |= EPOLLPRI;
  return events;
}

Napi::Error CancelledError(Napi::Env env) {
  Napi::Error error = Napi::Error::New(env, "waitFd: the wait was cancelled (ECANCELED)");
  error.Set("code", Napi::String::New(env, "ECANCELED"));
  error.Set("errno", Napi::Number::New(env, ECANCELED));
  error.Set("syscall", Napi::String::New(env, "epoll_ctl"));
  return error;
}

void FreeHandle(uv_handle_t *handle) { delete static_cast<PollHandle *>(handle->data); }

class Poller {
 public:
  explicit Poller(napi_env env) : env_(env) {}

  Napi::Value Wait(Napi::Env env, uint64_t watch_id, int fd, uint32_t events, uint64_t wait_id) {
    if (loop_ == nullptr) Start(env);
    auto [it, inserted] = watches_.try_emplace(watch_id);
    if (!inserted && it->second.waiters.empty() && it->second.fd != fd) {
      // A lingering watch (no waiters) a raw caller now uses for another fd: start afresh.
      Remove(it);
      std::tie(it, inserted) = watches_.try_emplace(watch_id);
    }
    Watch &watch = it->second;
    watch.lingering = false;
    if (!inserted && watch.fd != fd) {
      throw Napi::RangeError::New(env, "waitFd: argument \"watch\" " + std::to_string(watch_id) + " watches fd " + std::to_string(watch.fd) +
                                           ", not fd " + std::to_string(fd) + ": use one watch per fd");
    }
    watch.fd = fd;
    napi_deferred deferred;
    napi_value promise;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Value());
    int err = inserted ? Open(it) : 0;
    // An orphaned watch's fd number now belongs to another file: nothing to poll.
    if (err == 0 && watch.handle == nullptr) err = ENOENT;
    if (err == 0) err = Start(watch, watch.Events() | events);
    if (err != 0) {
      // The fd cannot be polled (bad, closed, or a regular file): no waiter on it can ever wake.
      std::vector<Waiter> failed = std::move(watch.waiters);
      Remove(it);
      Settle(env, failed, nullptr, err);
      napi_reject_deferred(env, deferred, ErrnoError(env, "epoll_ctl", err).Value());
      return Napi::Value(env, promise);
    }
    watch.waiters.push_back({wait_id, events, deferred});
    pending_++;
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
    int err = Update(it, &failed);
    Settle(env, cancelled, nullptr, ECANCELED);
    Settle(env, failed, nullptr, err);
    return true;
  }

  // Rejects every wait of a watch with ECANCELED and closes its handle: call before closing the fd.
  void CancelWatch(Napi::Env env, uint64_t watch_id) {
    auto it = watches_.find(watch_id);
    if (it == watches_.end()) return;
    std::vector<Waiter> cancelled = std::move(it->second.waiters);
    Remove(it);
    Settle(env, cancelled, nullptr, ECANCELED);
  }

  Napi::Value Stats(Napi::Env env) const {
    Napi::Object stats = Napi::Object::New(env);
    // Lingering watches hold no wait and are gone by the end of the loop iteration: not counted.
    size_t watches = 0;
    for (const auto &entry : watches_) watches += entry.second.waiters.empty() ? 0 : 1;
    stats.Set("watches", Napi::Number::New(env, static_cast<double>(watches)));
    stats.Set("waits", Napi::Number::New(env, static_cast<double>(pending_)));
    return stats;
  }

  // Env cleanup hook: handles must be closed before the loop is (a worker's loop is closed
  // right after its env, and fails with live handles). Pending waits are dropped with the env.
  static void Teardown(void *arg) {
    auto *self = static_cast<Poller *>(arg);
    for (auto &[id, watch] : self->watches_) {
      (void)id;
      self->CloseHandle(watch);
    }
    self->watches_.clear();
    if (self->sweeper_ != nullptr) uv_close(reinterpret_cast<uv_handle_t *>(self->sweeper_), FreeSweeper);
    if (self->async_context_ != nullptr) napi_async_destroy(self->env_, self->async_context_);
    delete self;
  }

 private:
  using WatchMap = std::unordered_map<uint64_t, Watch>;

  void Start(Napi::Env env) {
    uv_loop_t *loop = nullptr;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &loop));
    napi_async_context context;
    NAPI_THROW_IF_FAILED_VOID(env, napi_async_init(env, Napi::Object::New(env), Napi::String::New(env, "guest-dmabuf:waitFd"), &context));
    async_context_ = context;
    sweeper_ = new uv_check_t;
    uv_check_init(loop, sweeper_);
    sweeper_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t *>(sweeper_));  // Lingering watches are active themselves.
    loop_ = loop;
  }

  static void FreeSweeper(uv_handle_t *handle) { delete reinterpret_cast<uv_check_t *>(handle); }

  // Check phase, right after the poll phase that woke the watches now lingering (and before
  // setImmediate callbacks): closes those that got no new waiter from the promise reactions.
  static void Sweep(uv_check_t *sweeper) {
    auto *self = static_cast<Poller *>(sweeper->data);
    uv_check_stop(sweeper);
    std::vector<uint64_t> lingering = std::move(self->lingering_);
    self->lingering_.clear();
    for (uint64_t id : lingering) {
      auto it = self->watches_.find(id);
      if (it != self->watches_.end() && it->second.lingering && it->second.waiters.empty()) self->Remove(it);
    }
  }

  // A new watch's handle. Returns 0 or an errno.
  int Open(WatchMap::iterator it) {
    Watch &watch = it->second;
    int flags = fcntl(watch.fd, F_GETFL);
    if (flags < 0) return errno;
    auto *handle = new PollHandle{{}, this, it->first};
    int err = uv_poll_init(loop_, &handle->uv, watch.fd);
    if (err == UV_EEXIST && TakeOver(watch.fd, it->first)) err = uv_poll_init(loop_, &handle->uv, watch.fd);
    // uv_poll_init sets O_NONBLOCK even when it fails after its check; give a blocking
    // description that bit back, and only that bit, read afresh (another process sharing the
    // description may have changed its other flags meanwhile). A failed restore is not an
    // error: the fd was closed meanwhile, and an initialized handle must be closed, not deleted.
    if ((flags & O_NONBLOCK) == 0) {
      int now = fcntl(watch.fd, F_GETFL);
      if (now >= 0) fcntl(watch.fd, F_SETFL, now & ~O_NONBLOCK);
    }
    if (err != 0) {
      delete handle;  // uv_poll_init failed before putting it in the loop's handle list.
      return -err;
    }
    handle->uv.data = handle;
    watch.handle = handle;
    return 0;
  }

  // Another handle on this loop polls `fd`. If it is one of ours whose fd was closed without
  // cancelWatch (the kernel's epoll set no longer holds this file under that number), orphans
  // it and returns true; false when the file is still registered (a second watch on it).
  bool TakeOver(int fd, uint64_t watch_id) {
    for (auto &[id, watch] : watches_) {
      if (id == watch_id || watch.fd != fd || watch.handle == nullptr || watch.started == 0) continue;
      epoll_event probe{};
      int epoll = uv_backend_fd(loop_);
      if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &probe) < 0) return false;  // EEXIST: same file.
      epoll_ctl(epoll, EPOLL_CTL_DEL, fd, &probe);
      CloseHandle(watch);
      return true;
    }
    return false;  // Node's own handle, or another addon's.
  }

  // (Re)starts the watch's handle for `events`, unless it is started for them already.
  int Start(Watch &watch, uint32_t events) {
    int uv = UvEvents(events);
    if (uv == watch.started) return 0;
    int err = uv_poll_start(&watch.handle->uv, uv, OnPoll);
    if (err != 0) return -err;
    watch.started = uv;
    return 0;
  }

  // After waiters left: removes a watch with none left, else restarts it for what the rest want.
  // A failed restart moves the rest to *failed and returns the errno.
  // With `linger` (a wake-up), a watch left without waiters keeps its handle started until the
  // sweep at the end of this loop iteration: a waiter that waits again from the promise
  // reactions (the usual read, EAGAIN, wait) then finds it started and costs no syscall.
  int Update(WatchMap::iterator it, std::vector<Waiter> *failed, bool linger = false) {
    Watch &watch = it->second;
    if (watch.waiters.empty()) {
      if (linger && watch.handle != nullptr && watch.started != 0) {
        watch.lingering = true;
        if (lingering_.empty()) uv_check_start(sweeper_, Sweep);
        lingering_.push_back(it->first);
      } else {
        Remove(it);
      }
      return 0;
    }
    if (watch.handle == nullptr) return 0;  // Orphaned: its waiters wait for cancellation.
    int err = Start(watch, watch.Events());
    if (err != 0) {
      *failed = std::move(watch.waiters);
      Remove(it);
    }
    return err;
  }

  void CloseHandle(Watch &watch) {
    if (watch.handle == nullptr) return;
    uv_close(reinterpret_cast<uv_handle_t *>(&watch.handle->uv), FreeHandle);  // Stops it too.
    watch.handle = nullptr;
    watch.started = 0;
  }

  void Remove(WatchMap::iterator it) {
    CloseHandle(it->second);
    watches_.erase(it);
  }

  // Resolves waiters with *revents, or rejects them with err (ECANCELED or an errno).
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
  }

  static void OnPoll(uv_poll_t *uv, int status, int uv_events) {
    auto *handle = static_cast<PollHandle *>(uv->data);
    Poller *self = handle->poller;
    auto it = self->watches_.find(handle->watch_id);
    if (it == self->watches_.end() || it->second.handle != handle) return;  // Cannot happen: closed handles do not call.
    Watch &watch = it->second;
    if (status < 0) watch.started = 0;  // libuv stopped the handle.
    if (watch.waiters.empty()) {
      self->Remove(it);  // Lingering, and ready again before the sweep.
      return;
    }
    uint32_t wanted = watch.Events();
    uint32_t revents = EpollEvents(uv_events) & (wanted | kAlwaysReported);
    if (status < 0 || (uv_events & UV_DISCONNECT) != 0) {
      pollfd exact{watch.fd, static_cast<short>(wanted | POLLRDHUP), 0};
      if (poll(&exact, 1, 0) == 1 && (exact.revents & POLLNVAL) == 0) {
        revents = static_cast<uint16_t>(exact.revents) & (wanted | kAlwaysReported);
      }
      if (status < 0) revents |= EPOLLERR;
      // A hang-up that poll(2) no longer sees: reading reports it (end of stream).
      if (revents == 0) revents = wanted & EPOLLIN;
    }
    // Not inside a JS call: open the scopes a JS call would have, so that promise reactions
    // run when this returns.
    napi_env env = self->env_;
    napi_handle_scope handle_scope;
    if (napi_open_handle_scope(env, &handle_scope) != napi_ok) return;
    napi_value resource;
    napi_callback_scope callback_scope = nullptr;
    if (napi_create_object(env, &resource) == napi_ok) napi_open_callback_scope(env, resource, self->async_context_, &callback_scope);
    try {
      self->OnReady(Napi::Env(env), it, revents);
    } catch (const Napi::Error &error) {
      napi_fatal_exception(env, error.Value());
    } catch (...) {
      // Out of memory: nothing sensible to report to.
    }
    if (callback_scope != nullptr) napi_close_callback_scope(env, callback_scope);
    napi_close_handle_scope(env, handle_scope);
  }

  void OnReady(Napi::Env env, WatchMap::iterator it, uint32_t revents) {
    Watch &watch = it->second;
    std::vector<Waiter> woken, waiting;
    for (const Waiter &waiter : watch.waiters) {
      (revents & (waiter.events | kAlwaysReported) ? woken : waiting).push_back(waiter);
    }
    watch.waiters = std::move(waiting);
    std::vector<Waiter> failed;
    int err = Update(it, &failed, true);
    Settle(env, woken, &revents, 0);
    Settle(env, failed, nullptr, err);
  }

  napi_env env_;
  uv_loop_t *loop_ = nullptr;  // Set with async_context_ on first use.
  napi_async_context async_context_ = nullptr;
  uv_check_t *sweeper_ = nullptr;  // Started while lingering_ is not empty.
  std::vector<uint64_t> lingering_;
  WatchMap watches_;
  size_t pending_ = 0;
};

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
  // One poller per environment, reached through the functions' data; its handles are closed
  // and it is deleted at teardown, while the env's loop is still there.
  auto *poller = new Poller(env);
  napi_add_env_cleanup_hook(env, Poller::Teardown, poller);
  exports.Set("waitFd", Napi::Function::New(env, WaitFd, "waitFd", poller));
  exports.Set("cancelWait", Napi::Function::New(env, CancelWait, "cancelWait", poller));
  exports.Set("cancelWatch", Napi::Function::New(env, CancelWatch, "cancelWatch", poller));
  exports.Set("pollerStats", Napi::Function::New(env, PollerStats, "pollerStats", poller));
}

}  // namespace gdb
