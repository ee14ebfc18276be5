// SidecarServer: serves guest surfaces to peers on a unix socket (the protocol in PROTOCOL.md).
// Sources (source.ts) report surfaces; peers list them, subscribe, and get each buffer as a
// dma-buf fd with its layout, then damage, replaced and withdrawn events.
//
// What a peer can and cannot do to the sidecar, decided here:
// - Only allowed uids are served (SO_PEERCRED at accept: the sidecar's own uid, plus
//   `allowUids`); others get one error and are disconnected.
// - Every request is answered in order; a malformed one gets an error naming the field, and
//   after `maxBadMessages` of them the peer is dropped. Fds a peer sends are closed at once (no
//   request carries any). An oversized or unfinished frame drops the peer (its stream is out of
//   step). Nothing a request does can throw out of its handler (#handleSafely): even a bug of
//   ours reached by some request becomes an error reply to that peer, never a crash.
// - Caps per peer on buffers sent and not released, and on their bytes: a buffer that would go
//   over is not sent; the peer gets an error and that subscription ends ('cap').
// - Sends are queued per peer and bounded (outbound.ts): a peer that stops reading is dropped,
//   never slowing another. Every fd sent is a dup the queue closes once sent.
import { GuestDmabufError, ClosedError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { fourccCode } from '../../lib/formats/drm.js';
import type { ExportedSurface, FramebufferDescriptor } from '../../lib/guest/surface.js';
import type { UnixListener } from '../../lib/ipc/unix-listener.js';
import type { PeerCredentials, UnixSocket } from '../../lib/ipc/unix-socket.js';
import { listenReplacingStale } from '../vhost-user-gpu/socket-setup.js';
import { SidecarError, socketFailure, type SidecarErrorCode } from './errors.js';
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameReader } from './framing.js';
import { decodeRequest, MAX_DAMAGE_RECTS, PROTOCOL_NAME, requestIdOf, SUPPORTED_VERSIONS, type BufferInfo, type Rect, type Request, type SurfaceInfo, type WithdrawReason } from './messages.js';
import { Peer, type PeerCaps } from './peer.js';
import type { SurfaceSink, SurfaceSource } from './source.js';

export interface SidecarServerOptions {
  /** Where surfaces come from; the server owns them (close() closes them). */
  sources?: readonly SurfaceSource[];
  /** Uids served besides the sidecar's own. */
  allowUids?: readonly number[];
  /** Replaces the uid check (tests; a policy of your own). Default: own uid or allowUids. */
  authorize?: (peer: PeerCredentials) => boolean;
  /** Peers served at once; default 32. */
  maxPeers?: number;
  /** Buffers a peer may hold (sent, not released); default 16. */
  maxLiveBuffers?: number;
  /** Bytes of buffers a peer may hold; default 1 GiB. */
  maxPinnedBytes?: number | bigint;
  /** Framebuffers one peer may export at once; default 8. */
  maxExportsPerPeer?: number;
  /** wait-surface requests one peer may have outstanding; default 8. */
  maxWaitsPerPeer?: number;
  /** Largest request frame; default 64 KiB. */
  maxFrameBytes?: number;
  /** Time to finish a frame once started; default 5000 ms. */
  frameTimeoutMs?: number;
  /** Bytes queued for a peer that does not read before it is dropped; default 1 MiB. */
  maxQueuedBytes?: number;
  /** Messages queued for a peer that does not read before it is dropped; default 4096. */
  maxQueuedFrames?: number;
  /** Time one message may wait to be sent before the peer is dropped; default 10000 ms. */
  sendTimeoutMs?: number;
  /** Malformed requests tolerated before the peer is dropped; default 16. */
  maxBadMessages?: number;
  /** Exports a framebuffer a peer describes (export-framebuffer); absent: that request is refused. */
  exportFramebuffer?: (framebuffer: FramebufferDescriptor) => ExportedSurface;
  /** Where the server says what it attached to, whom it serves and whom it dropped. */
  log?: (line: string) => void;
}

