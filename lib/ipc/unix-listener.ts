// A listening unix socket: accepts connections as UnixSockets and removes its socket file on close.
import { lstatSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { errnoCode } from '../core/errors.js';
import { native } from '../core/native.js';
import { OwnedFd, type WaitOptions } from '../fd/owned-fd.js';
import { socketError } from './socket-errors.js';
import { UnixSocket } from './unix-socket.js';

export class UnixListener extends OwnedFd {
  protected readonly kind = 'unix listener';
  /** The path as given to listen(). */
  readonly path: string;
  /**
   * Where close() unlinks, resolved at listen() so a later chdir does not matter, and which
   * file it was then (device and inode), so that close() never removes a socket file another
   * server has since created at the same path. null for abstract names.
   */
  readonly #socketFile: { path: string; dev: bigint; ino: bigint } | null;

  private constructor(fd: number, path: string) {
    super(fd);
    this.path = path;
    if (path.startsWith('\0')) {
      this.#socketFile = null;
    } else {
      const file = resolve(path);
      const { dev, ino } = lstatSync(file, { bigint: true });
      this.#socketFile = { path: file, dev, ino };
    }
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

  /**
   * Waits for and returns the next connection. Rejects with ClosedError on close(), with
   * AbortError when `signal` aborts.
   */
  async accept({ signal }: WaitOptions = {}): Promise<UnixSocket> {
    for (;;) {
      const fd = native.accept(this.fd);
      if (fd !== null) return new UnixSocket(fd);
      await this.waitReadable(signal);
    }
  }

  /**
   * Stops listening and removes the socket file if the path still is this listener's socket;
   * pending accepts reject with ClosedError.
   */
  override close(): void {
    if (this.closed) return;
    super.close();
    const file = this.#socketFile;
    if (file === null) return;
    try {
      const now = lstatSync(file.path, { bigint: true });
      if (now.dev === file.dev && now.ino === file.ino) unlinkSync(file.path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
