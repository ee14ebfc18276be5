// The dma-bufs exported for each resource, and waiting for them to be free.
//
// A resource is exported once and its buffer kept until its backing goes (DETACH_BACKING,
// UNREF, a reset): a resource scanned out again (fbcon sends SET_SCANOUT three times; a
// compositor flips between two) reuses it rather than pinning every page again. Keeping our
// own reference for that long is also what makes wait-for-free possible: a release notice can
// only be asked for while one of our fds for the buffer is open (lib/kernel/release-notice.ts),
// so the wait starts before we close ours and then covers every other holder (QEMU's display,
// a compositor, a peer).
//
// A buffer replaced without the guest letting go of the memory (a new memory table) is retired,
// not closed, for the same reason: the resource's DETACH/UNREF still waits for it.
import { GuestDmabufError, NotSupportedError } from '../../lib/core/errors.js';
import type { ScanoutBuffer } from './scanout-export.js';

export type ReleaseOutcome =
  /** Every holder let go in time. */
  | { kind: 'released' }
  /** Someone still held a buffer when the time was up. */
  | { kind: 'timeout' }
  /** The exporter cannot tell (`reason` says why, when it said so). */
  | { kind: 'unobservable'; reason?: GuestDmabufError }
  /** The device was reset meanwhile: nobody waits for the answer any more. */
  | { kind: 'aborted' };

interface Exported {
  current: ScanoutBuffer | null;
  retired: ScanoutBuffer[];
}

export class ResourceExports {
  readonly #byResource = new Map<number, Exported>();
  /** Aborted (and replaced) at a reset: ends every wait. */
  #reset = new AbortController();

  /** The resource's live export, if any. */
  get(resourceId: number): ScanoutBuffer | undefined {
    return this.#byResource.get(resourceId)?.current ?? undefined;
  }

  set(resourceId: number, buffer: ScanoutBuffer): void {
    const entry = this.#byResource.get(resourceId);
    if (entry?.current) throw new GuestDmabufError(`resource ${resourceId} is already exported`, 'ERR_INTERNAL');
    if (entry) entry.current = buffer;
    else this.#byResource.set(resourceId, { current: buffer, retired: [] });
  }

  /** Buffers kept open, live and retired (each is one fd). */
  get count(): number {
    let n = 0;
    for (const entry of this.#byResource.values()) n += (entry.current ? 1 : 0) + entry.retired.length;
    return n;
  }

  /** No export is live any more (they named an old memory table); each is kept until its resource lets go. */
  retireAll(): void {
    for (const entry of this.#byResource.values()) {
      if (entry.current) entry.retired.push(entry.current);
      entry.current = null;
    }
  }

  /**
   * Closes every buffer of the resource and waits, up to `timeoutMs`, until all are free.
   * Null when the resource had none. Never rejects.
   */
  release(resourceId: number, timeoutMs: number): Promise<ReleaseOutcome> | null {
    const entry = this.#byResource.get(resourceId);
    if (!entry) return null;
    this.#byResource.delete(resourceId);
    const buffers = entry.current ? [...entry.retired, entry.current] : entry.retired;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const reset = this.#reset.signal;
    const onReset = (): void => controller.abort();
    reset.addEventListener('abort', onReset, { once: true });
    // Asked before the close: after our last fd closes, a release can no longer be observed.
    const waits = buffers.map((buffer) => (buffer.whenReleased ? askRelease(buffer, controller.signal) : Promise.reject(new Unobservable())));
    for (const buffer of buffers) buffer[Symbol.dispose]();
    return Promise.all(waits)
      .then(
        (): ReleaseOutcome => ({ kind: 'released' }),
        (err: unknown): ReleaseOutcome => {
          if (timedOut) return { kind: 'timeout' };
          if (reset.aborted) return { kind: 'aborted' };
          if (err instanceof Unobservable) return { kind: 'unobservable' };
          return { kind: 'unobservable', reason: err instanceof GuestDmabufError ? err : new NotSupportedError(String((err as Error)?.message ?? err)) };
        },
      )
      .finally(() => {
        // One failed wait settles the outcome; the others must not linger on their eventfds.
        controller.abort();
        clearTimeout(timer);
        reset.removeEventListener('abort', onReset);
      });
  }

  /** A reset: every buffer closed without waiting, every wait ended. */
  clear(): void {
    this.#reset.abort();
    this.#reset = new AbortController();
    for (const entry of this.#byResource.values()) {
      for (const buffer of entry.retired) buffer[Symbol.dispose]();
      entry.current?.[Symbol.dispose]();
    }
    this.#byResource.clear();
  }
}

/** The exporter gave no way to observe the release. */
class Unobservable extends Error {}

function askRelease(buffer: ScanoutBuffer, signal: AbortSignal): Promise<void> {
  try {
    return buffer.whenReleased!(signal);
  } catch (err) {
    return Promise.reject(err);
  }
}
