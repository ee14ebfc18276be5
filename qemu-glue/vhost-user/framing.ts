// vhost-user framing on a unix stream socket: a 12-byte header {request, flags, size}, `size`
// bytes of payload, and fds as SCM_RIGHTS on the header's bytes. Read the way libvhost-user
// reads: the header first (with its fds), then exactly the payload, so a stream that carries
// several messages back to back never mixes one message's fds into another.
import { native } from '../../lib/core/native.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { FLAG_VERSION, FLAG_VERSION_MASK, HEADER_SIZE, MAX_PAYLOAD_SIZE, requestName } from './protocol.js';
import { VhostUserError } from './errors.js';

/** One message as received. The fds are the receiver's to close. */
export interface VhostUserMessage {
  request: number;
  flags: number;
  payload: Uint8Array;
  fds: number[];
}

/** How many fds one message may carry: SET_MEM_TABLE's 8 regions. More are closed and refused. */
export const MAX_FDS_PER_VHOST_MESSAGE = 8;

/** The header and payload of a message as one buffer. */
export function encodeMessage(request: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, request, true);
  view.setUint32(4, flags, true);
  view.setUint32(8, payload.length, true);
  bytes.set(payload, HEADER_SIZE);
  return bytes;
}

/**
 * Reads whole messages from a socket. `read()` resolves with the next message, or null when
 * the peer closed the socket between messages; a close inside a message, a bad version or an
 * oversized payload is a VhostUserError ('ERR_VHOST_USER_FRAMING'), after which the stream
 * cannot be trusted and the caller drops the connection.
 */
export class MessageReader {
  readonly #socket: UnixSocket;
  readonly #maxPayload: number;
  readonly #versioned: boolean;

  /**
   * `versioned`: the flags carry vhost-user's version 1 (the main socket). The GPU socket
   * uses the same header without a version (flags 0, or REPLY).
   */
  constructor(socket: UnixSocket, { maxPayload = MAX_PAYLOAD_SIZE, versioned = true }: { maxPayload?: number; versioned?: boolean } = {}) {
    this.#socket = socket;
    this.#maxPayload = maxPayload;
    this.#versioned = versioned;
  }

  async read(): Promise<VhostUserMessage | null> {
    const fds: number[] = [];
    try {
      const header = await this.#readExactly(HEADER_SIZE, fds, true);
      if (header === null) return null;
      const view = new DataView(header.buffer, header.byteOffset, HEADER_SIZE);
      const request = view.getUint32(0, true);
      const flags = view.getUint32(4, true);
      const size = view.getUint32(8, true);
      if (this.#versioned && (flags & FLAG_VERSION_MASK) !== FLAG_VERSION) {
        throw new VhostUserError(`${requestName(request)} has version ${flags & FLAG_VERSION_MASK} in its flags (${flags}); vhost-user is version 1`, 'ERR_VHOST_USER_FRAMING');
      }
      if (size > this.#maxPayload) {
        throw new VhostUserError(`${requestName(request)} announces a ${size}-byte payload, over the ${this.#maxPayload} bytes any request needs`, 'ERR_VHOST_USER_FRAMING');
      }
      const payload = size === 0 ? new Uint8Array(0) : await this.#readExactly(size, fds, false);
      if (payload === null) throw new VhostUserError(`the front end closed the socket inside ${requestName(request)}'s payload`, 'ERR_VHOST_USER_FRAMING');
      if (fds.length > MAX_FDS_PER_VHOST_MESSAGE) {
        throw new VhostUserError(`${requestName(request)} came with ${fds.length} fds; no request carries more than ${MAX_FDS_PER_VHOST_MESSAGE}`, 'ERR_VHOST_USER_FRAMING');
      }
      return { request, flags, payload, fds };
    } catch (err) {
      for (const fd of fds) native.close(fd);
      throw err;
    }
  }

  /** Exactly `length` bytes, gathering fds; null on a clean close before the first byte (when `atBoundary`). */
  async #readExactly(length: number, fds: number[], atBoundary: boolean): Promise<Uint8Array | null> {
    const bytes = new Uint8Array(length);
    let have = 0;
    while (have < length) {
      const { data, fds: received } = await this.#socket.receive({ maxBytes: length - have, maxFds: MAX_FDS_PER_VHOST_MESSAGE });
      fds.push(...received);
      if (data.length === 0 && received.length === 0) {
        if (have === 0 && atBoundary) return null;
        throw new VhostUserError(`the front end closed the socket inside a message (${have} of ${length} bytes read)`, 'ERR_VHOST_USER_FRAMING');
      }
      bytes.set(data, have);
      have += data.length;
    }
    return bytes;
  }
}
