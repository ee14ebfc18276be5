// One client connection: the socket, the object map, request batching and the read loop.
// Requests are encoded at once (bad arguments throw in the caller) and flushed together at
// the end of the current job, fds riding with the bytes of their own batch. A fatal error
// (wl_display.error, a broken stream, the compositor leaving) closes everything and rejects
// every pending wait with that one error.
import { join } from 'node:path';
import { AbortError, ClosedError, GuestDmabufError, InvalidArgumentError } from '../../core/errors.js';
import { native } from '../../core/native.js';
import { FdsTruncatedError, UnixSocket } from '../../ipc/unix-socket.js';
import { encodeMessage } from '../wire/encode.js';
import { WaylandWireError } from '../wire/errors.js';
import { MessageReader, type MessageHeader } from '../wire/message-reader.js';
import { MAX_FDS_PER_SEND, MAX_MESSAGE_SIZE, type UntypedNewId, type WireValue } from '../wire/signature.js';
import { WlDisplay } from '../protocol/wayland.js';
import { WaylandDisconnectedError, WaylandProtocolError } from './errors.js';
import { enumEntryName, type InterfaceTable } from './interface-table.js';
import { ObjectIds, SERVER_ID_START } from './object-ids.js';
import { proxyClassFor, WaylandObject, type ProxyClass, type RequestValue } from './proxy.js';

export interface WaylandConnectOptions {
  signal?: AbortSignal;
}

interface Outgoing {
  bytes: Uint8Array;
  /** Our own dups, closed once sent (or dropped). */
  fds: number[];
}

/** The socket path for display `name`: absolute as given, else under $XDG_RUNTIME_DIR. */
export function displayPath(name: string | undefined = process.env.WAYLAND_DISPLAY ?? 'wayland-0'): string {
  if (name.startsWith('/')) return name;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (!runtime) throw new GuestDmabufError(`cannot find Wayland display ${name}: XDG_RUNTIME_DIR is not set; set it, or pass an absolute socket path`, 'ERR_WAYLAND_NO_DISPLAY');
  return join(runtime, name);
}

export class WaylandConnection implements Disposable {
  readonly display: WlDisplay;
  readonly #socket: UnixSocket;
  readonly #reader = new MessageReader();
  readonly #ids = new ObjectIds();
  /** Live objects, and destroyed ones awaiting delete_id (zombies: their late events are dropped, fds closed). */
  readonly #objects = new Map<number, WaylandObject>();
  readonly #pending = new Set<(err: Error) => void>();
  #outgoing: Outgoing[] = [];
  #flushScheduled = false;
  #error: Error | undefined;
  readonly #closeListeners = new Set<(err: Error) => void>();

  /** Connects to display `name` (default $WAYLAND_DISPLAY under $XDG_RUNTIME_DIR). */
  static async connect(name?: string, { signal }: WaylandConnectOptions = {}): Promise<WaylandConnection> {
    const path = displayPath(name);
    return new WaylandConnection(await UnixSocket.connect(path, { signal }));
  }

