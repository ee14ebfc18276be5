// Runs async operations one after another, so concurrent sends (or receives) on one socket
// never interleave.
import { AbortError } from '../core/errors.js';

/**
 * Runs async operations one after another, so concurrent sends (or receives) never
 * interleave. When idle it starts the operation at once, so a close() right after the call
 * finds its wait and cancels it, as for any other pending wait. An operation queued with a
 * signal rejects as soon as the signal aborts, and is then skipped when its turn comes.
 */
export class SerialQueue {
  #tail: Promise<void> | null = null;
  run<T>(operation: () => Promise<T>, signal?: AbortSignal, what = 'the operation'): Promise<T> {
    const aborted = (): AbortError => new AbortError(what, signal?.reason);
    const start = (): Promise<T> => (signal?.aborted ? Promise.reject(aborted()) : operation());
    const queued = this.#tail !== null;
    const result = queued ? this.#tail!.then(start) : start();
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tail = tail;
    void tail.then(() => {
      if (this.#tail === tail) this.#tail = null;
    });
    if (!queued || signal === undefined) return result;
    // Waiting for its turn is a wait too: the signal ends it now, not when the queue drains.
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(aborted());
      signal.addEventListener('abort', onAbort, { once: true });
      result.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }
}
