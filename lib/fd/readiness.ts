// Waiting for an fd to become readable or writable without blocking the event loop: the
// addon's epoll thread watches the fd and settles a promise on the JS thread.
import { native } from '../core/native.js';

export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;

export type Readiness = 'readable' | 'writable';

const EVENTS: Record<Readiness, number> = { readable: EPOLLIN, writable: EPOLLOUT };

/**
 * Resolves once `fd` is readable or writable. It also resolves when the fd reports an error
 * or hang-up, so that the caller's next syscall reports what happened; callers retry their
 * non-blocking call and wait again on EAGAIN. Rejects with code 'ECANCELED' when
 * `cancelWaits(fd)` runs first, or with the epoll_ctl error for an fd that cannot be polled.
 * A pending wait keeps the process alive.
 */
export async function waitFor(fd: number, what: Readiness): Promise<void> {
  const events = EVENTS[what];
  if (events === undefined) throw new TypeError(`waitFor: "what" must be 'readable' or 'writable', got ${String(what)}`);
  await native.waitFd(fd, events);
}

/** Rejects every pending wait on `fd` (code 'ECANCELED'). Call it before closing the fd. */
export function cancelWaits(fd: number): void {
  native.cancelWaits(fd);
}
