// What the sidecar sends one peer, in order, one frame at a time, with a bound. A peer that
// stops reading fills its socket buffer; its frames then wait here, and past `maxQueuedBytes`
// or `maxQueuedFrames`, or when one send has waited `sendTimeoutMs`, the peer is given up
// (onStall) rather than letting it hold memory and fds, or the sidecar, hostage. Sends wait
// on the addon's poller, so a stuck peer never blocks another.
//
// Each frame's fds are dups the queue owns: the source may close its surface the moment after
// an event, and what the peer gets must still be that buffer. They are closed once the frame
// is sent (UnixSocket.send has passed its own dups to the kernel) or dropped.
import { native } from '../../lib/core/native.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { socketFailure } from './errors.js';

export interface OutboundOptions {
  maxQueuedBytes: number;
  maxQueuedFrames: number;
  sendTimeoutMs: number;
  /** Called once when the peer is given up: a full queue, a send that never finished, or a failed send. */
  onStall: (reason: string) => void;
}

interface Queued {
  bytes: Uint8Array;
  fds: number[];
}

export class Outbound {
  readonly #socket: UnixSocket;
  readonly #options: OutboundOptions;
  readonly #queue: Queued[] = [];
  #queuedBytes = 0;
  #pumping: Promise<void> | null = null;
  #stopped = false;

  constructor(socket: UnixSocket, options: OutboundOptions) {
    this.#socket = socket;
    this.#options = options;
  }

  /** Bytes waiting to be sent (the frame being sent included). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Queues a frame with fds this queue now owns. False (and the fds closed) when the peer was given up. */
  push(bytes: Uint8Array, fds: number[] = []): boolean {
    if (this.#stopped) {
      closeAll(fds);
      return false;
    }
    const { maxQueuedBytes, maxQueuedFrames } = this.#options;
    if (this.#queuedBytes + bytes.length > maxQueuedBytes || this.#queue.length + 1 > maxQueuedFrames) {
      closeAll(fds);
      this.#stall(`it stopped reading: ${this.#queue.length} messages (${this.#queuedBytes} bytes) are waiting, over the cap of ${maxQueuedFrames} messages or ${maxQueuedBytes} bytes`);
      return false;
    }
    this.#queue.push({ bytes, fds });
    this.#queuedBytes += bytes.length;
    this.#pumping ??= this.#pump();
    return true;
  }

  /** Resolves once everything queued so far was sent (or the queue stopped). */
  async drained(): Promise<void> {
    while (this.#pumping) await this.#pumping;
  }

  /** Stops sending and closes every queued fd. */
  stop(): void {
    this.#stopped = true;
    for (const frame of this.#queue.splice(0)) closeAll(frame.fds);
    this.#queuedBytes = 0;
  }

  async #pump(): Promise<void> {
    try {
      while (!this.#stopped && this.#queue.length > 0) {
        const frame = this.#queue[0]!;
        const timer = setTimeout(() => this.#stall(`one message waited ${this.#options.sendTimeoutMs} ms to be sent: it stopped reading`), this.#options.sendTimeoutMs);
        try {
          await this.#socket.send(frame.bytes, frame.fds);
        } catch (err) {
          // Closed under us (the peer was dropped) or the peer went away (EPIPE).
          if (!this.#stopped) this.#stall(socketFailure(err, 'sending failed'));
          return;
        } finally {
          clearTimeout(timer);
        }
        if (this.#queue[0] === frame) {
          this.#queue.shift();
          this.#queuedBytes -= frame.bytes.length;
          closeAll(frame.fds);
        }
      }
    } finally {
      this.#pumping = null;
    }
  }

  #stall(reason: string): void {
    if (this.#stopped) return;
    this.stop();
    this.#options.onStall(reason);
  }
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      native.close(fd);
    } catch {
      // closed already
    }
  }
}
