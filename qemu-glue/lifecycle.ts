// GuestMemorySession: discovered guest memory that follows the VM's life. A guest reset makes
// every exported surface stale (the guest will lay out new framebuffers), so the surface
// cache is emptied and holders are told; a memory device going away or changing size means
// the map itself changed, so memory is discovered again; a balloon change means QEMU may have
// discarded guest pages (punched holes in the memfd), which a buffer made earlier still pins
// as the old pages, so the cache is emptied then too; QEMU quitting (SHUTDOWN, then the QMP
// connection ending) closes the memfds we took and the cache, and says why. The connection
// ending while QEMU lives on (a sidecar restarted, a socket dropped) ends the session alike:
// connect again and start a new one, as at first.
import { EventEmitter } from 'node:events';
import { ClosedError, type GuestDmabufError } from '../lib/core/errors.js';
import type { GuestMemory } from '../lib/guest/guest-memory.js';
import type { SurfaceCache } from '../lib/guest/surface-cache.js';
import { discoverGuestMemory, type DiscoveredGuestMemory, type DiscoveryOptions } from './discovery/discover.js';
import type { QmpClient } from './qmp/client.js';
import type { QmpConnectionError } from './qmp/errors.js';
import type { QmpEvent } from './qmp/message.js';

export interface SessionOptions extends Omit<DiscoveryOptions, 'signal'> {
  /** Emptied on reset, on a memory change and at close. */
  cache?: SurfaceCache;
}

/** Events that change guest memory's map: discover again. */
const MAP_EVENTS = ['DEVICE_DELETED', 'MEMORY_DEVICE_SIZE_CHANGE'] as const;

type Listener = Parameters<EventEmitter['on']>[1];

export class GuestMemorySession {
  readonly qmp: QmpClient;
  readonly #options: SessionOptions;
  readonly #emitter = new EventEmitter();
  #discovered: DiscoveredGuestMemory | undefined;
  #closed = false;
  #refreshing: Promise<void> | undefined;
  readonly #onEvent = (event: QmpEvent): void => this.#handle(event);
  readonly #onClose = (reason: QmpConnectionError | undefined): void => this.#end(reason);

  private constructor(qmp: QmpClient, discovered: DiscoveredGuestMemory, options: SessionOptions) {
    this.qmp = qmp;
    this.#discovered = discovered;
    this.#options = options;
    qmp.on('event', this.#onEvent);
    qmp.on('close', this.#onClose);
  }

  /** Discovers guest memory and follows QEMU's events from then on. */
  static async start(qmp: QmpClient, options: SessionOptions = {}): Promise<GuestMemorySession> {
    const discovered = await discoverGuestMemory(qmp, options);
    const session = new GuestMemorySession(qmp, discovered, options);
    // The connection may have ended while discovery ran.
    if (qmp.closed) session.#end(undefined);
    return session;
  }

  /** The current map. Throws ClosedError once QEMU is gone or close() was called. */
  get memory(): GuestMemory {
    return this.discovered.memory;
  }

  get discovered(): DiscoveredGuestMemory {
    if (!this.#discovered) throw new ClosedError('guest memory session', 'is closed: QEMU went away or close() was called');
    return this.#discovered;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Discovers memory again (after a DIMM was hot-plugged, which QEMU announces with no event). */
  refresh(): Promise<void> {
    return (this.#refreshing ??= (async () => {
      try {
        const next = await discoverGuestMemory(this.qmp, { ...this.#options, earlier: this.#discovered?.memfds });
        if (this.#closed) {
          next.close();
          return;
        }
        const previous = this.#discovered;
        this.#discovered = next;
        this.#options.cache?.invalidateAll();
        previous?.close();
        this.#emit('memory-changed', next);
      } finally {
        this.#refreshing = undefined;
      }
    })());
  }

  /**
   * 'reset' and 'balloon' (QmpEvent) after the cache was emptied: buffers held elsewhere show
   * what the guest had before; 'memory-changed' (DiscoveredGuestMemory);
   * 'shutdown' (QmpEvent: QEMU may still run, e.g. with -no-shutdown); 'closed' (the
   * connection's error, or undefined for close()); 'error' when rediscovery fails.
   */
  on(name: 'reset' | 'balloon' | 'shutdown', listener: (event: QmpEvent) => void): this;
  on(name: 'memory-changed', listener: (discovered: DiscoveredGuestMemory) => void): this;
  on(name: 'closed', listener: (reason: QmpConnectionError | undefined) => void): this;
  on(name: 'error', listener: (err: GuestDmabufError) => void): this;
  on(name: string, listener: Listener): this {
    this.#emitter.on(name, listener);
    return this;
  }

  once(name: 'reset' | 'balloon' | 'shutdown', listener: (event: QmpEvent) => void): this;
  once(name: 'memory-changed', listener: (discovered: DiscoveredGuestMemory) => void): this;
  once(name: 'closed', listener: (reason: QmpConnectionError | undefined) => void): this;
  once(name: 'error', listener: (err: GuestDmabufError) => void): this;
  once(name: string, listener: Listener): this {
    this.#emitter.once(name, listener);
    return this;
  }

  /** Stops following QEMU and closes the memfds discovery took (the QMP client stays open). */
  close(): void {
    this.#end(undefined);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #handle(event: QmpEvent): void {
    if (this.#closed) return;
    if (event.event === 'RESET') {
      this.#options.cache?.invalidateAll();
      this.#emit('reset', event);
    } else if (event.event === 'BALLOON_CHANGE') {
      this.#options.cache?.invalidateAll();
      this.#emit('balloon', event);
    } else if (event.event === 'SHUTDOWN') {
      this.#emit('shutdown', event);
    } else if ((MAP_EVENTS as readonly string[]).includes(event.event)) {
      this.refresh().catch((err: unknown) => {
        // The connection ending meanwhile is reported by 'closed', not as an error.
        if (!this.#closed) this.#emit('error', err);
      });
    }
  }

  #end(reason: QmpConnectionError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.qmp.off('event', this.#onEvent);
    this.qmp.off('close', this.#onClose);
    this.#options.cache?.invalidateAll();
    this.#discovered?.close();
    this.#discovered = undefined;
    this.#emit('closed', reason);
  }

  #emit(name: string, arg: unknown): void {
    // 'error' without a listener would throw here, inside QMP's dispatch: drop it instead.
    if (name === 'error' && this.#emitter.listenerCount('error') === 0) return;
    this.#emitter.emit(name, arg);
  }
}
