// AF_UNIX stream sockets with fd passing (SCM_RIGHTS) and peer credentials. Every call is
// non-blocking (sockets made here are O_NONBLOCK; sendmsg and recvmsg pass MSG_DONTWAIT, so an
// adopted blocking socket needs no O_NONBLOCK on a description it may share with another
// process): calls return null where they would block (EAGAIN) and the caller waits with
// waitFd, so the JS thread never blocks on a peer.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"
#include "errors.h"

namespace gdb {

namespace {

// SCM_MAX_FD in the kernel: more fds in one message fail with EINVAL.
constexpr uint32_t kMaxFdsPerMessage = 253;

// Large enough for kMaxFdsPerMessage fds, aligned for cmsghdr.
union ControlBuffer {
  char bytes[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
  struct cmsghdr align;
};

bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// A path, or an abstract name when it starts with a NUL byte.
socklen_t AddressArg(const Napi::CallbackInfo &info, size_t index, sockaddr_un *addr) {
  std::string path = StringArg(info, index, "path");
  const bool abstract = !path.empty() && path[0] == '\0';
  const size_t limit = abstract ? sizeof addr->sun_path : sizeof addr->sun_path - 1;
  if (path.empty()) throw Napi::RangeError::New(info.Env(), "argument \"path\" must not be empty");
  if (path.size() > limit) {
    throw Napi::RangeError::New(info.Env(), "argument \"path\" is " + std::to_string(path.size()) +
                                                " bytes; a unix socket path holds at most " + std::to_string(limit) +
                                                ": use a shorter (e.g. relative) path");
  }
  if (!abstract && path.find('\0') != std::string::npos) {
    throw Napi::RangeError::New(info.Env(), "argument \"path\" must not contain NUL bytes");
  }
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
}

// Closes fd without disturbing the errno that is about to be thrown.
void CloseKeepingErrno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

std::vector<int> FdListArg(const Napi::CallbackInfo &info, size_t index, const char *name) {
  if (info.Length() <= index || !info[index].IsArray()) {
    throw Napi::TypeError::New(info.Env(), std::string("argument \"") + name + "\" must be an array of file descriptors");
  }
  Napi::Array array = info[index].As<Napi::Array>();
  if (array.Length() > kMaxFdsPerMessage) {
    throw Napi::RangeError::New(info.Env(), std::string("argument \"") + name + "\" has " + std::to_string(array.Length()) +
                                                " fds; one message carries at most " + std::to_string(kMaxFdsPerMessage) +
                                                " (SCM_MAX_FD): split them over several messages");
  }
  std::vector<int> fds;
  fds.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    double value = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : -1;
    if (!IsIntegerIn(value, 0, 0x7fffffff)) {
      throw Napi::TypeError::New(info.Env(), std::string("argument \"") + name + "\"[" + std::to_string(i) +
                                                 "] must be a non-negative integer file descriptor");
    }
    fds.push_back(static_cast<int>(value));
  }
  return fds;
}

}  // namespace

// socketpair() -> [fd, fd]: a connected pair.
static Napi::Value Socketpair(const Napi::CallbackInfo &info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    ThrowErrno(info.Env(), "socketpair", errno);
  }
  Napi::Array result = Napi::Array::New(info.Env(), 2);
  result.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  result.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return result;
}

// unixConnect(path) -> fd, or null when the listener's backlog is full (EAGAIN: a
// non-blocking AF_UNIX connect does not queue; try again later with a new call). Never blocks:
// the socket is non-blocking from the start, and a unix connect either completes at once or
// fails.
static Napi::Value UnixConnect(const Napi::CallbackInfo &info) {
  sockaddr_un addr;
  socklen_t length = AddressArg(info, 0, &addr);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), "socket", errno);
  int ret;
  do {
    ret = connect(fd, reinterpret_cast<sockaddr *>(&addr), length);
  } while (ret < 0 && errno == EINTR);
  if (ret < 0 && WouldBlock(errno)) {
    close(fd);
    return info.Env().Null();
  }
  if (ret < 0) {
    CloseKeepingErrno(fd);
    ThrowErrno(info.Env(), "connect", errno);
  }
  return Napi::Number::New(info.Env(), fd);
}

