// A listening unix socket: accepts connections as UnixSockets and removes its socket file on close.
import { unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { errnoCode } from '../core/errors.js';
import { native } from '../core/native.js';
import { cancelWaits, waitFor } from '../fd/readiness.js';
import { OwnedFd } from '../fd/owned-fd.js';
import { socketError } from './socket-errors.js';
import { UnixSocket } from './unix-socket.js';

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
      if (fd !== null) return new UnixSocket(fd);
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
