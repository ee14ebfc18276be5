// wl_shm buffers in one memfd pool: what a client that copies pixels (rather than sharing a
// dma-buf) draws into. `count` equal buffers, each reused only after the compositor's
// wl_buffer.release (it may read a committed buffer at any time until then), each knowing which
// rectangle it missed since it was last written, so a copy of the damage alone keeps it whole.
import { InvalidArgumentError } from '../../core/errors.js';
import { unmap } from '../../fd/mapping.js';
import { Memfd } from '../../kernel/memfd.js';
import { WlShmFormat, type WlShm, type WlShmPool } from '../protocol/wayland.js';
import type { WaylandConnection } from './connection.js';
import { ImportedBuffer } from './imported-buffer.js';
import type { Rect } from './window.js';

export interface ShmBuffersOptions {
  width: number;
  height: number;
  /** Default 2: one the compositor shows, one to write. */
  count?: number;
  /** A wl_shm format with 4 bytes per pixel (default xrgb8888). */
  format?: number;
}

export interface ShmBuffer {
  /** The wl_buffer and whether the compositor holds it (commit it with WaylandWindow.presentBuffer). */
  wl: ImportedBuffer;
  /** The buffer's pixels in this process's mapping of the pool. */
  bytes: Uint8Array;
  stride: number;
  /** The bounding box of what changed since this buffer was last written (null: up to date). */
  stale: Rect | null;
}

/** The smallest rectangle holding both (either may be null). */
export function unionRect(a: Rect | null, b: Rect | null): Rect | null {
  if (!a || !b) return a ?? b;
  const x = Math.min(a.x, b.x);
  const y = Math.min(a.y, b.y);
  return { x, y, width: Math.max(a.x + a.width, b.x + b.width) - x, height: Math.max(a.y + a.height, b.y + b.height) - y };
}

export class ShmBuffers implements Disposable {
  readonly buffers: readonly ShmBuffer[];
  readonly #memfd: Memfd;
  readonly #view: Uint8Array;
  readonly #pool: WlShmPool;
  readonly #connection: WaylandConnection;

  constructor(shm: WlShm, connection: WaylandConnection, { width, height, count = 2, format = WlShmFormat.xrgb8888 }: ShmBuffersOptions) {
    if (!(width > 0 && height > 0 && count > 0)) throw new InvalidArgumentError(`wl_shm buffers need a positive size and count, not ${width}×${height} ×${count}`);
    const stride = width * 4;
    const size = stride * height;
    this.#connection = connection;
    this.#memfd = Memfd.create('wl-shm-pool', size * count);
    this.#view = this.#memfd.map();
    this.#pool = shm.createPool(this.#memfd.fd, size * count);
    this.buffers = Array.from({ length: count }, (_, n) => ({
      wl: new ImportedBuffer(this.#pool.createBuffer(n * size, width, height, stride, format)),
      bytes: this.#view.subarray(n * size, (n + 1) * size),
      stride,
      // Never written: all of it is stale.
      stale: { x: 0, y: 0, width, height },
    }));
  }

  /** A buffer the compositor does not hold, or null when it holds them all. */
  free(): ShmBuffer | null {
    return this.buffers.find((b) => !b.wl.busy) ?? null;
  }

  /** Records that `rect` changed: every buffer must take it before it is shown again. */
  damage(rect: Rect): void {
    for (const b of this.buffers) b.stale = unionRect(b.stale, rect);
  }

  /** Resolves once some buffer is free (at a wl_buffer.release). */
  async anyReleased(signal?: AbortSignal): Promise<ShmBuffer> {
    await Promise.race(this.buffers.map((b) => b.wl.released(this.#connection, signal)));
    return this.free()!;
  }

  /** Destroys the buffers (those the compositor holds when it releases them), the pool and the mapping. */
  close(): void {
    for (const b of this.buffers) b.wl.destroy();
    if (!this.#connection.closed) this.#pool.destroy();
    unmap(this.#view);
    this.#memfd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
