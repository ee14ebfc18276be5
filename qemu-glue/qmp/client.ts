// QmpClient: the semantics of a QMP session on top of framing (framing.ts) and message shapes
// (message.ts). One read loop dispatches every line: replies go to the call with their id
// (so any number of commands may be in flight, and events may arrive between and around
// them), events go to listeners and to event streams. Any failure of the connection itself
// (the peer vanished, sent something that is not QMP, or a line over the cap) rejects every
// pending call with an error naming the call and what happened, ends the event streams and
// closes the socket, so nothing is left open.
import { EventEmitter } from 'node:events';
import { AbortError, GuestDmabufError, InvalidArgumentError } from '../../lib/core/errors.js';
import { integerIn } from '../../lib/core/integers.js';
import type { OwnedFd } from '../../lib/fd/owned-fd.js';
import { FdsTruncatedError, UnixSocket, type PeerCredentials } from '../../lib/ipc/unix-socket.js';
import { QmpBackpressureError, QmpConnectionError, QmpError } from './errors.js';
import { EventStream, type EventsOptions } from './event-stream.js';
import { DEFAULT_MAX_LINE_BYTES, LineDecoder } from './framing.js';
import { WriteQueue } from './write-queue.js';
import { encodeCommand, parseServerMessage, type JsonObject, type JsonValue, type QemuVersionInfo, type QmpEvent, type QmpGreeting, type QmpServerMessage } from './message.js';

/** Where to find QEMU's monitor: a socket path, a connected socket fd to adopt, or a UnixSocket (the client takes ownership). */
export type QmpTarget = string | number | UnixSocket;

export interface QmpConnectOptions {
  /** Give up on connect + greeting + negotiation after this long (code 'ERR_QMP_TIMEOUT'). Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Longest line accepted from the peer (default 64 MiB); longer ones fail the connection. */
  maxLineBytes?: number;
  /** Enable out-of-band execution when the server offers it (default true). */
  oob?: boolean;
  /**
   * Most bytes of commands waiting to be written while the peer is not reading (default
   * 4 MiB); past it execute() rejects with QmpBackpressureError instead of buffering.
   */
  maxQueuedBytes?: number;
}

/** The default cap on unsent command bytes: QMP commands are small, so this is thousands of them. */
export const DEFAULT_MAX_QUEUED_BYTES = 4 << 20;

export interface ExecuteOptions {
  /** Sent with the command's bytes in one message (SCM_RIGHTS): for getfd, add-fd. They stay the caller's. */
  fds?: readonly (number | OwnedFd)[];
  /** Reject with code 'ERR_QMP_TIMEOUT' when no reply came this long; a late reply is dropped. */
  timeoutMs?: number;
  /** Reject with AbortError; a late reply is dropped. The command itself is not withdrawn. */
  signal?: AbortSignal;
  /** Send as `exec-oob` (needs the 'oob' capability, negotiated by connect()). */
  oob?: boolean;
}

/** Arguments of a QMP command: a JSON object. */
export type QmpArguments = { readonly [key: string]: unknown };

interface PendingCall {
  command: string;
  resolve: (value: JsonValue) => void;
  reject: (err: unknown) => void;
}

/** What EventEmitter takes; only the overloads above are public. */
type Listener = Parameters<EventEmitter['on']>[1];

const READ_BYTES = 256 * 1024;
const utf8 = new TextEncoder();

export class QmpClient {
  readonly #socket: UnixSocket;
  readonly #writes: WriteQueue;
  readonly #decoder: LineDecoder;
  readonly #pending = new Map<string, PendingCall>();
  /** Ids of calls that timed out or were aborted: their replies are expected and dropped. */
  readonly #abandoned = new Set<string>();
  readonly #streams = new Set<EventStream>();
  readonly #emitter = new EventEmitter();
  #nextId = 1;
  #greeting: QmpGreeting | undefined;
  #onGreeting: ((greeting: QmpGreeting) => void) | undefined;
  #oobEnabled = false;
  #closedBy: QmpConnectionError | undefined;
  #unexpectedReplies = 0;
  /** The peer process (SO_PEERCRED): QEMU's pid when QEMU listens on the socket. */
  readonly peer: PeerCredentials;

  private constructor(socket: UnixSocket, maxLineBytes: number, maxQueuedBytes: number) {
    this.#socket = socket;
    this.#writes = new WriteQueue(socket, maxQueuedBytes, (err) => this.#fail(this.#transportError('sending to', err)));
    this.#decoder = new LineDecoder(maxLineBytes);
    this.peer = socket.peerCredentials();
    // Listeners for QEMU's event names are expected in numbers; no leak warning for them.
    this.#emitter.setMaxListeners(0);
  }

