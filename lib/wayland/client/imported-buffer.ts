// A wl_buffer (a surface's dma-buf imported once, or a wl_shm buffer) and whether the compositor holds it.
// Between a commit that attaches it and wl_buffer.release the compositor may read it at any
// time: we neither destroy it nor report it free until the release arrives.
import type { WlBuffer } from '../protocol/wayland.js';
import type { WaylandConnection } from './connection.js';

export class ImportedBuffer {
  readonly buffer: WlBuffer;
  #busy = false;
  #destroyWhenReleased = false;
  readonly #waiters = new Set<() => void>();

  constructor(buffer: WlBuffer) {
    this.buffer = buffer;
    buffer.on('release', () => {
      this.#busy = false;
      for (const resolve of [...this.#waiters]) resolve();
      if (this.#destroyWhenReleased) this.destroy();
    });
  }

  /** True from a commit that attached it until the compositor's release. */
  get busy(): boolean {
    return this.#busy;
  }

  /** Called just before the commit that attaches it. */
  markAttached(): void {
    this.#busy = true;
  }

  /** Resolves once the compositor does not hold the buffer. */
  released(connection: WaylandConnection, signal?: AbortSignal): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return connection.wait<void>(`release of ${this.buffer}`, signal, (resolve) => {
      this.#waiters.add(resolve);
      return () => this.#waiters.delete(resolve);
    });
  }

  /** Destroys the wl_buffer now if free, else as soon as the compositor releases it. */
  destroy(): void {
    if (this.buffer.destroyed || this.buffer.connection.closed) return;
    if (this.#busy) {
      this.#destroyWhenReleased = true;
      return;
    }
    this.buffer.destroy();
  }
}
