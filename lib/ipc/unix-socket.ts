// Unix stream sockets that carry fds (SCM_RIGHTS): how a memfd or dma-buf reaches another
// process. Every call is non-blocking underneath; a full or empty socket buffer becomes a
// wait polled on the event loop by the addon, never a blocked event loop.
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortError, GuestDmabufError, InvalidArgumentError } from '../core/errors.js';
import { integerIn } from '../core/integers.js';
import { native } from '../core/native.js';
import { OwnedFd, type WaitOptions } from '../fd/owned-fd.js';
import { SerialQueue } from './serial-queue.js';
import { socketError } from './socket-errors.js';

/** SO_PEERCRED: the peer process as of connect() or socketpair(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface ReceivedMessage {
  /** Empty with no fds when the peer has closed its end. */
  data: Uint8Array;
  /** Close-on-exec fds the caller now owns and must close. */
  fds: number[];
}

/** The kernel's limit on fds in one message (SCM_MAX_FD), as the addon defines it. */
export const MAX_FDS_PER_MESSAGE: number = native.SCM_MAX_FD;

export interface ConnectOptions extends WaitOptions {
  /** Give up (code 'ETIMEDOUT') when the listener's backlog stays full this long. Default: no limit. */
  timeoutMs?: number;
}

export interface ReceiveOptions extends WaitOptions {
  /** Most bytes to receive (default 65536). */
  maxBytes?: number;
  /** Most fds to accept with them (default 16, at most MAX_FDS_PER_MESSAGE). */
  maxFds?: number;
}

export interface SendOptions extends WaitOptions {}

// Retry delays while a listener's backlog is full: short at first (the server is usually
// about to accept), capped so a long wait costs little.
const CONNECT_FIRST_RETRY_MS = 1;
const CONNECT_MAX_RETRY_MS = 50;

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;

/**
 * A message carried more fds than receive() had room for. The kernel dropped the extra ones
 * and receive() closed the rest, so nothing leaks; the message's bytes are in `data`.
 */
export class FdsTruncatedError extends GuestDmabufError {
  override name = 'FdsTruncatedError';
  readonly data: Uint8Array;
  constructor(maxFds: number, data: Uint8Array) {
    super(`a message carried more than ${maxFds} fds, so its fds were closed: receive with a larger maxFds`, 'ERR_FDS_TRUNCATED');
    this.data = data;
  }
}

export class UnixSocket extends OwnedFd {
  protected readonly kind = 'unix socket';
  readonly #sends = new SerialQueue();
  readonly #receives = new SerialQueue();

  /** @internal Takes ownership of a connected socket fd; use pair(), connect(), adopt() or UnixListener.accept(). */
  constructor(fd: number) {
    super(fd);
  }

  /** Two connected sockets. Give one to a child process as an inherited fd and adopt() it there. */
  static pair(): [UnixSocket, UnixSocket] {
    const [a, b] = native.socketpair();
    return [new UnixSocket(a), new UnixSocket(b)];
  }

