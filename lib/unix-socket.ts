// Unix stream sockets that carry fds (SCM_RIGHTS): how a memfd or dma-buf reaches another
// process. Every call is non-blocking underneath; a full or empty socket buffer becomes a
// wait on the addon's epoll thread, never a blocked event loop.
import { unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { errnoCode, GuestDmabufError } from './errors.js';
import { cancelWaits, waitFor } from './fd-wait.js';
import { native, type PeerCredentials } from './native.js';
import { OwnedFd } from './owned-fd.js';

export type { PeerCredentials };

export interface ReceivedMessage {
  /** Empty with no fds when the peer has closed its end. */
  data: Uint8Array;
  /** Close-on-exec fds the caller now owns and must close. */
  fds: number[];
}

/** The kernel's limit on fds in one message (SCM_MAX_FD). */
export const MAX_FDS_PER_MESSAGE = 253;

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
    super(`a message carried more than ${maxFds} fds, so its fds were closed: receive with a larger maxFds`, 'EFDSTRUNCATED');
    this.data = data;
  }
}

/**
 * Runs async operations one after another, so concurrent sends (or receives) never
 * interleave. When idle it starts the operation at once, so a close() right after the call
 * finds its wait and cancels it, as for any other pending wait.
 */
class Queue {
  #tail: Promise<void> | null = null;
  run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#tail === null ? operation() : this.#tail.then(operation);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tail = tail;
    void tail.then(() => {
      if (this.#tail === tail) this.#tail = null;
    });
    return result;
  }
}

function socketError(action: string, path: string, err: unknown): unknown {
  const code = errnoCode(err);
  const hints: Record<string, string> = {
    ENOENT: 'nothing is listening there: start the server first or check the path',
    ECONNREFUSED: 'the socket file exists but no one accepts on it: the server is gone (a stale socket file?)',
    EADDRINUSE: 'the path already exists: stop the other server, or remove the stale socket file',
    EACCES: 'permission denied on the path or its directory',
  };
  if (code === undefined || hints[code] === undefined) return err;
  return new GuestDmabufError(`cannot ${action} unix socket ${path} (${code}): ${hints[code]}`, code, { cause: err });
}

function checkCount(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new GuestDmabufError(`${what} must be an integer from ${min} to ${max}, got ${value}`, 'EINVAL');
  }
}

// Lets UnixListener wrap accepted fds without a public constructor.
let wrapSocket: (fd: number) => UnixSocket;

export class UnixSocket extends OwnedFd {
  protected readonly kind = 'unix socket';
  readonly #sends = new Queue();
  readonly #receives = new Queue();

  static {
    wrapSocket = (fd) => new UnixSocket(fd);
  }

  private constructor(fd: number) {
    super(fd);
  }

  /** Two connected sockets. Give one to a child process as an inherited fd and adopt() it there. */
  static pair(): [UnixSocket, UnixSocket] {
    const [a, b] = native.socketpair();
    return [new UnixSocket(a), new UnixSocket(b)];
  }

  /** Connects to a listening socket (a path, or an abstract name starting with '\0'). */
  static connect(path: string): UnixSocket {
    try {
      return new UnixSocket(native.unixConnect(path));
    } catch (err) {
      throw socketError('connect to', path, err);
    }
  }

  /**
   * Takes ownership of an existing connected unix stream socket, e.g. fd 3 inherited from a
   * parent. Makes it non-blocking and close-on-exec. On error the caller still owns fd.
   */
  static adopt(fd: number): UnixSocket {
    const { mode } = native.fstat(fd);
    if ((mode & S_IFMT) !== S_IFSOCK) throw new GuestDmabufError(`fd ${fd} is not a socket, so it cannot be adopted as a UnixSocket`, 'ENOTSOCK');
    native.setNonBlocking(fd, true);
    native.setCloseOnExec(fd, true);
    return new UnixSocket(fd);
  }

