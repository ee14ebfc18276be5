// QMP events as an async iterator with a bounded buffer. Events are pushed as they arrive;
// a consumer slower than QEMU does not grow memory without bound: once `maxBuffered` events
// wait, later ones are dropped and the consumer, after the ones it has, gets a
// QmpEventOverflowError. The stream ends when the connection closes (with the connection's
// error when it failed), or when the signal aborts (AbortError).
import { AbortError, GuestDmabufError } from '../../lib/core/errors.js';
import { QmpEventOverflowError } from './errors.js';
import type { QmpEvent } from './message.js';

export const DEFAULT_MAX_BUFFERED_EVENTS = 1024;

export interface EventsOptions {
  /** Ends the iteration with an AbortError. */
  signal?: AbortSignal;
  /** Only these event names (e.g. ['SHUTDOWN', 'RESET']); default all. */
  names?: readonly string[];
  /** Most events held for a slow consumer (default 1024). */
  maxBuffered?: number;
}

type Waiter = { resolve: (result: IteratorResult<QmpEvent>) => void; reject: (err: unknown) => void };

export class EventStream implements AsyncIterableIterator<QmpEvent> {
  readonly #names: ReadonlySet<string> | undefined;
  readonly #maxBuffered: number;
  readonly #queue: QmpEvent[] = [];
  #waiter: Waiter | undefined;
  /** Set once the stream is over: undefined error means a clean end. */
  #end: { error: unknown } | undefined;
  #overflowed = false;
  readonly #detach: () => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => this.#finish(new AbortError('iterating QMP events', this.#signal?.reason));

  /** `detach` unregisters the stream from its client; it runs once, when the stream ends. */
  constructor(options: EventsOptions, detach: () => void) {
    this.#names = options.names ? new Set(options.names) : undefined;
    this.#maxBuffered = options.maxBuffered ?? DEFAULT_MAX_BUFFERED_EVENTS;
    this.#detach = detach;
    this.#signal = options.signal;
    if (this.#signal?.aborted) this.#onAbort();
    else this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Called by the client for every event. */
  push(event: QmpEvent): void {
    if (this.#end !== undefined || this.#overflowed) return;
    if (this.#names && !this.#names.has(event.event)) return;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve({ value: event, done: false });
      return;
    }
    if (this.#queue.length >= this.#maxBuffered) {
      // Ends the stream after what it holds: the consumer learns of the gap where it is.
      this.#overflowed = true;
      this.#finish(new QmpEventOverflowError(this.#maxBuffered));
      return;
    }
    this.#queue.push(event);
  }

  /** Ends the stream: cleanly when `error` is undefined. Buffered events are still delivered. */
  close(error?: unknown): void {
    this.#finish(error);
  }

  #finish(error: unknown): void {
    if (this.#end !== undefined) return;
    this.#end = { error };
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#detach();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (!waiter) return;
    if (error === undefined) waiter.resolve({ value: undefined, done: true });
    else {
      this.#end = { error: undefined };
      waiter.reject(error);
    }
  }

  next(): Promise<IteratorResult<QmpEvent>> {
    const event = this.#queue.shift();
    if (event !== undefined) return Promise.resolve({ value: event, done: false });
    if (this.#end !== undefined) {
      const { error } = this.#end;
      // The error is reported once; afterwards the stream is simply done.
      this.#end = { error: undefined };
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    if (this.#waiter) return Promise.reject(new GuestDmabufError('QMP event stream: next() called again before the previous call settled; await each next()', 'ERR_INVALID_STATE'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<QmpEvent>> {
    this.#queue.length = 0;
    this.#finish(undefined);
    this.#end = { error: undefined };
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