interface Entry {
  id: number;
  key: string;
  name: string;
  kind: string;
  surface: ExportedSurface;
  buffer: number;
  subscribers: Set<Peer>;
  /** The peer that exported it (export-framebuffer), which owns its lifetime. */
  owner: Peer | null;
}

const DEFAULTS = {
  maxPeers: 32,
  maxLiveBuffers: 16,
  maxPinnedBytes: 1n << 30n,
  maxExportsPerPeer: 8,
  maxWaitsPerPeer: 8,
  maxQueuedBytes: 1 << 20,
  maxQueuedFrames: 4096,
  sendTimeoutMs: 10_000,
  maxBadMessages: 16,
};

export class SidecarServer implements AsyncDisposable {
  readonly #listener: UnixListener;
  readonly #options: SidecarServerOptions;
  readonly #caps: PeerCaps;
  readonly #sources: SurfaceSource[] = [];
  /** Surfaces by id, and by "<source index>/<key>". */
  readonly #entries = new Map<number, Entry>();
  readonly #byKey = new Map<string, Entry>();
  readonly #peers = new Set<Peer>();
  readonly #served = new Set<Promise<void>>();
  #nextSurface = 1;
  #nextBuffer = 1;
  #nextPeer = 1;
  #closing: Promise<void> | null = null;
  readonly #accepting: Promise<void>;

