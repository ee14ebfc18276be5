// VhostUserGpuBackend: the public face of the vhost-user-gpu back end. It owns the socket side
// (a path it listens on, or an inherited connected fd), makes a fresh device for every front
// end that connects, and tells its listeners what the guest shows: 'scanout' with the
// ExportedSurface (a dma-buf of the guest's pages) or null, and 'flush' with the rectangle.
//
// Connections, decided here because QEMU's side is simple and a back end outlives QEMU:
// - One front end at a time: a device's state (resources, rings, the GPU socket) belongs to
//   one QEMU. A second connection while one is served waits up to `busyGraceMs` (default 1 s),
//   because a QEMU reconnecting can race the end of its own old connection; if the first has
//   not ended by then, the second is closed at once (QEMU then fails its realize with an error
//   instead of hanging on a reply that never comes) and 'rejected' says who it was.
// - When the front end disconnects (QEMU quit, was killed, or the device was unplugged), the
//   device is reset (every surface closed, 'scanout' null for what was shown, then
//   'disconnect'), and a back end made by listen() accepts the next connection on the same
//   path: a restarted QEMU, or one using `-chardev socket,reconnect-ms=…`, gets a clean device.
// - A back end made by fromFd() has only that connection (libvirt's socketpair): when it ends,
//   the back end closes itself ('close', and `done` resolves).
import { EventEmitter } from 'node:events';
import { AbortError, ClosedError, GuestDmabufError, InvalidArgumentError } from '../../lib/core/errors.js';
import type { UnixListener } from '../../lib/ipc/unix-listener.js';
import type { PeerCredentials, UnixSocket } from '../../lib/ipc/unix-socket.js';
import type { ExportedSurface } from '../../lib/guest/surface.js';
import { VhostUserBackend } from '../vhost-user/backend.js';
import { requestName } from '../vhost-user/protocol.js';
import { VhostUserGpuDevice, type GpuDeviceOptions, type GpuMode, type GpuStats } from './gpu-device.js';
import { VhostUserGpuBackendError } from './gpu-backend-errors.js';
import { adoptConnected, listenReplacingStale } from './socket-setup.js';
import { udmabufSurfaceExporter } from './scanout-export.js';
import { SurfaceBridge, type SurfaceExporter } from './surface-exporter.js';
import { Command, Response, type Rect } from './virtio-gpu-protocol.js';

/** How guest pixels reach a scanout: the guest's own pages (zero copy), or a copy made at each TRANSFER_TO_HOST_2D (no tearing). */
export type GpuTransferMode = GpuMode;
export type { GpuStats };

/** What a user may set on the device; the back end owns its callbacks and its exporter. */
export type GpuDeviceSettings = Pick<GpuDeviceOptions, 'scanouts' | 'edid' | 'limits' | 'defaultMode' | 'waitForFreeTimeoutMs' | 'updateAckTimeoutMs'>;

export interface VhostUserGpuBackendOptions {
  device?: GpuDeviceSettings;
  /** Default 'zero-copy'. */
  mode?: GpuTransferMode;
  /** How a resource becomes a dma-buf. Default: exportVirtioGpuResource on udmabuf (`udmabufPath`, else $GUEST_DMABUF_DEVICE or /dev/udmabuf), opened per export. */
  exportSurface?: SurfaceExporter;
  udmabufPath?: string;
  /** Aborting closes the back end, as close() does. */
  signal?: AbortSignal;
  /** How long a second connection may wait for the first to end before it is refused; default 1000 ms. */
  busyGraceMs?: number;
}

/** A virtio-gpu rectangle, in pixels of the resource. */
export type GpuRect = Rect;

export interface ScanoutEvent {
  scanoutId: number;
  /** What the scanout shows now, or null (disabled, or the front end left). Owned by the back end: valid until the next 'scanout' for this id; dup its fd to keep it. */
  surface: ExportedSurface | null;
  /** The virtio-gpu resource shown (0 with a null surface). */
  resourceId: number;
}

export interface FlushEvent {
  scanoutId: number;
  /** What the guest says changed. In zero-copy mode the pixels are already in the surface. */
  rect: GpuRect;
}

