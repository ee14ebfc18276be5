// The kernel's word that a dma-buf is gone. guest_udmabuf signals an eventfd exactly once, at
// the final release (every fd, mmap and importer gone, pages unpinned). One notice is shared by
// a DmaBuf and its dups.
//
// What it costs: the eventfd is open while any of our DmaBufs for the buffer is. At the last
// close it is closed at once, unless someone is waiting for the release, and then it is closed
// when that wait settles: one fd at most, and only for as long as it was asked for. The kernel
// keeps its own reference to the eventfd's counter, so closing ours early is safe; it only
// means a release that happens later can no longer be observed.
import { AbortError, ClosedError } from '../core/errors.js';
import type { EventFd } from '../fd/eventfd.js';

interface SharedWait {
  promise: Promise<void>;
  /** Ends the wait on the eventfd when every interested caller has aborted. */
  controller: AbortController;
  interested: number;
}

export class ReleaseNotice {
  #eventfd: EventFd | null;
  #holders = 1;
  #released = false;
  #wait: SharedWait | undefined;

  constructor(eventfd: EventFd) {
    this.#eventfd = eventfd;
  }

  /** Another DmaBuf (a dup) shares this notice. */
  share(): this {
    this.#holders++;
    return this;
  }

  /**
   * A sharing DmaBuf closed its fd (or was collected). At the last one, the release has
   * usually just happened (the kernel runs it before close returns when nobody else holds the
   * buffer): take it if so, and close the eventfd unless a wait needs it.
   */
  drop(): void {
    if (--this.#holders > 0 || this.#wait !== undefined) return;
    this.#closeEventfd();
  }

  /** Resolves at the final release; see DmaBuf.whenReleased. */
  whenReleased(signal?: AbortSignal): Promise<void> {
    if (this.#released) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(new AbortError('waiting for the dma-buf release', signal.reason));
    if (this.#eventfd === null) {
      return Promise.reject(
        new ClosedError(
          'dma-buf',
          'was closed while another process still held it, so its release can no longer be observed: call whenReleased() before closing the last DmaBuf for the buffer',
        ),
      );
    }
    const shared = (this.#wait ??= this.#startWait(this.#eventfd));
    shared.interested++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        reject(new AbortError('waiting for the dma-buf release', signal!.reason));
        // The last interested caller gone: nobody needs the wait, nor, once closed, the eventfd.
        if (--shared.interested > 0 || this.#wait !== shared) return;
        this.#wait = undefined;
        shared.controller.abort();
        if (this.#holders === 0) this.#closeEventfd();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
    });
  }

  #startWait(eventfd: EventFd): SharedWait {
    const controller = new AbortController();
    const promise = eventfd.wait({ signal: controller.signal }).then(() => {
      this.#released = true;
      if (this.#wait?.promise === promise) this.#wait = undefined;
      if (this.#eventfd === eventfd) this.#closeEventfd();
    });
    promise.catch(() => {}); // Reported through the callers' promises; an abort means none is left.
    return { promise, controller, interested: 0 };
  }

  #closeEventfd(): void {
    const eventfd = this.#eventfd;
    if (eventfd === null) return;
    this.#eventfd = null;
    try {
      if (!this.#released && eventfd.read() !== null) this.#released = true;
    } finally {
      eventfd.close();
    }
  }
}