  private constructor(listener: UnixListener, options: SidecarServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#caps = {
      maxLiveBuffers: options.maxLiveBuffers ?? DEFAULTS.maxLiveBuffers,
      maxPinnedBytes: BigInt(options.maxPinnedBytes ?? DEFAULTS.maxPinnedBytes),
    };
    for (const source of options.sources ?? []) this.addSource(source);
    this.#accepting = this.#acceptLoop();
  }

  /** Listens on `path` (a stale socket file there is replaced, a live server's is not) and serves. */
  static async listen(path: string, options: SidecarServerOptions = {}): Promise<SidecarServer> {
    checkOptions(options);
    let listener: UnixListener;
    try {
      listener = await listenReplacingStale(path);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ERR_VHOST_USER_SOCKET_IN_USE') throw new GuestDmabufError(`another server is listening on ${path}: stop it (another sidecar?) or choose another --listen path`, 'EADDRINUSE', { cause: err });
      if (code === 'ERR_VHOST_USER_SOCKET_PATH') throw new GuestDmabufError(`${path} exists and is not a socket: choose another --listen path`, 'EEXIST', { cause: err });
      throw err;
    }
    const server = new SidecarServer(listener, options);
    server.#log(`listening on ${path}; serving uid ${[process.getuid?.() ?? 0, ...(options.allowUids ?? [])].join(', ')}${options.authorize ? ' (custom check)' : ''}`);
    return server;
  }

  get path(): string {
    return this.#listener.path;
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  /** Peers being served. */
  get peerCount(): number {
    return this.#peers.size;
  }

  /** What list() answers. */
  surfaces(): SurfaceInfo[] {
    return [...this.#entries.values()].map(infoOf);
  }

  /** Starts serving a source's surfaces (the server owns it from now on). */
  addSource(source: SurfaceSource): void {
    if (this.closed) throw new ClosedError('sidecar server');
    const index = this.#sources.push(source) - 1;
    this.#log(`attached to ${source.description}`);
    source.attach(this.#sinkFor(source, index));
  }

  /** Withdraws every surface, drops every peer, closes the sources and stops listening. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      this.#listener.close();
      for (const entry of [...this.#entries.values()]) this.#withdraw(entry, 'shutdown');
      // Let each peer read its withdrawn events (bounded by the send timeout), then drop it.
      await Promise.all([...this.#peers].map(async (peer) => {
        await Promise.race([peer.out.drained(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
        this.#drop(peer, 'the sidecar is shutting down');
      }));
      await this.#accepting;
      await Promise.all(this.#served);
      for (const source of this.#sources.splice(0)) {
        try {
          await source.close();
        } catch (err) {
          this.#log(`closing ${source.description} failed: ${(err as Error).message}`);
        }
      }
      this.#log('closed');
    })());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ----- sources -----

  #sinkFor(source: SurfaceSource, index: number): SurfaceSink {
    const key = (k: string): string => `${index}/${k}`;
    return {
      add: (k, name, surface) => {
        if (this.closed) return;
        const existing = this.#byKey.get(key(k));
        if (existing) {
          this.#replace(existing, surface);
          return;
        }
        const entry: Entry = { id: this.#nextSurface++, key: key(k), name, kind: source.kind, surface, buffer: this.#nextBuffer++, subscribers: new Set(), owner: null };
        this.#entries.set(entry.id, entry);
        this.#byKey.set(entry.key, entry);
        this.#log(`surface ${entry.id} (${name}, from ${source.kind}): ${describeSurface(surface)}`);
        this.#answerWaits(entry);
      },
      replace: (k, surface) => {
        const entry = this.#byKey.get(key(k));
        if (entry && !this.closed) this.#replace(entry, surface);
      },
      damage: (k, rects) => {
        const entry = this.#byKey.get(key(k));
        if (entry && !this.closed) this.#damage(entry, rects);
      },
      withdraw: (k) => {
        const entry = this.#byKey.get(key(k));
        if (entry) this.#withdraw(entry, 'gone');
      },
      warn: (message) => this.#log(`warning: ${message}`),
    };
  }

  #replace(entry: Entry, surface: ExportedSurface): void {
    entry.surface = surface;
    entry.buffer = this.#nextBuffer++;
    this.#log(`surface ${entry.id} (${entry.name}) has a new buffer: ${describeSurface(surface)}`);
    for (const peer of [...entry.subscribers]) this.#sendBuffer(peer, entry, 'replaced');
  }

  #damage(entry: Entry, rects: readonly Rect[]): void {
    // Too many rectangles for one message: their bounding box says no less.
    const sent = rects.length <= MAX_DAMAGE_RECTS ? rects.map((r) => ({ ...r })) : [boundingBox(rects)];
    for (const peer of entry.subscribers) peer.send({ type: 'damage', surface: entry.id, buffer: entry.buffer, rects: sent });
  }

  #withdraw(entry: Entry, reason: WithdrawReason): void {
    this.#entries.delete(entry.id);
    this.#byKey.delete(entry.key);
    for (const peer of entry.subscribers) {
      peer.subscriptions.delete(entry.id);
      peer.send({ type: 'withdrawn', surface: entry.id, reason });
    }
    entry.subscribers.clear();
    if (entry.owner) {
      entry.owner.exports.delete(entry.id);
      entry.surface[Symbol.dispose]();
    }
    this.#log(`surface ${entry.id} (${entry.name}) withdrawn: ${reason}`);
  }

  /** Sends the entry's current buffer (a dup of its fd), unless that would break the peer's caps. */
  #sendBuffer(peer: Peer, entry: Entry, type: 'surface' | 'replaced'): SidecarError | null {
    const size = entry.surface.dmabuf.size;
    const over = peer.overCap(size, this.#caps);
    if (over) {
      const error = new SidecarError(`surface ${entry.id}: ${over.message}`, over.code);
      if (type === 'replaced') {
        // The peer cannot get the buffer its surface now shows: end that subscription, saying why.
        peer.send({ type: 'error', surface: entry.id, code: over.code, message: error.message });
        this.#unsubscribe(peer, entry);
        peer.send({ type: 'withdrawn', surface: entry.id, reason: 'cap' });
        this.#log(`${peer.label}: ${error.message}; its subscription to surface ${entry.id} ended`);
      }
      return error;
    }
    const fd = native.dup(entry.surface.dmabuf.fd);
    if (peer.send({ type, ...bufferInfoOf(entry) }, [fd])) peer.hold(entry.buffer, size);
    return null;
  }

  #unsubscribe(peer: Peer, entry: Entry): void {
    entry.subscribers.delete(peer);
    peer.subscriptions.delete(entry.id);
  }

  // ----- peers -----

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let socket: UnixSocket;
      try {
        socket = await this.#listener.accept();
      } catch (err) {
        if (err instanceof ClosedError || this.closed) return;
        // EMFILE and the like: say so, let the moment pass, keep listening.
        this.#log(`accept failed: ${(err as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.closed) {
        socket.close();
        return;
      }
      const served = this.#admit(socket).catch((err: unknown) => this.#log(`internal error serving a peer: ${(err as Error).stack ?? String(err)}`));
      this.#served.add(served);
      void served.finally(() => this.#served.delete(served));
    }
  }

  async #admit(socket: UnixSocket): Promise<void> {
    let credentials: PeerCredentials;
    try {
      credentials = socket.peerCredentials();
    } catch (err) {
      this.#log(`a peer whose credentials cannot be read was disconnected: ${(err as Error).message}`);
      socket.close();
      return;
    }
    const allowed = this.#options.authorize ? this.#options.authorize(credentials) : credentials.uid === process.getuid?.() || (this.#options.allowUids ?? []).includes(credentials.uid);
    if (!allowed) {
      this.#log(`refused pid ${credentials.pid} (uid ${credentials.uid}): not an allowed uid (--allow-uid adds one)`);
      await this.#refuse(socket, 'ERR_SIDECAR_PEER_REFUSED', `uid ${credentials.uid} is not allowed by this sidecar: run as its user, or start it with --allow-uid ${credentials.uid}`);
      return;
    }
    if (this.#peers.size >= (this.#options.maxPeers ?? DEFAULTS.maxPeers)) {
      this.#log(`refused pid ${credentials.pid} (uid ${credentials.uid}): ${this.#peers.size} peers are served already`);
      await this.#refuse(socket, 'ERR_SIDECAR_TOO_MANY_PEERS', `the sidecar serves ${this.#peers.size} peers, its maximum: try again when one has left`);
      return;
    }
    const options = this.#options;
    const peer = new Peer(
      this.#nextPeer++,
      socket,
      credentials,
      { maxQueuedBytes: options.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes, maxQueuedFrames: options.maxQueuedFrames ?? DEFAULTS.maxQueuedFrames, sendTimeoutMs: options.sendTimeoutMs ?? DEFAULTS.sendTimeoutMs },
      (stalled, reason) => this.#drop(stalled, reason),
    );
    this.#peers.add(peer);
    this.#log(`serving ${peer.label}`);
    await this.#serve(peer);
  }

  /** One error, sent without waiting long for a peer that may not read, then the door. */
  async #refuse(socket: UnixSocket, code: SidecarErrorCode, message: string): Promise<void> {
    try {
      await socket.send(encodeFrame({ type: 'error', code, message }), [], { signal: AbortSignal.timeout(1000) });
    } catch {
      // It went away or does not read: nothing more is owed.
    } finally {
      socket.close();
    }
  }

  async #serve(peer: Peer): Promise<void> {
    const reader = new FrameReader(peer.socket, {
      maxFrameBytes: this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      maxFds: 0,
      frameTimeoutMs: this.#options.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS,
    });
    const maxBad = this.#options.maxBadMessages ?? DEFAULTS.maxBadMessages;
    for (;;) {
      let result;
      try {
        result = await reader.read();
      } catch (err) {
        if (err instanceof SidecarError) {
          peer.send({ type: 'error', code: err.code, message: err.message });
          await Promise.race([peer.out.drained(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
          this.#drop(peer, err.message);
        } else {
          this.#drop(peer, err instanceof ClosedError ? 'dropped' : socketFailure(err, 'its socket failed'));
        }
        return;
      }
      if (result === null) {
        this.#drop(peer, 'it disconnected');
        return;
      }
      if (!this.#peers.has(peer)) return;
      let error: SidecarError | null = null;
      let id: number | undefined;
      if ('bad' in result) {
        id = requestIdOf(result.bad.value);
        error = new SidecarError(result.bad.message, result.bad.code);
      } else {
        id = requestIdOf(result.frame.value);
        error = this.#handleSafely(peer, result.frame.value);
      }
      if (error) {
        peer.send({ type: 'error', ...(id === undefined ? {} : { id }), code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}), ...(error.causeCode ? { causeCode: error.causeCode } : {}) });
        if (error.code === 'ERR_SIDECAR_BAD_MESSAGE' || error.code === 'ERR_SIDECAR_UNKNOWN_TYPE' || error.code === 'ERR_SIDECAR_UNEXPECTED_FDS') {
          if (++peer.badMessages > maxBad) {
            peer.send({ type: 'error', code: 'ERR_SIDECAR_FRAMING', message: `more than ${maxBad} malformed messages: the connection is dropped` });
            await Promise.race([peer.out.drained(), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
            this.#drop(peer, `it sent more than ${maxBad} malformed messages`);
            return;
          }
        }
      }
    }
  }

  /** Handles one request; what it returns is the error reply. Nothing a peer sends can throw out of here. */
  #handleSafely(peer: Peer, value: unknown): SidecarError | null {
    try {
      return this.#handle(peer, decodeRequest(value));
    } catch (err) {
      if (err instanceof SidecarError) return err;
      // A bug of ours, reached by some request: the peer hears of it, the others never do.
      this.#log(`internal error on a request from ${peer.label}: ${(err as Error).stack ?? String(err)}`);
      return new SidecarError(`the sidecar failed on this request: ${(err as Error).message}`, 'ERR_SIDECAR_BAD_MESSAGE');
    }
  }

  #handle(peer: Peer, request: Request): SidecarError | null {
    if (request.type === 'hello') {
      if (peer.version !== null) return new SidecarError('hello was already done on this connection', 'ERR_SIDECAR_HELLO_FIRST');
      const version = SUPPORTED_VERSIONS.find((v) => request.versions.includes(v));
      if (version === undefined) return new SidecarError(`no common protocol version: you speak ${request.versions.join(', ') || 'none'}, this sidecar ${SUPPORTED_VERSIONS.join(', ')}`, 'ERR_SIDECAR_VERSION', { field: 'versions' });
      peer.version = version;
      peer.client = request.client;
      peer.send({
        type: 'hello',
        id: request.id,
        version,
        server: PROTOCOL_NAME,
        limits: { maxLiveBuffers: this.#caps.maxLiveBuffers, maxPinnedBytes: Number(this.#caps.maxPinnedBytes), maxFrameBytes: this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES },
      });
      this.#log(`${peer.label} speaks version ${version}`);
      return null;
    }
    if (peer.version === null) return new SidecarError(`"${request.type}" before hello: send hello with the versions you speak first`, 'ERR_SIDECAR_HELLO_FIRST');
    switch (request.type) {
      case 'list':
        peer.send({ type: 'surfaces', id: request.id, surfaces: this.surfaces() });
        return null;
      case 'subscribe': {
        const entry = this.#entry(request.surface);
        if (entry.subscribers.has(peer)) return new SidecarError(`you are already subscribed to surface ${entry.id}`, 'ERR_SIDECAR_SUBSCRIPTION', { field: 'surface' });
        const over = peer.overCap(entry.surface.dmabuf.size, this.#caps);
        if (over) return new SidecarError(`surface ${entry.id}: ${over.message}`, over.code);
        entry.subscribers.add(peer);
        peer.subscriptions.add(entry.id);
        peer.send({ type: 'ok', id: request.id });
        this.#sendBuffer(peer, entry, 'surface');
        return null;
      }
      case 'unsubscribe': {
        const entry = this.#entry(request.surface);
        if (!entry.subscribers.has(peer)) return new SidecarError(`you are not subscribed to surface ${entry.id}`, 'ERR_SIDECAR_SUBSCRIPTION', { field: 'surface' });
        this.#unsubscribe(peer, entry);
        peer.send({ type: 'ok', id: request.id });
        return null;
      }
      case 'release':
        if (!peer.release(request.buffer)) return new SidecarError(`you hold no buffer ${request.buffer} (released already, or never sent to you)`, 'ERR_SIDECAR_NO_BUFFER', { field: 'buffer' });
        peer.send({ type: 'ok', id: request.id });
        return null;
      case 'export-framebuffer':
        return this.#exportFor(peer, request);
      case 'wait-surface':
        return this.#waitSurface(peer, request);
      case 'unexport': {
        const entry = this.#entry(request.surface);
        if (entry.owner !== peer) return new SidecarError(`surface ${entry.id} was not exported by you: only its exporter can unexport it`, 'ERR_SIDECAR_NO_SURFACE', { field: 'surface' });
        this.#withdraw(entry, 'unexported');
        peer.send({ type: 'ok', id: request.id });
        return null;
      }
    }
  }

  #exportFor(peer: Peer, request: Extract<Request, { type: 'export-framebuffer' }>): SidecarError | null {
    const exporter = this.#options.exportFramebuffer;
    if (!exporter) return new SidecarError('this sidecar has no guest memory to export from: start it with --qmp PATH', 'ERR_SIDECAR_EXPORT_UNAVAILABLE');
    const max = this.#options.maxExportsPerPeer ?? DEFAULTS.maxExportsPerPeer;
    if (peer.exports.size >= max) return new SidecarError(`you have ${peer.exports.size} exported framebuffers, the cap is ${max}: unexport one first`, 'ERR_SIDECAR_EXPORT_UNAVAILABLE');
    const { framebuffer } = request;
    let surface: ExportedSurface;
    try {
      surface = exporter(framebuffer);
    } catch (err) {
      if (!(err instanceof GuestDmabufError)) throw err;
      return new SidecarError(`the framebuffer cannot be exported: ${err.message}`, 'ERR_SIDECAR_EXPORT_FAILED', { field: 'framebuffer', causeCode: err.code });
    }
    const name = request.name ?? `framebuffer at 0x${framebuffer.gpa.toString(16)} from peer ${peer.id}`;
    const entry: Entry = { id: this.#nextSurface++, key: `peer/${peer.id}/${request.id}/${this.#nextSurface}`, name, kind: 'peer', surface, buffer: this.#nextBuffer++, subscribers: new Set(), owner: peer };
    this.#entries.set(entry.id, entry);
    this.#byKey.set(entry.key, entry);
    peer.exports.add(entry.id);
    peer.send({ type: 'exported', id: request.id, surface: entry.id });
    this.#log(`surface ${entry.id} (${name}) exported for ${peer.label}: ${describeSurface(surface)}`);
    this.#answerWaits(entry);
    return null;
  }

  #waitSurface(peer: Peer, request: Extract<Request, { type: 'wait-surface' }>): SidecarError | null {
    const wanted = { surface: request.surface, name: request.name };
    const found = [...this.#entries.values()].find((entry) => matches(entry, wanted));
    if (found) {
      peer.send({ type: 'surfaces', id: request.id, surfaces: [infoOf(found)] });
      return null;
    }
    if (peer.waits.has(request.id)) return new SidecarError(`you already wait for a surface with request id ${request.id}: give each request its own id`, 'ERR_SIDECAR_BAD_MESSAGE', { field: 'id' });
    const max = this.#options.maxWaitsPerPeer ?? DEFAULTS.maxWaitsPerPeer;
    if (peer.waits.size >= max) return new SidecarError(`you have ${peer.waits.size} wait-surface requests outstanding, the cap is ${max}: wait for one at a time`, 'ERR_SIDECAR_WAIT_CAP');
    peer.waits.set(request.id, wanted);
    return null;
  }

  /** A surface appeared: answer every wait-surface it matches. */
  #answerWaits(entry: Entry): void {
    for (const peer of this.#peers) {
      for (const [id, wanted] of peer.waits) {
        if (!matches(entry, wanted)) continue;
        peer.waits.delete(id);
        peer.send({ type: 'surfaces', id, surfaces: [infoOf(entry)] });
      }
    }
  }

  #entry(id: number): Entry {
    const entry = this.#entries.get(id);
    if (!entry) throw new SidecarError(`no surface ${id}: list the surfaces (it may have been withdrawn)`, 'ERR_SIDECAR_NO_SURFACE', { field: 'surface' });
    return entry;
  }

  /** Ends a peer: its subscriptions and exports, its queue (fds closed), its socket. Idempotent. */
  #drop(peer: Peer, reason: string): void {
    if (!this.#peers.delete(peer)) return;
    for (const id of peer.subscriptions) this.#entries.get(id)?.subscribers.delete(peer);
    peer.subscriptions.clear();
    for (const id of [...peer.exports]) {
      const entry = this.#entries.get(id);
      if (entry) this.#withdraw(entry, 'peer-left');
    }
    peer.out.stop();
    peer.socket.close();
    this.#log(`${peer.label} is gone: ${reason}${peer.liveBuffers ? ` (it held ${peer.liveBuffers} buffers)` : ''}`);
  }

  #log(line: string): void {
    try {
      this.#options.log?.(line);
    } catch {
      // A failing log must not take the sidecar down.
    }
  }
}

