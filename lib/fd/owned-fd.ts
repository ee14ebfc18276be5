// The one place fd ownership lives: an object that owns an fd closes it exactly once, by
// close(), by `using`, or, when dropped while open, by the garbage collector, and refuses use
// afterwards. Waits on the fd live here too, so that closing cancels them.
import { ClosedError } from '../core/errors.js';
import { native } from '../core/native.js';
import { cleanUpWhenCollected, forgetCollected } from './collector.js';
import { FdWatch, newWatchId } from './readiness.js';

export interface WaitOptions {
  /** Aborting it rejects the wait with an AbortError (code 'ABORT_ERR'). */
  signal?: AbortSignal;
}

export abstract class OwnedFd {
  #fd: number;
  readonly #onClose: (() => void) | undefined;
  #watch: FdWatch | undefined;
  /** The watch's id once there is one: the collector's cleanup cancels it before closing the fd. */
  readonly #watched: { id?: number } = {};
  /** Names the object in errors ("memfd", "dma-buf"). */
  protected abstract readonly kind: string;

  /**
   * Takes ownership of `fd`. `onClose` runs once after the fd is closed, by close() (even when
   * close(2) fails) or by the collector; it must not refer to this object.
   */
  protected constructor(fd: number, onClose?: () => void) {
    this.#fd = fd;
    this.#onClose = onClose;
    // close() forgets the registration before closing, so the collector only ever closes fds
    // that were never closed: never a number the process has since reused for something else.
    // A pending wait keeps the object reachable (see FdWatch), so the collector never closes
    // an fd the poller still watches.
    // The watch is cancelled first: a registration outlives its last wait until the end of the
    // loop iteration that woke it (see FdWatch), and must not outlive the fd.
    const watched = this.#watched;
    cleanUpWhenCollected(this, () => {
      try {
        if (watched.id !== undefined) native.cancelWatch(watched.id);
        native.close(fd);
      } finally {
        onClose?.();
      }
    });
  }

  get fd(): number {
    if (this.#fd < 0) throw new ClosedError(this.kind);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the fd; pending waits reject with ClosedError (code 'ERR_CLOSED'). Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    forgetCollected(this);
    try {
      this.#watch?.cancelAll(new ClosedError(this.kind, 'was closed while a wait on it was pending'));
      native.close(fd);
    } finally {
      this.#onClose?.();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Resolves once the fd is readable (or reports an error or hang-up): see FdWatch.wait. */
  protected waitReadable(signal?: AbortSignal): Promise<number> {
    return this.#wait('readable', signal);
  }

  /** Resolves once the fd is writable (or reports an error or hang-up): see FdWatch.wait. */
  protected waitWritable(signal?: AbortSignal): Promise<number> {
    return this.#wait('writable', signal);
  }

  #wait(readiness: 'readable' | 'writable', signal: AbortSignal | undefined): Promise<number> {
    const fd = this.fd;
    if (this.#watch === undefined) {
      this.#watched.id = newWatchId();
      this.#watch = new FdWatch(this, this.kind, this.#watched.id);
    }
    return this.#watch.wait(fd, readiness, signal);
  }
}