  /** Speaks Wayland over an already connected socket, which it now owns. */
  constructor(socket: UnixSocket) {
    this.#socket = socket;
    this.display = new WlDisplay(this, 1, 1);
    this.#objects.set(1, this.display);
    this.display.on('error', (object, code, message) => this.#protocolError(object, code, message));
    this.display.on('delete_id', (id) => this.#deleteId(id));
    void this.#readLoop();
  }

  /** The error that ended the connection, once it has ended. */
  get error(): Error | undefined {
    return this.#error;
  }

  get closed(): boolean {
    return this.#error !== undefined;
  }

  /** Objects in the map, zombies included (for tests and leak checks). */
  get objectCount(): number {
    return this.#objects.size;
  }

  /** Calls `listener` once with the error that ends the connection. Returns a remover. */
  onClose(listener: (err: Error) => void): () => void {
    if (this.#error) {
      listener(this.#error);
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** The object with `id`, if live. */
  object(id: number): WaylandObject | undefined {
    const o = this.#objects.get(id);
    return o && !o.destroyed ? o : undefined;
  }

  /** @internal A new client object of `proxyClass`, registered under a fresh id. */
  createObject<P extends WaylandObject>(proxyClass: ProxyClass<P>, version: number): P {
    this.#throwIfClosed();
    const id = this.#ids.allocate();
    const created = new proxyClass(this, id, version);
    this.#objects.set(id, created);
    return created;
  }

  /** @internal Encodes request `opcode` of `sender`; `created` fills its new_id argument. */
  request(sender: WaylandObject, opcode: number, values: RequestValue[], created: WaylandObject | null): void {
    this.#throwIfClosed();
    const table = sender.interface;
    const message = table.requests[opcode];
    const what = `${table.name}.${message?.name ?? `#${opcode}`}`;
    if (!message) throw new InvalidArgumentError(`${what}: no such request`);
    if (sender.destroyed) throw new ClosedError(`${sender}`, `was destroyed, so ${what} cannot be sent`);
    if (message.since > sender.version) throw new InvalidArgumentError(`${what} needs version ${message.since}, but ${sender} is version ${sender.version}`);
    const wire: WireValue[] = message.args.map((arg, i) => {
      const v = values[i];
      if (arg.type === 'new_id') {
        if (!created) throw new InvalidArgumentError(`${what}: no object for its new_id`);
        return arg.interface === undefined ? ({ interface: created.interface.name, version: created.version, id: created.id } satisfies UntypedNewId) : created.id;
      }
      if (v instanceof WaylandObject) {
        if (v.connection !== this) throw new InvalidArgumentError(`${what}: ${v} belongs to another connection`);
        if (v.destroyed) throw new InvalidArgumentError(`${what}: ${v} was destroyed`);
        if (arg.interface !== undefined && v.interface.name !== arg.interface) throw new InvalidArgumentError(`${what}: argument ${arg.name} must be a ${arg.interface}, not ${v}`);
        return v.id;
      }
      return v === undefined ? null : v;
    });
    const encoded = encodeMessage(sender.id, opcode, message.args, wire, what);
    // Our own dups: the caller may close its fds as soon as this returns.
    const fds: number[] = [];
    try {
      for (const fd of encoded.fds) fds.push(native.dup(fd));
    } catch (err) {
      for (const fd of fds) native.close(fd);
      throw err;
    }
    this.#outgoing.push({ bytes: encoded.bytes, fds });
    if (message.destructor) this.#destroy(sender);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => void this.#flush());
    }
  }

  /** Resolves once the compositor has handled every request sent before (wl_display.sync). */
  async roundtrip({ signal }: WaylandConnectOptions = {}): Promise<void> {
    const callback = this.display.sync();
    await this.wait<void>('a wl_display.sync round trip', signal, (resolve) => callback.on('done', () => resolve()));
  }

  /**
   * A wait tied to this connection: `start` gets resolve/reject and may return a cleanup.
   * It rejects with the connection's fatal error if the connection ends first, and with
   * AbortError when `signal` aborts.
   */
  wait<T>(what: string, signal: AbortSignal | undefined, start: (resolve: (v: T) => void, reject: (err: Error) => void) => (() => void) | void): Promise<T> {
    if (this.#error) return Promise.reject(this.#error);
    if (signal?.aborted) return Promise.reject(new AbortError(what, signal.reason));
    return new Promise<T>((resolve, reject) => {
      let cleanup: (() => void) | void;
      const finish = (): void => {
        this.#pending.delete(fail);
        signal?.removeEventListener('abort', onAbort);
        cleanup?.();
      };
      const fail = (err: Error): void => {
        finish();
        reject(err);
      };
      const onAbort = (): void => fail(new AbortError(what, signal?.reason));
      this.#pending.add(fail);
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        cleanup = start((v) => {
          finish();
          resolve(v);
        }, fail);
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  /** Closes the connection; pending waits reject with ClosedError. Idempotent. */
  close(): void {
    this.#fail(new ClosedError('the Wayland connection', 'was closed'));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #throwIfClosed(): void {
    if (this.#error) throw this.#error;
  }

  #destroy(object: WaylandObject): void {
    object.markDestroyed();
    // Server-created ids get no delete_id: forget them now. Client ids stay as zombies.
    if (object.id >= SERVER_ID_START) this.#objects.delete(object.id);
  }

  #deleteId(id: number): void {
    const object = this.#objects.get(id);
    if (object && !object.destroyed) {
      // The compositor destroyed it on its side (e.g. a resource it freed): forget it here too.
      object.markDestroyed();
    }
    this.#objects.delete(id);
    this.#ids.release(id);
  }

  #protocolError(object: WaylandObject | null, code: number, message: string): void {
    const table: InterfaceTable | undefined = object?.interface;
    const name = table ? enumEntryName(table, 'error', code) : undefined;
    this.#fail(new WaylandProtocolError(object?.id ?? 0, table?.name ?? 'unknown', code, name, message));
  }

  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    const batch = this.#outgoing;
    this.#outgoing = [];
    // Chunks with at most MAX_FDS_PER_SEND fds each: the compositor takes no more per read.
    const chunks: Outgoing[] = [];
    let current: Outgoing = { bytes: new Uint8Array(0), fds: [] };
    let parts: Uint8Array[] = [];
    const close = (): void => {
      if (parts.length === 0) return;
      current.bytes = Buffer.concat(parts);
      chunks.push(current);
      current = { bytes: new Uint8Array(0), fds: [] };
      parts = [];
    };
    for (const message of batch) {
      if (current.fds.length + message.fds.length > MAX_FDS_PER_SEND) close();
      parts.push(message.bytes);
      current.fds.push(...message.fds);
    }
    close();
    for (const chunk of chunks) {
      try {
        if (this.#error) continue;
        await this.#socket.send(chunk.bytes, chunk.fds);
      } catch (err) {
        this.#fail(this.#error ?? new WaylandDisconnectedError(`cannot send to the compositor: ${(err as Error).message}`, { cause: err }));
      } finally {
        for (const fd of chunk.fds) native.close(fd);
      }
    }
  }

  async #readLoop(): Promise<void> {
    while (!this.#error) {
      let received;
      try {
        received = await this.#socket.receive({ maxBytes: MAX_MESSAGE_SIZE * 4, maxFds: MAX_FDS_PER_SEND });
      } catch (err) {
        if (this.#error) return;
        if (err instanceof FdsTruncatedError) {
          this.#fail(new WaylandWireError(`the compositor sent more than ${MAX_FDS_PER_SEND} fds in one message`, 'ERR_WAYLAND_FDS'));
        } else {
          this.#fail(new WaylandDisconnectedError(`cannot read from the compositor: ${(err as Error).message}`, { cause: err }));
        }
        return;
      }
      if (received.data.length === 0 && received.fds.length === 0) {
        this.#fail(new WaylandDisconnectedError('the compositor closed the connection'));
        return;
      }
      try {
        this.#reader.push(received.data, received.fds);
        for (let header = this.#reader.peek(); header && !this.#error; header = this.#reader.peek()) this.#dispatch(header);
      } catch (err) {
        this.#fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
  }

  #dispatch(header: MessageHeader): void {
    const target = this.#objects.get(header.objectId);
    if (!target) {
      // Not even a zombie: we cannot know how many fds it carries, so the stream is lost.
      throw new WaylandWireError(`the compositor sent an event (opcode ${header.opcode}) to object ${header.objectId}, which does not exist`);
    }
    const table = target.interface;
    const event = table.events[header.opcode];
    if (!event) throw new WaylandWireError(`the compositor sent event opcode ${header.opcode} to ${target}, which has ${table.events.length} events`);
    const what = `${table.name}.${event.name}`;
    if (target.destroyed) {
      this.#reader.skip(header, event.args.filter((a) => a.type === 'fd').length);
      return;
    }
    const raw = this.#reader.decode(header, event.args, what);
    const args = event.args.map((arg, i) => {
      const v = raw[i]!;
      if (arg.type === 'object') {
        const o = this.#objects.get(v as number);
        return o && !o.destroyed ? o : null;
      }
      if (arg.type === 'new_id' && arg.interface !== undefined) return this.#serverObject(v as number, arg.interface, target.version, what);
      return v;
    });
    if (event.destructor) this.#destroy(target);
    const handled = target.dispatch(event.name, args);
    if (!handled) {
      // Nobody took them: received fds are ours to close.
      event.args.forEach((arg, i) => {
        if (arg.type === 'fd') native.close(raw[i] as number);
      });
    }
  }

  #serverObject(id: number, interfaceName: string, version: number, what: string): WaylandObject {
    if (id < SERVER_ID_START) throw new WaylandWireError(`${what}: the compositor created object ${id}, which is not in the server's id range`);
    if (this.#objects.has(id)) throw new WaylandWireError(`${what}: the compositor created object ${id}, which already exists`);
    const proxyClass = proxyClassFor(interfaceName) ?? WaylandObject;
    const created = new proxyClass(this, id, version);
    this.#objects.set(id, created);
    return created;
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    for (const message of this.#outgoing.splice(0)) for (const fd of message.fds) native.close(fd);
    this.#reader.close();
    this.#socket.close();
    for (const reject of [...this.#pending]) reject(err);
    for (const listener of [...this.#closeListeners]) listener(err);
    this.#closeListeners.clear();
  }
}
