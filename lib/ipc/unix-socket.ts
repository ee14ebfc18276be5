// Unix stream sockets that carry fds (SCM_RIGHTS): how a memfd or dma-buf reaches another
// process. Every call is non-blocking underneath; a full or empty socket buffer becomes a
// wait on the addon's epoll thread, never a blocked event loop.
import { GuestDmabufError, InvalidArgumentError } from '../core/errors.js';
import { integerIn } from '../core/integers.js';
import { native } from '../core/native.js';
import { cancelWaits, waitFor } from '../fd/readiness.js';
import { OwnedFd } from '../fd/owned-fd.js';
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
    if ((mode & S_IFMT) !== S_IFSOCK) throw new GuestDmabufError(`fd ${fd} is not a socket, so it cannot be adopted as a UnixSocket`, 'ERR_NOT_A_SOCKET');
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
      throw new InvalidArgumentError(`cannot send ${pending.length} fds in one message: the limit is ${MAX_FDS_PER_MESSAGE}, split them over several sends`, 'ERR_OUT_OF_RANGE');
    }
    if (pending.length > 0 && data.length === 0) {
      throw new InvalidArgumentError('fds need at least one byte of data to travel with: send a non-empty message');
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
    integerIn(maxBytes, 1, 0x7fff_ffff, 'receive maxBytes');
    integerIn(maxFds, 0, MAX_FDS_PER_MESSAGE, 'receive maxFds');
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
