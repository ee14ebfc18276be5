// Sidecar framing on a unix stream socket: an 8-byte header {u32 length, u32 fd count}
// (little-endian), then `length` bytes of UTF-8 JSON; fds travel as SCM_RIGHTS on the header's
// bytes. Framing knows nothing of message types: messages.ts gives the JSON its meaning.
//
// Why a length prefix and not newline-delimited JSON (as QMP has): the reader learns the
// frame's size from its first 8 bytes, so an oversized frame is refused before a byte of it is
// buffered, with no scanning for a newline; and the header says how many fds belong to the
// frame, so fds are tied to their message by the header, not guessed from which read they
// came with. Reads go as libvhost-user's do (vhost-user/framing.ts): exactly the header, then
// exactly the payload, so the kernel hands a frame's fds over with its header's read and never
// with a neighbour's bytes.
import { GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { FdsTruncatedError, type UnixSocket } from '../../lib/ipc/unix-socket.js';
import { SidecarError } from './errors.js';

export const FRAME_HEADER_SIZE = 8;
/** Default cap on a frame's JSON: far above any message (a list of 64 surfaces is ~10 KiB). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
/** The most fds one frame may carry: a dma-buf surface has at most 4 planes. */
export const MAX_FDS_PER_FRAME = 4;
/** Default time a peer has to finish a frame once its first byte came (a stalled half frame holds its reader). */
export const DEFAULT_FRAME_TIMEOUT_MS = 5000;

/** A frame as received; its fds are the receiver's to close. */
export interface Frame {
  value: unknown;
  fds: number[];
}

/**
 * A frame whose bytes were read whole but cannot be used (not JSON, or fds it should not have
 * had). Its fds are already closed; the stream is still in step, so the connection can go on.
 */
export interface BadFrame {
  code: 'ERR_SIDECAR_BAD_MESSAGE' | 'ERR_SIDECAR_UNEXPECTED_FDS';
  message: string;
  /** The JSON, when it parsed (so a reply can name the request id). */
  value?: unknown;
}

export type ReadResult = { frame: Frame } | { bad: BadFrame };

export interface FrameReaderOptions {
  /** Largest JSON payload accepted; a header announcing more ends the connection. */
  maxFrameBytes?: number;
  /** Fds a frame may carry: 0 on the sidecar (no request carries any), MAX_FDS_PER_FRAME on a client. */
  maxFds?: number;
  /** Once a frame has started, the rest must come within this; default 5000 ms. */
  frameTimeoutMs?: number;
}

/** One frame's bytes: header and JSON. `fdCount` must be the number of fds sent with it. */
export function encodeFrame(value: unknown, fdCount = 0, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(value));
  if (json.length > maxFrameBytes) {
    throw new GuestDmabufError(`a ${json.length}-byte sidecar message is over the ${maxFrameBytes}-byte frame cap`, 'ERR_OUT_OF_RANGE');
  }
  if (!Number.isInteger(fdCount) || fdCount < 0 || fdCount > MAX_FDS_PER_FRAME) {
    throw new GuestDmabufError(`a sidecar frame carries 0 to ${MAX_FDS_PER_FRAME} fds, not ${fdCount}`, 'ERR_OUT_OF_RANGE');
  }
  const bytes = new Uint8Array(FRAME_HEADER_SIZE + json.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, json.length, true);
  view.setUint32(4, fdCount, true);
  bytes.set(json, FRAME_HEADER_SIZE);
  return bytes;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads frames from a socket. read() resolves with the next frame (or a BadFrame the caller
 * answers), or null when the peer closed between frames. A header announcing more than
 * maxFrameBytes, a close inside a frame or a frame not finished in time throws a SidecarError
 * 'ERR_SIDECAR_FRAMING': the stream is out of step and the connection must be dropped.
 * A ClosedError (the socket closed under the read) passes through.
 */
export class FrameReader {
  readonly #socket: UnixSocket;
  readonly #maxFrameBytes: number;
  readonly #maxFds: number;
  readonly #frameTimeoutMs: number;

  constructor(socket: UnixSocket, { maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, maxFds = 0, frameTimeoutMs = DEFAULT_FRAME_TIMEOUT_MS }: FrameReaderOptions = {}) {
    this.#socket = socket;
    this.#maxFrameBytes = maxFrameBytes;
    this.#maxFds = maxFds;
    this.#frameTimeoutMs = frameTimeoutMs;
  }

  async read(): Promise<ReadResult | null> {
    const received: number[] = [];
    const state = { truncated: false, deadline: undefined as AbortSignal | undefined };
    try {
      const header = await this.#readExactly(FRAME_HEADER_SIZE, received, state, true);
      if (header === null) return null;
      const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_SIZE);
      const length = view.getUint32(0, true);
      const declaredFds = view.getUint32(4, true);
      if (length > this.#maxFrameBytes) {
        throw new SidecarError(`a frame announces ${length} bytes, over the ${this.#maxFrameBytes}-byte cap: the connection is dropped`, 'ERR_SIDECAR_FRAMING');
      }
      const payload = length === 0 ? new Uint8Array(0) : await this.#readExactly(length, received, state, false);
      if (payload === null) throw new SidecarError('unreachable: a payload read never ends at a boundary', 'ERR_SIDECAR_FRAMING');
      let value: unknown;
      let parsed = true;
      try {
        value = JSON.parse(decoder.decode(payload));
      } catch {
        parsed = false;
      }
      if (state.truncated || received.length !== declaredFds || declaredFds > this.#maxFds) {
        closeAll(received);
        const what = state.truncated ? `more than ${MAX_FDS_PER_FRAME} fds` : `${received.length} fds (its header says ${declaredFds})`;
        const allowed = this.#maxFds === 0 ? 'no message to the sidecar carries fds' : `a message carries at most ${this.#maxFds}`;
        return { bad: { code: 'ERR_SIDECAR_UNEXPECTED_FDS', message: `a frame came with ${what}; they were closed: ${allowed}`, ...(parsed ? { value } : {}) } };
      }
      if (!parsed) {
        closeAll(received);
        return { bad: { code: 'ERR_SIDECAR_BAD_MESSAGE', message: `a ${length}-byte frame is not UTF-8 JSON` } };
      }
      return { frame: { value, fds: received } };
    } catch (err) {
      closeAll(received);
      throw err;
    }
  }

  /** Exactly `length` bytes, gathering fds; null on a clean close before the first byte (when `atBoundary`). */
  async #readExactly(length: number, fds: number[], state: { truncated: boolean; deadline: AbortSignal | undefined }, atBoundary: boolean): Promise<Uint8Array | null> {
    const bytes = new Uint8Array(length);
    let have = 0;
    while (have < length) {
      let data: Uint8Array;
      try {
        const message = await this.#socket.receive({ maxBytes: length - have, maxFds: MAX_FDS_PER_FRAME, signal: state.deadline });
        data = message.data;
        fds.push(...message.fds);
        if (data.length === 0 && message.fds.length === 0) {
          if (have === 0 && atBoundary) return null;
          throw new SidecarError(`the peer closed the connection inside a frame (${have} of ${length} bytes read)`, 'ERR_SIDECAR_FRAMING');
        }
      } catch (err) {
        if (err instanceof FdsTruncatedError) {
          // The kernel and receive() closed them all; the bytes still count.
          state.truncated = true;
          data = err.data;
        } else if (state.deadline?.aborted && (err as { code?: string }).code === 'ABORT_ERR') {
          throw new SidecarError(`a frame was not finished within ${this.#frameTimeoutMs} ms of its first byte: the connection is dropped`, 'ERR_SIDECAR_FRAMING', { cause: err });
        } else {
          throw err;
        }
      }
      bytes.set(data, have);
      have += data.length;
      // The clock starts at a frame's first byte: a peer may idle between frames, not inside one.
      if (have > 0 && state.deadline === undefined) state.deadline = AbortSignal.timeout(this.#frameTimeoutMs);
    }
    return bytes;
  }
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      native.close(fd);
    } catch {
      // already gone: nothing to leak
    }
  }
}