  /**
   * Connects, reads QEMU's greeting and negotiates capabilities (`qmp_capabilities`, with
   * 'oob' enabled where offered). On failure nothing stays open (a socket given as `target`
   * is closed too).
   */
  static async connect(target: QmpTarget, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const { timeoutMs, signal, maxLineBytes = DEFAULT_MAX_LINE_BYTES, oob = true, maxQueuedBytes = DEFAULT_MAX_QUEUED_BYTES } = options;
    if (timeoutMs !== undefined) integerIn(timeoutMs, 0, 0x7fff_ffff, 'QMP connect timeoutMs');
    integerIn(maxLineBytes, 1, 0x7fff_ffff, 'QMP maxLineBytes');
    integerIn(maxQueuedBytes, 1, 0x7fff_ffff, 'QMP maxQueuedBytes');
    const where = typeof target === 'string' ? target : typeof target === 'number' ? `fd ${target}` : 'the given socket';
    // One signal for every wait of the connect: the caller's abort or our deadline.
    const control = new AbortController();
    const onAbort = (): void => control.abort(new AbortError(`connecting to QMP at ${where}`, signal?.reason));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => control.abort(new QmpConnectionError(`no QMP greeting and negotiation from ${where} within ${timeoutMs} ms: is QEMU running and is this its QMP socket (-qmp or -mon mode=control)?`, 'ERR_QMP_TIMEOUT')), timeoutMs);
    let client: QmpClient | undefined;
    try {
      const socket = typeof target === 'string' ? await UnixSocket.connect(target, { signal: control.signal }) : typeof target === 'number' ? UnixSocket.adopt(target) : target;
      try {
        client = new QmpClient(socket, maxLineBytes, maxQueuedBytes);
      } catch (err) {
        socket.close();
        throw err;
      }
      const greeting = await client.#waitGreeting(control.signal);
      const enable = oob && greeting.capabilities.includes('oob') ? ['oob'] : [];
      try {
        await client.execute('qmp_capabilities', enable.length ? { enable } : undefined, { signal: control.signal });
      } catch (err) {
        if (err instanceof QmpError) throw new QmpConnectionError(`QMP capabilities negotiation with ${where} failed: ${err.message}`, 'ERR_QMP_NEGOTIATION', { cause: err });
        throw err;
      }
      client.#oobEnabled = enable.length > 0;
      return client;
    } catch (err) {
      client?.close();
      if (typeof target !== 'string' && client === undefined && target instanceof UnixSocket) target.close();
      // An aborted wait names the abort; ours carries the real reason (deadline or caller).
      throw control.signal.aborted && err instanceof AbortError ? control.signal.reason : err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** What QEMU said first: its version and the capabilities it offers. */
  get greeting(): QmpGreeting {
    return this.#greeting!;
  }

  get version(): QemuVersionInfo {
    return this.#greeting!.version;
  }

  /** Whether `exec-oob` is available (negotiated at connect). */
  get oobEnabled(): boolean {
    return this.#oobEnabled;
  }

  get closed(): boolean {
    return this.#closedBy !== undefined;
  }

  /** Commands sent and not yet answered. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Bytes of commands not yet written (the peer is slow to read, or not reading). */
  get queuedBytes(): number {
    return this.#writes.queuedBytes;
  }

  /** Replies whose id matched no call (dropped, as the QMP spec says clients should). */
  get unexpectedReplies(): number {
    return this.#unexpectedReplies;
  }

  /**
   * Runs a command and resolves with its `return` value; rejects with QmpError when QEMU
   * answers with an error, with QmpConnectionError when the connection fails first.
   */
  execute<T = JsonValue>(command: string, args?: QmpArguments, options: ExecuteOptions = {}): Promise<T> {
    const { fds = [], timeoutMs, signal, oob = false } = options;
    if (this.#closedBy) return Promise.reject(this.#callError(command, this.#closedBy));
    if (typeof command !== 'string' || command === '') return Promise.reject(new InvalidArgumentError('a QMP command name must be a non-empty string', 'ERR_INVALID_ARG_TYPE'));
    if (timeoutMs !== undefined) integerIn(timeoutMs, 0, 0x7fff_ffff, 'QMP execute timeoutMs');
    if (oob && !this.#oobEnabled) return Promise.reject(new InvalidArgumentError(`cannot run ${command} out of band: the server did not offer the 'oob' capability (or connect() was told oob: false)`));
    if (signal?.aborted) return Promise.reject(new AbortError(`QMP command ${command}`, signal.reason));
    const id = `gd${this.#nextId++}`;
    let line: string;
    try {
      line = encodeCommand(command, args as JsonObject | undefined, id, oob);
    } catch (err) {
      return Promise.reject(new InvalidArgumentError(`the arguments of ${command} cannot be sent as JSON (${(err as Error).message}): use numbers, strings, booleans, null, arrays and objects`));
    }
    const bytes = utf8.encode(line);
    if (!this.#writes.fits(bytes.length)) return Promise.reject(new QmpBackpressureError(command, this.#writes.queuedBytes, this.#writes.maxBytes));
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let ticket: object | undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      /** Gives up on the reply; a command still wholly unsent is withdrawn, so QEMU never runs it. */
      const abandon = (err: (unsent: boolean) => unknown): void => {
        if (!this.#pending.delete(id)) return;
        const unsent = ticket !== undefined && this.#writes.withdraw(ticket);
        if (!unsent) this.#abandoned.add(id); // its reply may still come: drop it then
        cleanup();
        reject(err(unsent));
      };
      const never = (unsent: boolean): string => (unsent ? ' (it was never sent: QEMU had not read the commands before it, so it was withdrawn)' : '');
      const onAbort = (): void => abandon((unsent) => new AbortError(`QMP command ${command}${never(unsent)}`, signal?.reason));
      this.#pending.set(id, {
        command,
        resolve: (value) => {
          cleanup();
          resolve(value as T);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => abandon((unsent) => new QmpConnectionError(`QMP command ${command} got no reply within ${timeoutMs} ms${never(unsent)}`, 'ERR_QMP_TIMEOUT')), timeoutMs);
      }
      try {
        ticket = this.#writes.push(bytes, fds);
      } catch (err) {
        // Duplicating the fds failed (EMFILE, or a closed OwnedFd): nothing was queued.
        this.#pending.delete(id);
        cleanup();
        reject(err);
      }
    });
  }

  /** Runs a human monitor command (`human-monitor-command`) and resolves with its output. */
  async hmp(commandLine: string, options: Omit<ExecuteOptions, 'fds' | 'oob'> = {}): Promise<string> {
    const output = await this.execute('human-monitor-command', { 'command-line': commandLine }, options);
    if (typeof output !== 'string') throw new QmpConnectionError(`human-monitor-command returned ${typeof output}, not a string`, 'ERR_QMP_PROTOCOL');
    return output;
  }

  /**
   * Events as an async iterator, from now on. Bounded: see EventsOptions.maxBuffered. Ends
   * when the connection closes; throws the connection's error when it failed.
   */
  events(options: EventsOptions = {}): EventStream {
    if (options.maxBuffered !== undefined) integerIn(options.maxBuffered, 1, 0x7fff_ffff, 'events maxBuffered');
    const stream = new EventStream(options, () => this.#streams.delete(stream));
    if (this.#closedBy) stream.close(this.#closedBy.code === 'ERR_QMP_CLOSED' ? undefined : this.#closedBy);
    else this.#streams.add(stream);
    return stream;
  }

  /** 'event' for every event, an event's name (e.g. 'SHUTDOWN') for that one, 'close' once closed (with the error when it failed). */
  on(name: 'close', listener: (reason: QmpConnectionError | undefined) => void): this;
  on(name: string, listener: (event: QmpEvent) => void): this;
  on(name: string, listener: Listener): this {
    this.#emitter.on(name, listener);
    return this;
  }

  once(name: 'close', listener: (reason: QmpConnectionError | undefined) => void): this;
  once(name: string, listener: (event: QmpEvent) => void): this;
  once(name: string, listener: Listener): this {
    this.#emitter.once(name, listener);
    return this;
  }

  off(name: 'close', listener: (reason: QmpConnectionError | undefined) => void): this;
  off(name: string, listener: (event: QmpEvent) => void): this;
  off(name: string, listener: Listener): this {
    this.#emitter.off(name, listener);
    return this;
  }

  /** Closes the connection; pending calls reject with 'ERR_QMP_CLOSED'. Idempotent. */
  close(): void {
    this.#shutDown(new QmpConnectionError('the QMP client was closed', 'ERR_QMP_CLOSED'), false);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #waitGreeting(signal: AbortSignal): Promise<QmpGreeting> {
    void this.#readLoop();
    return new Promise<QmpGreeting>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      const onClose = (reason: QmpConnectionError | undefined): void => reject(reason ?? new QmpConnectionError('closed before the greeting', 'ERR_QMP_CLOSED'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#emitter.once('close', onClose);
      this.#onGreeting = (greeting) => {
        signal.removeEventListener('abort', onAbort);
        this.#emitter.off('close', onClose);
        resolve(greeting);
      };
    });
  }

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        let data: Uint8Array;
        try {
          ({ data } = await this.#socket.receive({ maxBytes: READ_BYTES, maxFds: 0 }));
        } catch (err) {
          // QEMU never sends fds; the kernel's copy of any that came is already closed.
          if (!(err instanceof FdsTruncatedError)) throw err;
          data = err.data;
        }
        if (this.#closedBy) return;
        if (data.length === 0) {
          const during = this.#greeting ? '' : ' before its greeting (is this a QMP socket? is another client already connected to it?)';
          this.#fail(new QmpConnectionError(`QEMU (pid ${this.peer.pid}) closed the QMP connection${during}`, 'ERR_QMP_CLOSED'));
          return;
        }
        for (const line of this.#decoder.push(data)) {
          this.#dispatch(parseServerMessage(line));
          if (this.#closedBy) return;
        }
      }
    } catch (err) {
      if (this.#closedBy) return; // close() cancelled the read.
      this.#fail(err instanceof QmpConnectionError ? err : this.#transportError('reading from', err));
    }
  }

  #dispatch(message: QmpServerMessage): void {
    if (message.kind === 'greeting') {
      if (this.#greeting) throw new QmpConnectionError('the QMP peer sent a second greeting', 'ERR_QMP_PROTOCOL');
      this.#greeting = message;
      this.#onGreeting?.(message);
      this.#onGreeting = undefined;
      return;
    }
    if (!this.#greeting) throw new QmpConnectionError(`the QMP peer sent a${message.kind === 'error' ? 'n' : ''} ${message.kind} before its greeting: not a QMP server`, 'ERR_QMP_PROTOCOL');
    if (message.kind === 'event') {
      const event: QmpEvent = { event: message.event, data: message.data, timestampMicros: message.timestampMicros };
      for (const stream of this.#streams) stream.push(event);
      this.#emit('event', event);
      this.#emit(event.event, event);
      return;
    }
    if (message.id === undefined) {
      // We always send an id, so an id-less reply is QEMU failing to parse what we sent.
      const what = message.kind === 'error' ? `${message.class}: ${message.desc}` : 'a return';
      throw new QmpConnectionError(`the QMP server answered without an id (${what}): it could not parse a command, so replies can no longer be matched`, 'ERR_QMP_PROTOCOL');
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const call = id === undefined ? undefined : this.#pending.get(id);
    if (call === undefined) {
      if (id === undefined || !this.#abandoned.delete(id)) this.#unexpectedReplies++;
      return;
    }
    this.#pending.delete(id!);
    if (message.kind === 'return') call.resolve(message.value);
    else call.reject(new QmpError(call.command, message.class, message.desc));
  }

  /** Emits to listeners; a listener that throws does not break the read loop (its error surfaces as uncaught, as in any emitter). */
  #emit(name: string, arg: unknown): void {
    try {
      this.#emitter.emit(name, arg);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** A failed read or write, explained: a reset or broken pipe is the peer gone. */
  #transportError(action: string, err: unknown): QmpConnectionError {
    const code = (err as GuestDmabufError).code;
    if (code === 'ECONNRESET' || code === 'EPIPE') {
      // The peer died with our commands unread: the kernel resets rather than ends the stream.
      return new QmpConnectionError(`QEMU (pid ${this.peer.pid}) closed the QMP connection (${code}: it went away with commands unsent or unread)`, 'ERR_QMP_CLOSED', { cause: err });
    }
    return new QmpConnectionError(`${action} QMP failed: ${(err as Error).message}`, 'ERR_QMP_CLOSED', { cause: err });
  }

  #fail(reason: QmpConnectionError): void {
    this.#shutDown(reason, true);
  }

  #shutDown(reason: QmpConnectionError, failed: boolean): void {
    if (this.#closedBy) return;
    this.#closedBy = reason;
    const calls = [...this.#pending.values()];
    this.#pending.clear();
    this.#abandoned.clear();
    this.#writes.close();
    this.#socket.close();
    for (const call of calls) call.reject(this.#callError(call.command, reason));
    // A clean end (our close, the peer hanging up) ends streams quietly; a broken one with its error.
    const streamError = reason.code === 'ERR_QMP_CLOSED' ? undefined : reason;
    for (const stream of [...this.#streams]) stream.close(streamError);
    this.#emit('close', failed ? reason : undefined);
  }

  /** The connection's failure, as seen by one call. */
  #callError(command: string, reason: QmpConnectionError): QmpConnectionError {
    return new QmpConnectionError(`QMP command ${command} did not complete: ${reason.message}`, reason.code, { cause: reason });
  }
}
