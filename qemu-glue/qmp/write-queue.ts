// The QMP client's outgoing commands, written one whole line at a time. A peer that stops
// reading (QEMU busy with a long command, stopped under a debugger, hung) backs our writes up;
// without a bound every execute() would keep its bytes (and duplicates of its fds) queued
// forever. So the queue holds at most `maxBytes` of unsent commands and refuses more
// (QmpBackpressureError), and a command withdrawn before its first byte was written (its call
// timed out or was aborted) leaves the queue and never reaches QEMU. A line being written is
// never withdrawn: half a line on the wire would corrupt every later command.
import { native } from '../../lib/core/native.js';
import type { OwnedFd } from '../../lib/fd/owned-fd.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';

interface Entry {
  bytes: Uint8Array;
  /** Our duplicates of the caller's fds, closed once sent or withdrawn. */
  fds: number[];
  released: boolean;
}

export class WriteQueue {
  readonly maxBytes: number;
  readonly #socket: UnixSocket;
  readonly #onError: (err: unknown) => void;
  readonly #entries: Entry[] = [];
  #writing: Entry | undefined;
  #queuedBytes = 0;
  #closed = false;

  constructor(socket: UnixSocket, maxBytes: number, onError: (err: unknown) => void) {
    this.#socket = socket;
    this.maxBytes = maxBytes;
    this.#onError = onError;
  }

  /** Bytes of commands not yet fully written (the line being written counts whole). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Whether `bytes` more fit under the cap. One line always fits into an empty queue. */
  fits(bytes: number): boolean {
    return this.#queuedBytes === 0 || this.#queuedBytes + bytes <= this.maxBytes;
  }

  /** Queues a line and its fds (duplicated now: the caller's stay the caller's). Returns a ticket for withdraw(). */
  push(bytes: Uint8Array, fds: readonly (number | OwnedFd)[]): object {
    const dups: number[] = [];
    try {
      for (const fd of fds) dups.push(native.dup(typeof fd === 'number' ? fd : fd.fd));
    } catch (err) {
      for (const fd of dups) native.close(fd);
      throw err;
    }
    const entry: Entry = { bytes, fds: dups, released: false };
    this.#entries.push(entry);
    this.#queuedBytes += bytes.length;
    if (!this.#writing) void this.#drain();
    return entry;
  }

  /** Takes back a line none of which was written; false when it is being (or was) written. */
  withdraw(ticket: object): boolean {
    const index = this.#entries.indexOf(ticket as Entry);
    if (index < 0) return false;
    const [entry] = this.#entries.splice(index, 1);
    this.#release(entry!);
    return true;
  }

  /**
   * Drops what is unsent and closes its fds; the socket's close ends the line being written
   * (its send holds fds of its own), so nothing counts as queued any more.
   */
  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.splice(0)) this.#release(entry);
    if (this.#writing) this.#release(this.#writing);
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#entries.length > 0) {
      const entry = this.#entries.shift()!;
      this.#writing = entry;
      try {
        await this.#socket.send(entry.bytes, entry.fds);
      } catch (err) {
        this.#writing = undefined;
        this.#release(entry);
        if (!this.#closed) this.#onError(err);
        return;
      }
      this.#writing = undefined;
      this.#release(entry);
    }
  }

  #release(entry: Entry): void {
    if (entry.released) return;
    entry.released = true;
    this.#queuedBytes -= entry.bytes.length;
    for (const fd of entry.fds.splice(0)) native.close(fd);
  }
}