export interface ConnectionEvent {
  /** Counts the front ends this back end has served, from 1. */
  connection: number;
  /** The front end's process (SO_PEERCRED); for a socketpair from libvirt, libvirt's. */
  peer: PeerCredentials;
}

export interface DisconnectEvent extends ConnectionEvent {
  /** vhost-user requests the connection carried. */
  requests: number;
  /** What the connection's device did, at its end. */
  stats: GpuStats;
}

export interface RejectedEvent {
  peer: PeerCredentials;
  error: VhostUserGpuBackendError;
}

export interface RequestEvent {
  connection: number;
  request: number;
  /** e.g. "SET_MEM_TABLE (5)". */
  name: string;
  size: number;
  fds: number;
}

export interface CommandEvent {
  connection: number;
  /** The virtio-gpu control command and its name ("SET_SCANOUT"), or a hex number when unknown. */
  type: number;
  name: string;
  /** The response type the guest got and its name ("OK_NODATA", "ERR_INVALID_PARAMETER"). */
  response: number;
  responseName: string;
}

/** Every event and its listener's arguments. */
export interface VhostUserGpuBackendEvents {
  scanout: [ScanoutEvent];
  flush: [FlushEvent];
  connect: [ConnectionEvent];
  disconnect: [DisconnectEvent];
  rejected: [RejectedEvent];
  /** Every vhost-user request as it arrives (for logs). */
  request: [RequestEvent];
  /** Every virtio-gpu control command and its answer (for logs). */
  command: [CommandEvent];
  /** Something failed that did not stop the back end: a refused command, a failed export, a broken queue. */
  warning: [GuestDmabufError];
  /** The back end closed: close(), the signal, or (fromFd) its one connection ended. */
  close: [];
}

type EventName = keyof VhostUserGpuBackendEvents;
type Listener<K extends EventName> = (...args: VhostUserGpuBackendEvents[K]) => void;

interface Connection {
  id: number;
  peer: PeerCredentials;
  device: VhostUserGpuDevice;
  backend: VhostUserBackend;
  /** Scanouts announced with a surface (a null must follow when the connection ends). */
  shown: Set<number>;
  /** Settles after 'disconnect' was emitted. */
  ended: Promise<void>;
}

const NOBODY: PeerCredentials = { pid: 0, uid: -1, gid: -1 };

export class VhostUserGpuBackend implements AsyncDisposable {
  readonly #emitter = new EventEmitter();
  readonly #options: VhostUserGpuBackendOptions;
  readonly #bridge: SurfaceBridge;
  readonly #listener: UnixListener | null;
  readonly #scanouts: number;
  readonly #busyGraceMs: number;
  readonly #onAbort = (): void => void this.close();
  #current: Connection | null = null;
  #waiting: { socket: UnixSocket; timer: NodeJS.Timeout } | null = null;
  #connections = 0;
  #closing: Promise<void> | null = null;
  #accepting: Promise<void> = Promise.resolve();
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  private constructor(source: { listener: UnixListener } | { socket: UnixSocket }, options: VhostUserGpuBackendOptions) {
    this.#options = options;
    this.#emitter.setMaxListeners(0);
    this.#scanouts = options.device?.scanouts ?? 1;
    this.#busyGraceMs = options.busyGraceMs ?? 1000;
    this.#bridge = new SurfaceBridge(options.exportSurface ?? udmabufSurfaceExporter(options.udmabufPath));
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if ('listener' in source) {
      this.#listener = source.listener;
      this.#accepting = this.#acceptLoop(source.listener);
    } else {
      this.#listener = null;
      this.#serve(source.socket);
    }
  }

  /**
   * Listens on `socketPath` (a stale socket file there is replaced; a live server's or a
   * non-socket is an error) and serves the QEMU that connects with
   * `-chardev socket,id=…,path=socketPath`, one at a time, until close().
   */
  static async listen(socketPath: string, options: VhostUserGpuBackendOptions = {}): Promise<VhostUserGpuBackend> {
    checkOptions(options);
    if (options.signal?.aborted) throw new AbortError(`listening on ${socketPath}`, options.signal.reason);
    const listener = await listenReplacingStale(socketPath);
    if (options.signal?.aborted) {
      listener.close();
      throw new AbortError(`listening on ${socketPath}`, options.signal.reason);
    }
    return new VhostUserGpuBackend({ listener }, options);
  }