  /**
   * Connects to a listening socket (a path, or an abstract name starting with '\0') without
   * blocking the event loop. While the listener's backlog is full (the kernel refuses a
   * non-blocking unix connect with EAGAIN) it retries with a short backoff until connected,
   * until `signal` aborts (AbortError) or until `timeoutMs` passes (code 'ETIMEDOUT').
   */
  static async connect(path: string, { signal, timeoutMs }: ConnectOptions = {}): Promise<UnixSocket> {
    if (timeoutMs !== undefined) integerIn(timeoutMs, 0, 0x7fff_ffff, 'connect timeoutMs');
    const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    const aborted = (): AbortError => new AbortError(`connecting to unix socket ${path}`, signal?.reason);
    for (let delay = CONNECT_FIRST_RETRY_MS; ; delay = Math.min(delay * 2, CONNECT_MAX_RETRY_MS)) {
      if (signal?.aborted) throw aborted();
      let fd: number | null;
      try {
        fd = native.unixConnect(path);
      } catch (err) {
        throw socketError('connect to', path, err);
      }
      if (fd !== null) return new UnixSocket(fd);
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new GuestDmabufError(`cannot connect to unix socket ${path} (ETIMEDOUT): its listener's backlog stayed full for ${timeoutMs} ms; the server is not accepting`, 'ETIMEDOUT');
      }
      try {
        await sleep(Math.min(delay, left), undefined, { signal });
      } catch {
        throw aborted();
      }
    }
  }

  /**
   * Takes ownership of an existing connected unix stream socket, e.g. fd 3 inherited from a
   * parent, and makes it close-on-exec. Its file status flags are left alone (the description
   * may be shared with the parent; every call here is non-blocking without O_NONBLOCK). On
   * error the caller still owns fd.
   */
  static adopt(fd: number): UnixSocket {
    const { mode } = native.fstat(fd);
    if ((mode & S_IFMT) !== S_IFSOCK) throw new GuestDmabufError(`fd ${fd} is not a socket, so it cannot be adopted as a UnixSocket`, 'ERR_NOT_A_SOCKET');
    native.setCloseOnExec(fd, true);
    return new UnixSocket(fd);
  }

  /**
   * Sends all of `data`, waiting whenever the socket buffer is full. `fds` travel with the
   * first bytes (at most MAX_FDS_PER_MESSAGE, and they need at least one byte of data). They
   * are duplicated now, so what is sent is what they are at the call, whatever the caller
   * closes meanwhile; they stay the caller's. Concurrent sends go out in call order, never
   * interleaved. `data` must not change until the promise settles. An aborted send rejects
   * with AbortError and may have sent part of `data`.
   */
  async send(data: Uint8Array, fds: readonly (number | OwnedFd)[] = [], { signal }: SendOptions = {}): Promise<void> {
    // Resolved now, so a closed OwnedFd fails here rather than sending whatever reuses its number.
    const numbers = fds.map((fd) => (typeof fd === 'number' ? fd : fd.fd));
    if (numbers.length > MAX_FDS_PER_MESSAGE) {
      throw new InvalidArgumentError(`cannot send ${numbers.length} fds in one message: the limit is ${MAX_FDS_PER_MESSAGE}, split them over several sends`, 'ERR_OUT_OF_RANGE');
    }
    if (numbers.length > 0 && data.length === 0) {
      throw new InvalidArgumentError('fds need at least one byte of data to travel with: send a non-empty message');
    }
    const held = holdAll(numbers);
    try {
      await this.#sends.run(
        async () => {
          let pending = held;
          let offset = 0;
          while (offset < data.length) {
            const sent = native.sendmsg(this.fd, data.subarray(offset), pending);
            if (sent === null) {
              await this.waitWritable(signal);
              continue;
            }
            offset += sent;
            pending = [];
          }
        },
        signal,
        'sending on the unix socket',
      );
    } finally {
      for (const fd of held) native.close(fd);
    }
  }

  /**
   * Receives the next bytes (up to `maxBytes`) and the fds that came with them (up to
   * `maxFds`), waiting until some arrive. Empty data with no fds means the peer closed its
   * end. Throws FdsTruncatedError (after closing them) when more fds came than `maxFds`;
   * rejects with ClosedError when the socket is closed meanwhile, with AbortError when
   * `signal` aborts. `receive(maxBytes, maxFds)` is the older positional form.
   */
  async receive(options: ReceiveOptions | number = {}, positionalMaxFds?: number): Promise<ReceivedMessage> {
    const { maxBytes = 65536, maxFds = positionalMaxFds ?? 16, signal } = typeof options === 'number' ? { maxBytes: options } : options;
    integerIn(maxBytes, 1, 0x7fff_ffff, 'receive maxBytes');
    integerIn(maxFds, 0, MAX_FDS_PER_MESSAGE, 'receive maxFds');
    return this.#receives.run(
      async () => {
        const buffer = new Uint8Array(maxBytes);
        for (;;) {
          const message = native.recvmsg(this.fd, buffer, maxFds);
          if (message === null) {
            await this.waitReadable(signal);
            continue;
          }
          const data = message.bytes === buffer.length ? buffer : buffer.slice(0, message.bytes);
          if (message.fdsTruncated) {
            for (const fd of message.fds) native.close(fd);
            throw new FdsTruncatedError(maxFds, data);
          }
          return { data, fds: message.fds };
        }
      },
      signal,
      'receiving on the unix socket',
    );
  }

  /** The peer process (pid, uid, gid) as of connect() or pair(). */
  peerCredentials(): PeerCredentials {
    return native.peerCred(this.fd);
  }

}

/** Our own dups of `fds`, all or none (a failed dup closes the ones made). */
function holdAll(fds: readonly number[]): number[] {
  const held: number[] = [];
  try {
    for (const fd of fds) held.push(native.dup(fd));
  } catch (err) {
    for (const fd of held) native.close(fd);
    throw err;
  }
  return held;
}
