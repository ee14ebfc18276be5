// The native addon, typed. Every function is one syscall or ioctl. What it throws or rejects
// with becomes the library's errors here, at the boundary: a failed syscall a SystemError
// (code, errno, syscall), a bad argument an InvalidArgumentError. Policy lives in the modules
// that use this.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GuestDmabufError, InvalidArgumentError, SystemError } from './errors.js';

export type Integer64 = number | bigint;

/** fstat(2), with the 64-bit fields as bigint. */
export interface FileStat {
  dev: bigint;
  ino: bigint;
  /** File type and permission bits (S_IFMT | 0o7777). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: bigint;
  /** Preferred I/O size: the huge page size on hugetlbfs. */
  blksize: number;
}

/** One recvmsg(2): `bytes` 0 with no fds is end of stream. */
export interface RecvmsgResult {
  bytes: number;
  /** Close-on-exec fds the caller now owns, at most the maxFds asked for. */
  fds: number[];
  /** More fds arrived than maxFds; the extra ones were closed. */
  fdsTruncated: boolean;
}


export interface Native {
  close(fd: number): void;
  dup(fd: number): number;
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, size: Integer64): void;
  fallocate(fd: number, mode: number, offset: Integer64, length: Integer64): void;
  getSeals(fd: number): number;
  addSeals(fd: number, seals: number): void;
  ioctl(fd: number, request: number, arg?: Uint8Array | Integer64): number;
  mmap(fd: number, length: Integer64, prot: number, flags: number, offset: Integer64): ArrayBuffer;
  munmap(buffer: ArrayBuffer): void;
  pidfdOpen(pid: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  fstat(fd: number): FileStat;
  setNonBlocking(fd: number, nonBlocking: boolean): void;
  setCloseOnExec(fd: number, closeOnExec: boolean): void;
  /** ioctl on the libuv thread pool; `arg` must stay attached until the promise settles. */
  ioctlAsync(fd: number, request: number, arg: Uint8Array): Promise<number>;

  /**
   * Resolves with the revents (EPOLL* bits) once fd is ready for any of `events`, or errors or
   * hangs up. `watch` names the registration (one per fd: the poller never keys by fd number)
   * and `wait` this wait within it; both are the caller's unique ids.
   */
  waitFd(watch: number, fd: number, events: number, wait: number): Promise<number>;
  /** Rejects one pending wait with code 'ECANCELED'; false when it was not pending. */
  cancelWait(watch: number, wait: number): boolean;
  /** Rejects every wait of `watch` with code 'ECANCELED' and unregisters its fd; call before closing the fd. */
  cancelWatch(watch: number): void;
  /** What the poller holds: registrations (watches) and pending waits. */
  pollerStats(): { watches: number; waits: number };

  /** EFD_CLOEXEC | EFD_NONBLOCK, plus EFD_SEMAPHORE when asked. */
  eventfd(initial: number, semaphore: boolean): number;
  /** null when the counter is zero. */
  eventfdRead(fd: number): bigint | null;
  eventfdWrite(fd: number, value: Integer64): void;

  /** AF_UNIX SOCK_STREAM; every fd is O_NONBLOCK | O_CLOEXEC. */
  socketpair(): [number, number];
  /** Never blocks: null when the listener's backlog is full (try again later). */
  unixConnect(path: string): number | null;
  unixListen(path: string, backlog: number): number;
  /** null when no connection is waiting. */
  accept(fd: number): number | null;
  /** Bytes sent, or null when the socket buffer is full. At most 253 fds, which need data.length >= 1. */
  sendmsg(fd: number, data: Uint8Array, fds: readonly number[]): number | null;
  /** null when nothing is waiting. maxFds is at most 253. */
  recvmsg(fd: number, buffer: Uint8Array, maxFds: number): RecvmsgResult | null;
  /** SO_PEERCRED: the peer process as of connect() or socketpair(). */
  peerCred(fd: number): { pid: number; uid: number; gid: number };

  /** SCM_MAX_FD: the most fds one message carries. */
  readonly SCM_MAX_FD: number;
  /** sysconf(_SC_PAGESIZE). */
  readonly PAGE_SIZE: number;
}

/**
 * The library's error for what a system call (the addon's, or node:fs's) threw. Node's fs
 * errors carry a negative errno; the addon's a positive one.
 */
export function libraryError(err: unknown): unknown {
  if (err instanceof GuestDmabufError || !(err instanceof Error)) return err;
  const { code, errno, syscall } = err as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
  if (typeof code === 'string' && typeof errno === 'number') {
    return new SystemError(err.message, code, Math.abs(errno), typeof syscall === 'string' ? syscall : 'unknown', { cause: err });
  }
  if (err instanceof TypeError) return new InvalidArgumentError(err.message, 'ERR_INVALID_ARG_TYPE');
  if (err instanceof RangeError) return new InvalidArgumentError(err.message, 'ERR_OUT_OF_RANGE');
  return err;
}

function rethrow(err: unknown): never {
  throw libraryError(err);
}

/** Each addon function, with its errors turned into the library's; constants as they are. */
function withLibraryErrors(addon: Record<string, unknown>): Native {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(addon)) {
    if (typeof fn !== 'function') {
      wrapped[name] = fn;
      continue;
    }
    wrapped[name] = (...args: unknown[]) => {
      try {
        const result = fn(...args);
        return result instanceof Promise ? result.catch(rethrow) : result;
      } catch (err) {
        return rethrow(err);
      }
    };
  }
  return wrapped as unknown as Native;
}

const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
export const native: Native = withLibraryErrors(createRequire(import.meta.url)(join(root, 'build', 'Release', 'guest_dmabuf_addon.node')));