  /**
   * Serves the front end on an inherited connected socket (`--fd`, libvirt's socketpair end);
   * takes the fd (closed on close()). Closes itself when that connection ends.
   */
  static async fromFd(fd: number, options: VhostUserGpuBackendOptions = {}): Promise<VhostUserGpuBackend> {
    checkOptions(options);
    if (options.signal?.aborted) throw new AbortError(`serving fd ${fd}`, options.signal.reason);
    return new VhostUserGpuBackend({ socket: adoptConnected(fd) }, options);
  }

  on<K extends EventName>(name: K, listener: Listener<K>): this {
    this.#emitter.on(name, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends EventName>(name: K, listener: Listener<K>): this {
    this.#emitter.once(name, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends EventName>(name: K, listener: Listener<K>): this {
    this.#emitter.off(name, listener as (...args: unknown[]) => void);
    return this;
  }

  /** The surface scanout `scanoutId` shows now, or null (nothing shown, no front end, or the export failed). */
  scanout(scanoutId: number): ExportedSurface | null {
    if (!Number.isInteger(scanoutId) || scanoutId < 0 || scanoutId >= this.#scanouts) {
      throw new InvalidArgumentError(`scanout ${scanoutId} does not exist: the device has ${this.#scanouts} (0 to ${this.#scanouts - 1})`, 'ERR_OUT_OF_RANGE');
    }
    return this.#bridge.surfaceOf(this.#current?.device.scanout(scanoutId) ?? null);
  }

  /** The socket path listen() was given, or null for fromFd(). */
  /** What the current front end's device has done so far (a copy), or null while none is connected. */
  get stats(): GpuStats | null {
    return this.#current ? { ...this.#current.device.stats } : null;
  }

  get socketPath(): string | null {
    return this.#listener?.path ?? null;
  }