function checkOptions(options: SidecarServerOptions): void {
  const positive = (name: keyof typeof DEFAULTS | 'maxFrameBytes' | 'frameTimeoutMs'): void => {
    const value = options[name];
    if (value === undefined) return;
    if (typeof value === 'bigint' ? value < 0n : !Number.isSafeInteger(value) || value < 0) {
      throw new GuestDmabufError(`sidecar option ${name} must be a non-negative whole number, not ${String(value)}`, 'ERR_OUT_OF_RANGE');
    }
  };
  for (const name of ['maxPeers', 'maxLiveBuffers', 'maxPinnedBytes', 'maxExportsPerPeer', 'maxWaitsPerPeer', 'maxQueuedBytes', 'maxQueuedFrames', 'sendTimeoutMs', 'maxBadMessages', 'maxFrameBytes', 'frameTimeoutMs'] as const) positive(name);
  for (const uid of options.allowUids ?? []) {
    if (!Number.isInteger(uid) || uid < 0 || uid > 0xffff_fffe) throw new GuestDmabufError(`allowUids: ${uid} is not a uid`, 'ERR_OUT_OF_RANGE');
  }
}

/** Whether a surface is the one a wait-surface asked for (both id and name, where given). */
function matches(entry: Entry, wanted: { surface?: number; name?: string }): boolean {
  return (wanted.surface === undefined || entry.id === wanted.surface) && (wanted.name === undefined || entry.name === wanted.name);
}

function infoOf(entry: Entry): SurfaceInfo {
  const { surface } = entry;
  return { surface: entry.id, name: entry.name, source: entry.kind, width: surface.width, height: surface.height, fourcc: surface.fourcc, modifier: surface.modifier };
}

function bufferInfoOf(entry: Entry): BufferInfo {
  const { surface } = entry;
  return {
    surface: entry.id,
    buffer: entry.buffer,
    width: surface.width,
    height: surface.height,
    fourcc: surface.fourcc,
    modifier: surface.modifier,
    planes: surface.planes.map((p) => ({ offset: p.offset, stride: p.stride })),
    size: Number(surface.dmabuf.size),
  };
}

function describeSurface(surface: ExportedSurface): string {
  return `${surface.width}×${surface.height} ${fourccCode(surface.fourcc)} stride ${surface.planes[0].stride}, ${surface.dmabuf.size} bytes`;
}

function boundingBox(rects: readonly Rect[]): Rect {
  const x = Math.min(...rects.map((r) => r.x));
  const y = Math.min(...rects.map((r) => r.y));
  const right = Math.max(...rects.map((r) => r.x + r.width));
  const bottom = Math.max(...rects.map((r) => r.y + r.height));
  return { x, y, width: right - x, height: bottom - y };
}
