// Waiting for an fd to become readable or writable without blocking the event loop: the
// addon polls the fd on the event loop itself (a libuv poll handle) and settles a promise.
// FdWatch is the one implementation every waiting object uses (through OwnedFd's
// waitReadable/waitWritable).
import { AbortError, GuestDmabufError, InvalidArgumentError } from '../core/errors.js';
import { native } from '../core/native.js';

// The epoll bits, defined once for the library and its tests (the addon takes them from <sys/epoll.h>).
export const EPOLLIN = 0x1;
export const EPOLLPRI = 0x2;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;

export type Readiness = 'readable' | 'writable';

const EVENTS: Record<Readiness, number> = { readable: EPOLLIN, writable: EPOLLOUT };

// Ids for watches and waits, unique for the life of the process (2^53 of them): the poller
// keys its registrations by these, never by fd number, which the kernel reuses at once.
let nextId = 1;

/** A new watch id (FdWatch takes one; an owner may take it first, to cancel the watch itself). */
export const newWatchId = (): number => nextId++;

/**
 * The pending waits on one object's fd: one registration in the poller, polled while at least
 * one wait is pending and removed (its poll handle closed) by the end of the loop iteration in
 * which the last one settles, so an idle object holds nothing there.
 *
 * A pending wait keeps its owner reachable: the poller holds the wait's promise, whose
 * reactions hold this watch, which holds the owner. So an object cannot be collected (and its
 * fd closed by the collector, behind the poller's back) while a wait on it is pending. The
 * alternative, rejecting a wait when its object is collected, cannot be prompt: nothing
 * allocates on an event loop that only waits, so the collector would never run, and the wait
 * would keep the process alive forever. The owner's close() is what ends waits early.
 */
export class FdWatch {
  readonly #id: number;
  readonly #owner: object;
  readonly #what: string;
  /** Pending waits: id -> how to record why it is being cancelled. */
  readonly #pending = new Map<number, (reason: GuestDmabufError) => void>();

  /** `owner` is the object whose fd is watched, `what` names it in errors. */
  constructor(owner: object, what: string, id = newWatchId()) {
    this.#id = id;
    this.#owner = owner;
    this.#what = what;
  }

  /** Number of pending waits. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Resolves with the revents once `fd` is readable or writable. It also resolves when the fd
   * reports an error or hang-up, so that the caller's next syscall reports what happened;
   * callers retry their non-blocking call and wait again on EAGAIN. Rejects with AbortError
   * when `signal` aborts, with cancelAll's reason when the owner closes, or with the
   * epoll_ctl error for an fd that cannot be polled.
   */
  wait(fd: number, readiness: Readiness, signal?: AbortSignal): Promise<number> {
    const events = EVENTS[readiness];
    if (events === undefined) throw new InvalidArgumentError(`wait: readiness must be 'readable' or 'writable', not ${String(readiness)}`);
    if (signal?.aborted) return Promise.reject(this.#aborted(signal));
    const id = nextId++;
    const settled = native.waitFd(this.#id, fd, events, id);
    const owner = this.#owner;
    return new Promise<number>((resolve, reject) => {
      let cancelled: GuestDmabufError | undefined;
      const onAbort = (): void => this.#cancel(id, this.#aborted(signal!));
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
      };
      this.#pending.set(id, (reason) => (cancelled ??= reason));
      signal?.addEventListener('abort', onAbort, { once: true });
      settled.then(
        (revents) => {
          done();
          void owner; // held here: see the class comment
          resolve(revents);
        },
        (err: unknown) => {
          done();
          reject(cancelled ?? err);
        },
      );
    });
  }

  /**
   * Rejects every pending wait with `reason` and removes the registration. The owner calls it
   * before closing the fd, while removing the fd from the loop's epoll set still reaches the
   * right file: also with no wait pending, since a registration outlives its last wait until
   * the end of the loop iteration that woke it.
   */
  cancelAll(reason: GuestDmabufError): void {
    for (const record of this.#pending.values()) record(reason);
    native.cancelWatch(this.#id);
  }

  #cancel(id: number, reason: GuestDmabufError): void {
    const record = this.#pending.get(id);
    if (record === undefined) return;
    record(reason);
    native.cancelWait(this.#id, id);
  }

  #aborted(signal: AbortSignal): AbortError {
    return new AbortError(`waiting on the ${this.#what}`, signal.reason);
  }
}