  /** The front end being served, or null. */
  get peer(): PeerCredentials | null {
    return this.#current?.peer ?? null;
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  /** Resolves once the back end has closed, for whatever reason ('close'). */
  get done(): Promise<void> {
    return this.#done;
  }

  /**
   * Disconnects the front end (the device is reset, its surfaces closed), stops listening and
   * removes the socket file. Idempotent; resolves after 'close'.
   */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      this.#options.signal?.removeEventListener('abort', this.#onAbort);
      this.#listener?.close();
      this.#dropWaiting();
      const current = this.#current;
      if (current) {
        await current.backend.close();
        await current.ended;
      }
      await this.#accepting;
      this.#emit('close');
      this.#resolveDone();
    })());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #acceptLoop(listener: UnixListener): Promise<void> {
    for (;;) {
      let socket: UnixSocket;
      try {
        socket = await listener.accept();
      } catch (err) {
        if (err instanceof ClosedError || this.closed) return;
        // EMFILE and the like: report, let the moment pass, keep listening.
        this.#emit('warning', asError(err));
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.closed) {
        socket.close();
        return;
      }
      if (!this.#current) this.#serve(socket);
      else if (this.#waiting) this.#reject(socket);
      else {
        const timer = setTimeout(() => {
          if (this.#waiting?.socket !== socket) return;
          this.#waiting = null;
          this.#reject(socket);
        }, this.#busyGraceMs);
        this.#waiting = { socket, timer };
      }
    }
  }

  #serve(socket: UnixSocket): void {
    const id = ++this.#connections;
    const peer = peerOf(socket);
    const shown = new Set<number>();
    const device = new VhostUserGpuDevice({
      ...this.#options.device,
      mode: this.#options.mode ?? 'zero-copy',
      exporter: this.#bridge.exporter,
      onWarning: (error) => this.#emit('warning', error),
      onScanout: (scanoutId, buffer, resourceId) => {
        const surface = this.#bridge.surfaceOf(buffer);
        if (surface) shown.add(scanoutId);
        else shown.delete(scanoutId);
        this.#emit('scanout', { scanoutId, surface, resourceId });
      },
      onFlush: (scanoutId, rect) => this.#emit('flush', { scanoutId, rect: { ...rect } }),
      onCommand: (type, response) => {
        if (this.#emitter.listenerCount('command') > 0) this.#emit('command', { connection: id, type, name: nameOf(Command, type), response, responseName: nameOf(Response, response) });
      },
    });
    const backend = new VhostUserBackend(socket, device, {
      onWarning: (error) => this.#emit('warning', error),
      onRequest: (request, _flags, size, fds) => {
        if (this.#emitter.listenerCount('request') > 0) this.#emit('request', { connection: id, request, name: requestName(request), size, fds });
      },
    });
    const connection: Connection = { id, peer, device, backend, shown, ended: Promise.resolve() };
    connection.ended = backend.served.then(() => this.#ended(connection));
    this.#current = connection;
    this.#emit('connect', { connection: id, peer });
  }

  #ended(connection: Connection): void {
    // The back end's teardown has reset the device: its surfaces are closed already.
    for (const scanoutId of connection.shown) this.#emit('scanout', { scanoutId, surface: null, resourceId: 0 });
    connection.shown.clear();
    if (this.#current === connection) this.#current = null;
    this.#emit('disconnect', { connection: connection.id, peer: connection.peer, requests: connection.backend.requestCount, stats: { ...connection.device.stats } });
    if (!this.#listener) {
      void this.close();
      return;
    }
    const waiting = this.#waiting;
    if (waiting && !this.closed) {
      clearTimeout(waiting.timer);
      this.#waiting = null;
      this.#serve(waiting.socket);
    }
  }

  #reject(socket: UnixSocket): void {
    const peer = peerOf(socket);
    socket.close();
    const who = this.#current ? `pid ${this.#current.peer.pid}` : 'another front end';
    const error = new VhostUserGpuBackendError(
      `refused a vhost-user connection from pid ${peer.pid} on ${this.socketPath}: ${who} is being served, and a device serves one front end; give each QEMU its own socket path (and back end)`,
      'ERR_VHOST_USER_BUSY',
    );
    this.#emit('rejected', { peer, error });
  }

  #dropWaiting(): void {
    if (!this.#waiting) return;
    clearTimeout(this.#waiting.timer);
    this.#waiting.socket.close();
    this.#waiting = null;
  }

  #emit<K extends EventName>(name: K, ...args: VhostUserGpuBackendEvents[K]): void {
    try {
      this.#emitter.emit(name, ...args);
    } catch (err) {
      // A listener's exception must not unwind into the device mid-command (the guest would
      // wait forever for its answer): it is rethrown on its own, as an uncaught error.
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

function checkOptions(options: VhostUserGpuBackendOptions): void {
  const { mode, busyGraceMs } = options;
  if (mode !== undefined && mode !== 'zero-copy' && mode !== 'copy-on-transfer') {
    throw new InvalidArgumentError(`mode must be 'zero-copy' or 'copy-on-transfer', not ${JSON.stringify(mode)}`);
  }
  if (busyGraceMs !== undefined && (!Number.isInteger(busyGraceMs) || busyGraceMs < 0 || busyGraceMs > 0x7fff_ffff)) {
    throw new InvalidArgumentError(`busyGraceMs must be a whole number of milliseconds, not ${busyGraceMs}`, 'ERR_OUT_OF_RANGE');
  }
  // The device checks the rest of its settings (scanouts, limits) when a front end connects;
  // check them now too, so a bad setting fails listen() rather than every connection.
  new VhostUserGpuDevice({ ...options.device, exporter: () => unreachable() });
}

function unreachable(): never {
  throw new GuestDmabufError('the settings check device never exports', 'ERR_INTERNAL');
}

function nameOf(table: Readonly<Record<string, number>>, code: number): string {
  return Object.entries(table).find(([, c]) => c === code)?.[0] ?? `0x${code.toString(16)}`;
}

function peerOf(socket: UnixSocket): PeerCredentials {
  try {
    return socket.peerCredentials();
  } catch {
    return NOBODY;
  }
}

function asError(err: unknown): GuestDmabufError {
  return err instanceof GuestDmabufError ? err : new GuestDmabufError(String((err as Error)?.message ?? err), 'ERR_INTERNAL', { cause: err });
}
