// SidecarClient: a peer of the sidecar (a Wayland proxy, a screenshot tool, a test). Connects,
// agrees a protocol version (hello), and then: list() the surfaces, subscribe() to one as an
// async iterator of events whose buffers are owned dma-buf objects, exportFramebuffer() a
// framebuffer the sidecar should serve. Replies are matched by request id; events are routed
// by surface id. A sidecar error answer rejects that call with SidecarError (its `code` and the
// `field` at fault); the connection ending rejects everything pending with
// SidecarConnectionError.
import { AbortError, GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { SidecarConnectionError, SidecarError } from './errors.js';
import { encodeFrame, FrameReader, MAX_FDS_PER_FRAME } from './framing.js';
import { decodeServerMessage, encodeRequest, SUPPORTED_VERSIONS, type Limits, type Request, type ServerMessage, type SurfaceInfo } from './messages.js';
import { SurfaceBuffer, SurfaceSubscription } from './subscription.js';

export interface SidecarConnectOptions {
  signal?: AbortSignal;
  /** Give up connecting and agreeing a version after this long; default 10000 ms. */
  timeoutMs?: number;
  /** Named in the sidecar's logs. */
  clientName?: string;
  /** Largest frame accepted from the sidecar; default 1 MiB. */
  maxFrameBytes?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** A framebuffer for the sidecar to export over its guest memory. */
export interface FramebufferToExport {
  gpa: number | bigint;
  width: number;
  height: number;
  stride: number;
  /** DRM format code ("XR24"), name or fourcc. */
  format: string | number;
}

type Pending = { resolve: (message: ServerMessage) => void; reject: (error: unknown) => void };
type RequestBody = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class SidecarClient implements AsyncDisposable {
  readonly path: string;
  readonly #socket: UnixSocket;
  readonly #pending = new Map<number, Pending>();
  readonly #subscriptions = new Map<number, SurfaceSubscription>();
  #nextId = 1;
  #version = 0;
  #limits: Limits = { maxLiveBuffers: 0, maxPinnedBytes: 0, maxFrameBytes: 0 };
  #ended: SidecarConnectionError | null = null;
  /** An error the sidecar sent with no request to answer (a refusal at connect). */
  #unsolicited: SidecarError | null = null;
  readonly #reading: Promise<void>;

  private constructor(path: string, socket: UnixSocket, maxFrameBytes: number) {
    this.path = path;
    this.#socket = socket;
    this.#reading = this.#readLoop(new FrameReader(socket, { maxFrameBytes, maxFds: MAX_FDS_PER_FRAME }));
  }

  /** Connects to the sidecar at `path` and agrees a protocol version. */
  static async connect(path: string, { signal, timeoutMs = 10_000, clientName, maxFrameBytes = 1 << 20 }: SidecarConnectOptions = {}): Promise<SidecarClient> {
    const deadline = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let socket: UnixSocket;
    try {
      socket = await UnixSocket.connect(path, { signal: combined });
    } catch (err) {
      throw translateAbort(err, signal, deadline, timeoutMs, `connecting to the sidecar at ${path}`);
    }
    const client = new SidecarClient(path, socket, maxFrameBytes);
    try {
      const reply = await client.#request({ type: 'hello', versions: [...SUPPORTED_VERSIONS], ...(clientName ? { client: clientName } : {}) }, combined);
      if (reply.type !== 'hello') throw new SidecarConnectionError(`the sidecar answered hello with "${reply.type}"`, 'ERR_SIDECAR_PROTOCOL');
      client.#version = reply.version;
      client.#limits = reply.limits;
      return client;
    } catch (err) {
      client.close();
      await client.#reading;
      // A sidecar that refuses us says why before it closes: that is the error to report.
      throw client.#unsolicited ?? translateAbort(err, signal, deadline, timeoutMs, `agreeing a version with the sidecar at ${path}`);
    }
  }

  /** The protocol version agreed. */
  get version(): number {
    return this.#version;
  }

  /** The caps the sidecar holds this peer to. */
  get limits(): Limits {
    return { ...this.#limits };
  }

  get closed(): boolean {
    return this.#ended !== null;
  }

  /** The surfaces the sidecar serves now. */
  async list({ signal }: RequestOptions = {}): Promise<SurfaceInfo[]> {
    const reply = await this.#request({ type: 'list' }, signal);
    return reply.type === 'surfaces' ? reply.surfaces : unexpected(reply, 'list');
  }

  /**
   * The surface with this id and/or name (the first one served when neither is given), as soon
   * as the sidecar serves it: at once if it does, else when it appears (a guest's first scanout,
   * its scanout after a reboot). An aborted wait stays on the sidecar until such a surface
   * appears; it allows a few per connection (ERR_SIDECAR_WAIT_CAP).
   */
  async waitForSurface({ surface, name, signal }: RequestOptions & { surface?: number; name?: string } = {}): Promise<SurfaceInfo> {
    const reply = await this.#request({ type: 'wait-surface', ...(surface === undefined ? {} : { surface }), ...(name === undefined ? {} : { name }) }, signal);
    if (reply.type !== 'surfaces' || reply.surfaces.length !== 1) return unexpected(reply, 'wait-surface');
    return reply.surfaces[0]!;
  }

  /**
   * Subscribes to a surface. The iterator yields its buffer ('surface'), then 'damage',
   * 'replaced' and finally 'withdrawn'; a refusal (no such surface, a cap) is thrown by the
   * first next(). Breaking out of the loop, close() or `await using` unsubscribes.
   */
  subscribe(surface: number, { signal }: RequestOptions = {}): SurfaceSubscription {
    const subscription = new SurfaceSubscription(surface, (sub, unsubscribe) => this.#subscriptionClosed(sub, unsubscribe));
    if (this.#ended) {
      subscription.fail(this.#ended);
      return subscription;
    }
    if (this.#subscriptions.has(surface)) {
      subscription.fail(new SidecarError(`already subscribed to surface ${surface} on this connection: use that subscription`, 'ERR_SIDECAR_SUBSCRIPTION'));
      return subscription;
    }
    this.#subscriptions.set(surface, subscription);
    this.#request({ type: 'subscribe', surface }, signal).catch((err: unknown) => subscription.fail(err));
    return subscription;
  }

  /** Asks the sidecar to export a framebuffer in guest memory and serve it; resolves with its surface id. */
  async exportFramebuffer(framebuffer: FramebufferToExport, { name, signal }: RequestOptions & { name?: string } = {}): Promise<number> {
    const reply = await this.#request({ type: 'export-framebuffer', framebuffer: { ...framebuffer, gpa: BigInt(framebuffer.gpa) }, ...(name ? { name } : {}) }, signal);
    return reply.type === 'exported' ? reply.surface : unexpected(reply, 'export-framebuffer');
  }

  /** Withdraws a framebuffer this connection exported. */
  async unexport(surface: number, { signal }: RequestOptions = {}): Promise<void> {
    await this.#request({ type: 'unexport', surface }, signal);
  }

  /** Closes the connection: pending calls reject, subscriptions end, buffers already handed out stay yours. */
  close(): void {
    this.#end(new SidecarConnectionError('the sidecar connection was closed by close()', 'ERR_SIDECAR_CLOSED'), true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#reading;
  }

  #subscriptionClosed(subscription: SurfaceSubscription, unsubscribe: boolean): void {
    if (this.#subscriptions.get(subscription.surface) !== subscription) return;
    this.#subscriptions.delete(subscription.surface);
    if (unsubscribe && !this.#ended) this.#request({ type: 'unsubscribe', surface: subscription.surface }).catch(() => undefined);
  }

  #release(buffer: number): void {
    // Fire and forget: the buffer is closed on our side whatever the answer.
    if (!this.#ended) this.#request({ type: 'release', buffer }).catch(() => undefined);
  }

  #request(body: RequestBody, signal?: AbortSignal): Promise<ServerMessage> {
    if (this.#ended) return Promise.reject(this.#ended);
    if (signal?.aborted) return Promise.reject(new AbortError(`sidecar request ${body.type}`, signal.reason));
    const id = this.#nextId++;
    const frame = encodeFrame(encodeRequest({ ...body, id } as Request));
    return new Promise<ServerMessage>((resolve, reject) => {
      const onAbort = (): void => {
        // The request may already be on its way; its reply will find no one and be dropped.
        this.#pending.delete(id);
        reject(new AbortError(`sidecar request ${body.type}`, signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        resolve: (message) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(message);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
      // A failed send means the sidecar hung up; what it said before (a refusal) is still to be
      // read, so the connection ends when the reader reaches the end, with that reason.
      this.#socket.send(frame).catch((err: unknown) => void this.#reading.then(() => this.#end(new SidecarConnectionError(`sending to the sidecar failed: ${(err as Error).message}`, 'ERR_SIDECAR_CLOSED', { cause: err }), false)));
    });
  }

  async #readLoop(reader: FrameReader): Promise<void> {
    for (;;) {
      let result;
      try {
        result = await reader.read();
      } catch (err) {
        this.#end(err instanceof SidecarError ? new SidecarConnectionError(`the sidecar broke the framing: ${err.message}`, 'ERR_SIDECAR_PROTOCOL', { cause: err }) : new SidecarConnectionError(`the sidecar connection ended: ${(err as Error).message}`, 'ERR_SIDECAR_CLOSED', { cause: err }), false);
        return;
      }
      if (result === null) {
        this.#end(new SidecarConnectionError(`the sidecar at ${this.path} closed the connection`, 'ERR_SIDECAR_CLOSED'), false);
        return;
      }
      if ('bad' in result) {
        this.#end(new SidecarConnectionError(`the sidecar sent a bad frame: ${result.bad.message}`, 'ERR_SIDECAR_PROTOCOL'), false);
        return;
      }
      const { value, fds } = result.frame;
      let message: ServerMessage;
      try {
        message = decodeServerMessage(value);
      } catch (err) {
        closeAll(fds);
        this.#end(new SidecarConnectionError(`the sidecar sent a message this client cannot read: ${(err as Error).message}`, 'ERR_SIDECAR_PROTOCOL', { cause: err }), false);
        return;
      }
      this.#dispatch(message, fds);
    }
  }

  #dispatch(message: ServerMessage, fds: number[]): void {
    const hasFd = message.type === 'surface' || message.type === 'replaced';
    if (fds.length !== (hasFd ? 1 : 0)) {
      closeAll(fds);
      this.#end(new SidecarConnectionError(`the sidecar sent "${message.type}" with ${fds.length} fds`, 'ERR_SIDECAR_PROTOCOL'), false);
      return;
    }
    switch (message.type) {
      case 'surface':
      case 'replaced': {
        const buffer = new SurfaceBuffer(message, fds[0]!, (id) => this.#release(id));
        const subscription = this.#subscriptions.get(message.surface);
        if (subscription && !subscription.ended) subscription.push({ type: message.type, buffer });
        else buffer.close(); // in flight when we unsubscribed: not ours to keep
        return;
      }
      case 'damage':
        this.#subscriptions.get(message.surface)?.push({ type: 'damage', buffer: message.buffer, rects: message.rects });
        return;
      case 'withdrawn':
        this.#subscriptions.get(message.surface)?.push({ type: 'withdrawn', reason: message.reason });
        return;
      case 'error': {
        const error = new SidecarError(message.message, message.code, { field: message.field, causeCode: message.causeCode });
        if (message.id !== undefined) this.#settle(message.id, null, error);
        else if (message.surface !== undefined) this.#subscriptions.get(message.surface)?.noteError(error);
        else this.#unsolicited = error;
        return;
      }
      default:
        this.#settle(message.id, message, null);
    }
  }

  #settle(id: number, message: ServerMessage | null, error: SidecarError | null): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    if (error) pending.reject(error);
    else pending.resolve(message!);
  }

  #end(error: SidecarConnectionError, byUs: boolean): void {
    if (this.#ended) return;
    // A refusal explains the close better than "closed".
    const reason = !byUs && this.#unsolicited ? new SidecarConnectionError(`the sidecar closed the connection: ${this.#unsolicited.message} (${this.#unsolicited.code})`, 'ERR_SIDECAR_CLOSED', { cause: this.#unsolicited }) : error;
    this.#ended = reason;
    this.#socket.close();
    for (const pending of this.#pending.values()) pending.reject(reason);
    this.#pending.clear();
    for (const subscription of [...this.#subscriptions.values()]) {
      if (byUs) subscription.close();
      else subscription.fail(reason);
    }
    this.#subscriptions.clear();
  }
}

function unexpected(reply: ServerMessage, request: string): never {
  throw new SidecarConnectionError(`the sidecar answered ${request} with "${reply.type}"`, 'ERR_SIDECAR_PROTOCOL');
}

function translateAbort(err: unknown, signal: AbortSignal | undefined, deadline: AbortSignal, timeoutMs: number, what: string): unknown {
  if (!(err instanceof GuestDmabufError) || err.code !== 'ABORT_ERR') return err;
  if (deadline.aborted && !signal?.aborted) return new SidecarConnectionError(`${what}: no answer within ${timeoutMs} ms`, 'ERR_SIDECAR_TIMEOUT', { cause: err });
  return err;
}

function closeAll(fds: number[]): void {
  for (const fd of fds) native.close(fd);
}