// unixListen(path, backlog) -> fd. Creates the socket file; removing it is the caller's job.
static Napi::Value UnixListen(const Napi::CallbackInfo &info) {
  sockaddr_un addr;
  socklen_t length = AddressArg(info, 0, &addr);
  int backlog = static_cast<int>(U32Arg(info, 1, "backlog", 65535));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), "socket", errno);
  if (bind(fd, reinterpret_cast<sockaddr *>(&addr), length) < 0) {
    CloseKeepingErrno(fd);
    ThrowErrno(info.Env(), "bind", errno);
  }
  if (listen(fd, backlog) < 0) {
    CloseKeepingErrno(fd);
    ThrowErrno(info.Env(), "listen", errno);
  }
  return Napi::Number::New(info.Env(), fd);
}

// accept(fd) -> fd, or null when no connection is waiting.
static Napi::Value Accept(const Napi::CallbackInfo &info) {
  int listener = FdArg(info, 0, "fd");
  int fd;
  do {
    fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  // ECONNABORTED: the client gave up before we got to it; for the caller that is "none yet".
  if (fd < 0 && (WouldBlock(errno) || errno == ECONNABORTED)) return info.Env().Null();
  if (fd < 0) ThrowErrno(info.Env(), "accept4", errno);
  return Napi::Number::New(info.Env(), fd);
}

// sendmsg(fd, data, fds) -> bytes sent, or null when the socket buffer is full. The fds go
// with the first byte sent; the caller keeps owning them.
static Napi::Value Sendmsg(const Napi::CallbackInfo &info) {
  int fd = FdArg(info, 0, "fd");
  Napi::TypedArray data = BytesArg(info, 1, "data");
  std::vector<int> fds = FdListArg(info, 2, "fds");
  // A stream socket sends nothing for an empty payload, so the fds would silently stay behind.
  if (!fds.empty() && data.ByteLength() == 0) {
    throw Napi::RangeError::New(info.Env(), "sendmsg: argument \"data\" must hold at least one byte to carry fds");
  }
  iovec iov{BytesOf(data), data.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ControlBuffer control;
  if (!fds.empty()) {
    std::memset(&control, 0, sizeof control);
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t sent;
  do {
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0 && WouldBlock(errno)) return info.Env().Null();
  if (sent < 0) ThrowErrno(info.Env(), "sendmsg", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(sent));
}

// recvmsg(fd, buffer, maxFds) -> { bytes, fds, fdsTruncated }, or null when nothing is waiting.
// bytes 0 without fds is end of stream. Received fds are close-on-exec and the caller's to
// close. When more fds arrived than maxFds, the extra ones are closed (by the kernel, or here
// when the control buffer's padding let a few more through) and fdsTruncated is set.
static Napi::Value Recvmsg(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  Napi::TypedArray buffer = BytesArg(info, 1, "buffer");
  uint32_t max_fds = U32Arg(info, 2, "maxFds", kMaxFdsPerMessage);
  if (buffer.ByteLength() == 0) {
    throw Napi::RangeError::New(env, "recvmsg: argument \"buffer\" must hold at least one byte (0 bytes read means end of stream)");
  }
  iovec iov{BytesOf(buffer), buffer.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ControlBuffer control;
  if (max_fds > 0) {
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(max_fds * sizeof(int));
  }
  ssize_t received;
  do {
    received = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (received < 0 && errno == EINTR);
  if (received < 0 && WouldBlock(errno)) return env.Null();
  if (received < 0) ThrowErrno(env, "recvmsg", errno);

  std::vector<int> fds;
  bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int received_fd;
      std::memcpy(&received_fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      if (fds.size() < max_fds) {
        fds.push_back(received_fd);
      } else {
        close(received_fd);
        truncated = true;
      }
    }
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(received)));
  Napi::Array list = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) list.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  result.Set("fds", list);
  result.Set("fdsTruncated", Napi::Boolean::New(env, truncated));
  return result;
}

// peerCred(fd) -> { pid, uid, gid } of the peer process, as of connect() or socketpair().
static Napi::Value PeerCred(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  ucred cred{};
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) < 0) ThrowErrno(env, "getsockopt(SO_PEERCRED)", errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

void InitSocket(Napi::Env env, Napi::Object exports) {
  // The one definition of the limit; the library reads it from here.
  exports.Set("SCM_MAX_FD", Napi::Number::New(env, kMaxFdsPerMessage));
  exports.Set("socketpair", Napi::Function::New(env, Socketpair, "socketpair"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("sendmsg", Napi::Function::New(env, Sendmsg, "sendmsg"));
  exports.Set("recvmsg", Napi::Function::New(env, Recvmsg, "recvmsg"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
}

}  // namespace gdb
