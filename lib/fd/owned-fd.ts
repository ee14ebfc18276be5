// The one place fd ownership lives: an object that owns an fd closes it exactly once, by
// close(), by `using`, or, when dropped while open, by the garbage collector, and refuses use
// afterwards.
import { ClosedError } from '../core/errors.js';
import { native } from '../core/native.js';

// close() unregisters before closing, so the collector only ever closes fds that were never
// closed: never a number the process has since reused for something else.
const collector = new FinalizationRegistry<number>((fd) => {
  try {
    native.close(fd);
  } catch {
    // Nothing to report to: the object is gone.
  }
});

export abstract class OwnedFd {
  #fd: number;
  /** Names the object in errors ("memfd", "dma-buf"). */
  protected abstract readonly kind: string;

  protected constructor(fd: number) {
    this.#fd = fd;
    collector.register(this, fd, this);
  }

  get fd(): number {
    if (this.#fd < 0) throw new ClosedError(this.kind);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    collector.unregister(this);
    native.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