  /**
   * Sends all of `data`, waiting whenever the socket buffer is full. `fds` travel with the
   * first bytes (at most 253, and they need at least one byte of data); they stay the
   * caller's, and must stay open until the promise settles. Concurrent sends go out in call
   * order, never interleaved. `data` must not change until the promise settles.
   */
  async send(data: Uint8Array, fds: readonly (number | OwnedFd)[] = []): Promise<void> {
    // Resolved now, so a closed OwnedFd fails here rather than sending whatever reuses its number.
    let pending = fds.map((fd) => (typeof fd === 'number' ? fd : fd.fd));
    if (pending.length > MAX_FDS_PER_MESSAGE) {
      throw new GuestDmabufError(`cannot send ${pending.length} fds in one message: the limit is ${MAX_FDS_PER_MESSAGE}, split them over several sends`, 'EINVAL');
    }
    if (pending.length > 0 && data.length === 0) {
      throw new GuestDmabufError('fds need at least one byte of data to travel with: send a non-empty message', 'EINVAL');
    }
    return this.#sends.run(async () => {
      let offset = 0;
      while (offset < data.length) {
        const sent = native.sendmsg(this.fd, data.subarray(offset), pending);
        if (sent === null) {
          await waitFor(this.fd, 'writable');
          continue;
        }
        offset += sent;
        pending = [];
      }
    });
  }

  /**
   * Receives the next bytes (up to `maxBytes`) and the fds that came with them (up to
   * `maxFds`), waiting until some arrive. Empty data with no fds means the peer closed its
   * end. Throws FdsTruncatedError (after closing them) when more fds came than `maxFds`.
   */
  async receive(maxBytes = 65536, maxFds = 16): Promise<ReceivedMessage> {
    checkCount(maxBytes, 1, 0x7fff_ffff, 'receive maxBytes');
    checkCount(maxFds, 0, MAX_FDS_PER_MESSAGE, 'receive maxFds');
    return this.#receives.run(async () => {
      const buffer = new Uint8Array(maxBytes);
      for (;;) {
        const message = native.recvmsg(this.fd, buffer, maxFds);
        if (message === null) {
          await waitFor(this.fd, 'readable');
          continue;
        }
        const data = message.bytes === buffer.length ? buffer : buffer.slice(0, message.bytes);
        if (message.fdsTruncated) {
          for (const fd of message.fds) native.close(fd);
          throw new FdsTruncatedError(maxFds, data);
        }
        return { data, fds: message.fds };
      }
    });
  }

  /** The peer process (pid, uid, gid) as of connect() or pair(). */
  peerCredentials(): PeerCredentials {
    return native.peerCred(this.fd);
  }

  /** Closes the socket; pending sends and receives reject with code 'ECANCELED'. */
  override close(): void {
    if (!this.closed) cancelWaits(this.fd);
    super.close();
  }
}

export class UnixListener extends OwnedFd {
  protected readonly kind = 'unix listener';
  /** The path as given to listen(). */
  readonly path: string;
  /** Where close() unlinks: resolved at listen() so a later chdir does not matter; null for abstract names. */
  readonly #socketFile: string | null;

  private constructor(fd: number, path: string) {
    super(fd);
    this.path = path;
    this.#socketFile = path.startsWith('\0') ? null : resolve(path);
  }

  /**
   * Creates the socket file at `path` (or an abstract name starting with '\0') and listens.
   * Fails with 'EADDRINUSE' when the path exists; close() removes the file.
   */
  static listen(path: string, backlog = 16): UnixListener {
    try {
      return new UnixListener(native.unixListen(path, backlog), path);
    } catch (err) {
      throw socketError('listen on', path, err);
    }
  }

  /** Waits for and returns the next connection. Rejects with code 'ECANCELED' on close(). */
  async accept(): Promise<UnixSocket> {
    for (;;) {
      const fd = native.accept(this.fd);
      if (fd !== null) return wrapSocket(fd);
      await waitFor(this.fd, 'readable');
    }
  }

  /** Stops listening and removes the socket file; pending accepts reject with 'ECANCELED'. */
  override close(): void {
    if (this.closed) return;
    cancelWaits(this.fd);
    super.close();
    if (this.#socketFile === null) return;
    try {
      unlinkSync(this.#socketFile);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
