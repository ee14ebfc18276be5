// The kernel's word that a dma-buf is gone. guest_udmabuf signals an eventfd exactly once, at
// the final release (every fd, mmap and importer gone, pages unpinned). One notice is shared by
// a DmaBuf and its dups.
import type { EventFd } from '../fd/eventfd.js';

export class ReleaseNotice {
  #eventfd: EventFd;
  #holders = 1;
  #fired = false;
  #waiting: Promise<void> | undefined;

  constructor(eventfd: EventFd) {
    this.#eventfd = eventfd;
  }

  /** Another DmaBuf (a dup) shares this notice. */
  share(): this {
    this.#holders++;
    return this;
  }

  /**
   * A sharing DmaBuf closed its fd. When it was the last of ours, the release has usually just
   * happened (the kernel runs it before close returns); collect it now so the eventfd does not
   * outlive the buffer. If another process still holds the buffer, the eventfd stays open until
   * `released` resolves or the DmaBuf is garbage collected.
   */
  drop(): void {
    if (--this.#holders > 0 || this.#fired || this.#waiting) return;
    if (this.#eventfd.read() !== null) this.#fire();
  }

  get released(): Promise<void> {
    if (this.#fired) return Promise.resolve();
    this.#waiting ??= this.#eventfd.wait().then(() => this.#fire());
    return this.#waiting;
  }

  #fire(): void {
    this.#fired = true;
    this.#eventfd.close();
  }
}
