// A client's subscription to one surface: an async iterator of typed events. Buffers arrive as
// owned objects (SurfaceBuffer: an ExportedSurface, so a Wayland window can present it as it
// is); disposing one closes its fd and tells the sidecar (release), which is what keeps a peer
// under its buffer cap. Ending the subscription (close(), `break` out of for-await, or
// `await using`) unsubscribes and closes every buffer not yet handed out.
import { native } from '../../lib/core/native.js';
import { DmaBuf } from '../../lib/kernel/dma-buf.js';
import { DRM_FORMAT_MOD_LINEAR } from '../../lib/formats/drm.js';
import type { ExportedSurface, Plane } from '../../lib/guest/surface.js';
import type { BufferInfo, Rect, WithdrawReason } from './messages.js';
import { MAX_DAMAGE_RECTS } from './messages.js';

/** A buffer of a surface, with its dma-buf fd: owned by whoever received it. */
export class SurfaceBuffer implements ExportedSurface {
  readonly dmabuf: DmaBuf;
  readonly surface: number;
  /** The sidecar's buffer id (damage events name it). */
  readonly id: number;
  readonly fourcc: number;
  readonly modifier: bigint;
  readonly width: number;
  readonly height: number;
  readonly planes: [Plane];
  readonly #release: (buffer: number) => void;

  /** @internal Takes ownership of `fd`. */
  constructor(info: BufferInfo, fd: number, release: (buffer: number) => void) {
    let size = BigInt(info.size);
    try {
      size = native.fstat(fd).size;
    } catch {
      // The message's size stands.
    }
    this.dmabuf = new DmaBuf(fd, size);
    this.surface = info.surface;
    this.id = info.buffer;
    this.fourcc = info.fourcc;
    this.modifier = info.modifier ?? DRM_FORMAT_MOD_LINEAR;
    this.width = info.width;
    this.height = info.height;
    const plane = info.planes[0] ?? { offset: 0, stride: info.width * 4 };
    this.planes = [{ offset: plane.offset, stride: plane.stride }];
    this.#release = release;
  }

  get closed(): boolean {
    return this.dmabuf.closed;
  }

  /** Closes the fd and tells the sidecar this buffer is no longer held. Idempotent. */
  close(): void {
    if (this.dmabuf.closed) return;
    this.dmabuf.close();
    this.#release(this.id);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export type SurfaceEvent =
  /** The surface's buffer at subscription. */
  | { type: 'surface'; buffer: SurfaceBuffer }
  /** A new buffer replaces the previous one: show this one, then dispose the old one. */
  | { type: 'replaced'; buffer: SurfaceBuffer }
  /** The guest drew into these rectangles of buffer `buffer` (already there: zero copy). */
  | { type: 'damage'; buffer: number; rects: Rect[] }
  /** The surface is gone; the iteration ends after this event. */
  | { type: 'withdrawn'; reason: WithdrawReason };

export class SurfaceSubscription implements AsyncIterableIterator<SurfaceEvent>, AsyncDisposable {
  readonly surface: number;
  readonly #queue: SurfaceEvent[] = [];
  #waiter: { resolve: (r: IteratorResult<SurfaceEvent>) => void; reject: (e: unknown) => void } | null = null;
  #ended = false;
  #failure: unknown = null;
  #pendingError: unknown = null;
  readonly #onClose: (subscription: SurfaceSubscription, subscribed: boolean) => void;

  /** @internal */
  constructor(surface: number, onClose: (subscription: SurfaceSubscription, subscribed: boolean) => void) {
    this.surface = surface;
    this.#onClose = onClose;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * @internal The sidecar's error about this subscription (a cap): it ends it with a
   * 'withdrawn' right after, and that is when the iteration throws this. Ending it here instead
   * would let that 'withdrawn' reach a new subscription to the same surface.
   */
  noteError(error: unknown): void {
    this.#pendingError ??= error;
  }

  /** @internal An event from the sidecar. Damage for the same buffer merges into one waiting event, so a slow consumer's queue stays small. */
  push(event: SurfaceEvent): void {
    if (this.#ended) {
      if (event.type === 'surface' || event.type === 'replaced') event.buffer.close();
      return;
    }
    if (event.type === 'withdrawn' && this.#pendingError) {
      this.#finish(this.#pendingError, false);
      return;
    }
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = null;
      waiter.resolve({ value: event, done: false });
    } else {
      const last = this.#queue[this.#queue.length - 1];
      if (event.type === 'damage' && last?.type === 'damage' && last.buffer === event.buffer) {
        last.rects.push(...event.rects);
        if (last.rects.length > MAX_DAMAGE_RECTS) last.rects.splice(0, last.rects.length, bounding(last.rects));
      } else {
        this.#queue.push(event);
      }
    }
    if (event.type === 'withdrawn') this.#finish(null, false);
  }

  /** @internal Ends the subscription with `error` (after the events already queued), or quietly. */
  fail(error: unknown): void {
    this.#finish(error, false);
  }

  next(): Promise<IteratorResult<SurfaceEvent>> {
    const event = this.#queue.shift();
    if (event) return Promise.resolve({ value: event, done: false });
    if (this.#ended) {
      const failure = this.#failure;
      this.#failure = null;
      return failure ? Promise.reject(failure) : Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter) return Promise.reject(new Error('next() called again before the previous one settled'));
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<SurfaceEvent>> {
    this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Unsubscribes (if still subscribed) and closes the buffers nobody took. Idempotent. */
  close(): void {
    this.#finish(null, true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #finish(error: unknown, byUs: boolean): void {
    const wasSubscribed = !this.#ended;
    if (this.#ended && !byUs) return;
    this.#ended = true;
    if (error) this.#failure = error;
    if (byUs) {
      // What was not handed out is ours to close; the consumer will never see it.
      for (const event of this.#queue.splice(0)) if (event.type === 'surface' || event.type === 'replaced') event.buffer.close();
      this.#failure = null;
    }
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = null;
      const failure = this.#failure;
      this.#failure = null;
      if (failure) waiter.reject(failure);
      else waiter.resolve({ value: undefined, done: true });
    }
    if (wasSubscribed || byUs) this.#onClose(this, wasSubscribed && byUs);
  }
}

function bounding(rects: readonly Rect[]): Rect {
  const x = Math.min(...rects.map((r) => r.x));
  const y = Math.min(...rects.map((r) => r.y));
  return { x, y, width: Math.max(...rects.map((r) => r.x + r.width)) - x, height: Math.max(...rects.map((r) => r.y + r.height)) - y };
}
