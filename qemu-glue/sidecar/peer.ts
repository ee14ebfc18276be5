// One peer of the sidecar: who it is (SO_PEERCRED), the protocol version it agreed, what it
// subscribed to, which buffers it holds (sent and not yet released) against its caps, the
// surfaces it exported, and its outbound queue. The rules for requests live in server.ts.
import type { PeerCredentials, UnixSocket } from '../../lib/ipc/unix-socket.js';
import type { SidecarErrorCode } from './errors.js';
import { encodeFrame } from './framing.js';
import { encodeServerMessage, fdCountOf, type ServerMessage } from './messages.js';
import { Outbound, type OutboundOptions } from './outbound.js';

export interface PeerCaps {
  maxLiveBuffers: number;
  maxPinnedBytes: bigint;
}

interface Held {
  /** Times this buffer was sent and not released (a re-subscribe sends it again). */
  count: number;
  size: bigint;
}

export class Peer {
  readonly id: number;
  readonly credentials: PeerCredentials;
  readonly socket: UnixSocket;
  readonly out: Outbound;
  /** The agreed protocol version, once hello is done. */
  version: number | null = null;
  client: string | undefined;
  readonly subscriptions = new Set<number>();
  /** Surfaces this peer exported (withdrawn when it leaves). */
  readonly exports = new Set<number>();
  /** Its wait-surface requests not answered yet, by request id. */
  readonly waits = new Map<number, { surface?: number; name?: string }>();
  badMessages = 0;
  readonly #held = new Map<number, Held>();
  #liveBuffers = 0;
  #pinnedBytes = 0n;

  constructor(id: number, socket: UnixSocket, credentials: PeerCredentials, outbound: Omit<OutboundOptions, 'onStall'>, onStall: (peer: Peer, reason: string) => void) {
    this.id = id;
    this.socket = socket;
    this.credentials = credentials;
    this.out = new Outbound(socket, { ...outbound, onStall: (reason) => onStall(this, reason) });
  }

  /** "peer 3 (pid 1234, uid 1000)", for logs. */
  get label(): string {
    return `peer ${this.id} (pid ${this.credentials.pid}, uid ${this.credentials.uid}${this.client ? `, ${this.client}` : ''})`;
  }

  get liveBuffers(): number {
    return this.#liveBuffers;
  }

  get pinnedBytes(): bigint {
    return this.#pinnedBytes;
  }

  /** Why one more buffer of `size` bytes would break a cap, or null when it fits. */
  overCap(size: bigint, caps: PeerCaps): { code: SidecarErrorCode; message: string } | null {
    if (this.#liveBuffers + 1 > caps.maxLiveBuffers) {
      return { code: 'ERR_SIDECAR_BUFFER_CAP', message: `you hold ${this.#liveBuffers} buffers, the cap is ${caps.maxLiveBuffers}: release buffers you no longer show (release, after closing their fds)` };
    }
    if (this.#pinnedBytes + size > caps.maxPinnedBytes) {
      return { code: 'ERR_SIDECAR_PINNED_CAP', message: `you hold ${this.#pinnedBytes} bytes of buffers and this one is ${size}, over the cap of ${caps.maxPinnedBytes} bytes: release buffers you no longer show` };
    }
    return null;
  }

  hold(buffer: number, size: bigint): void {
    const held = this.#held.get(buffer);
    if (held) held.count++;
    else this.#held.set(buffer, { count: 1, size });
    this.#liveBuffers++;
    this.#pinnedBytes += size;
  }

  /** False when the peer holds no such buffer. */
  release(buffer: number): boolean {
    const held = this.#held.get(buffer);
    if (!held) return false;
    if (--held.count === 0) this.#held.delete(buffer);
    this.#liveBuffers--;
    this.#pinnedBytes -= held.size;
    return true;
  }

  /** Queues a message (with its fd, a dup the queue then owns). False when the peer was given up. */
  send(message: ServerMessage, fds: number[] = []): boolean {
    // The header's fd count is the message type's, so a mistake here shows at the peer as an fd count mismatch, never as a wrong fd.
    return this.out.push(encodeFrame(encodeServerMessage(message), fdCountOf(message), Number.MAX_SAFE_INTEGER), fds);
  }
}
