// The one place fd ownership lives: an object that owns an fd closes it exactly once, by
// close() or by `using`, and refuses use afterwards.
import { ClosedError } from './errors.js';
import { native } from './native.js';

export abstract class OwnedFd {
  #fd: number;
  /** Names the object in errors ("memfd", "dma-buf"). */
  protected abstract readonly kind: string;

  protected constructor(fd: number) {
    this.#fd = fd;
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
    native.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
