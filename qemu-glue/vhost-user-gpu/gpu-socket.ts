// The GPU socket (QEMU docs/interop/vhost-user-gpu.rst): the socketpair QEMU hands over with
// GPU_SET_SOCKET, on which the back end tells QEMU's display what to show. Same 12-byte header
// as vhost-user without a version: requests carry flags 0, QEMU's replies REPLY (0x4), in order.
//
// Replies carry no sequence number, only the request code, and QEMU answers strictly in order:
// while a DMABUF_UPDATE is being drawn it stops reading the socket (backend_blocked), so nothing
// after it is even read until it is acked. That is what makes timeouts safe here: a request that
// times out keeps its place at the head of the FIFO, abandoned, so its late reply is consumed
// by it and never taken for the reply to a later request.
import { GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { encodeMessage, MessageReader } from '../vhost-user/framing.js';
import { encodeU64 } from '../vhost-user/messages.js';
import { FLAG_REPLY } from '../vhost-user/protocol.js';
import { DISPLAY_INFO_SIZE, EDID_RESPONSE_SIZE, encodeRect, type Rect } from './virtio-gpu-protocol.js';

export const GpuRequest = {
  GET_PROTOCOL_FEATURES: 1,
  SET_PROTOCOL_FEATURES: 2,
  GET_DISPLAY_INFO: 3,
  CURSOR_POS: 4,
  CURSOR_POS_HIDE: 5,
  CURSOR_UPDATE: 6,
  SCANOUT: 7,
  UPDATE: 8,
  DMABUF_SCANOUT: 9,
  DMABUF_UPDATE: 10,
  GET_EDID: 11,
  DMABUF_SCANOUT2: 12,
} as const;

/** GPU protocol features: EDID (QEMU answers GET_EDID), DMABUF2 (DMABUF_SCANOUT2 with a modifier). */
export const GpuProtocolFeature = { EDID: 1n << 0n, DMABUF2: 1n << 1n } as const;
const OUR_FEATURES = GpuProtocolFeature.EDID | GpuProtocolFeature.DMABUF2;

/** What DMABUF_SCANOUT(2) tells QEMU about the buffer. */
export interface DmabufScanout {
  scanoutId: number;
  /** The part of the buffer shown (QEMU ignores x/y: see design §7). */
  rect: Rect;
  width: number;
  height: number;
  stride: number;
  fourcc: number;
  /** Sent with DMABUF_SCANOUT2 when QEMU offers it. */
  modifier: bigint;
}

export class GpuSocketError extends GuestDmabufError {
  override name = 'GpuSocketError';
  constructor(message: string, code: 'ERR_VHOST_USER_GPU_SOCKET' | 'ERR_VHOST_USER_GPU_TIMEOUT' = 'ERR_VHOST_USER_GPU_SOCKET') {
    super(message, code);
  }
}

/** QEMU did not answer in time. The socket stays usable; the late reply, if it comes, is dropped. */
export class GpuSocketTimeoutError extends GpuSocketError {
  override name = 'GpuSocketTimeoutError';
  constructor(readonly request: number, readonly timeoutMs: number) {
    super(`QEMU did not answer GPU request ${request} within ${timeoutMs} ms`, 'ERR_VHOST_USER_GPU_TIMEOUT');
  }
}

export interface GpuSocketOptions {
  /** How long a DMABUF_UPDATE may wait for QEMU's ack; default 1000 ms. */
  updateAckTimeoutMs?: number;
  /** How long any other request may wait for its reply; default 5000 ms. */
  replyTimeoutMs?: number;
  /** Every abandoned request has had its late reply: QEMU reads the socket again. */
  onCaughtUp?: () => void;
}

interface Pending {
  request: number;
  /** Null once the caller stopped waiting (timed out): the reply is then read and dropped. */
  settle: { resolve: (payload: Uint8Array) => void; reject: (error: Error) => void; timer: NodeJS.Timeout } | null;
}

export interface GpuSocketStats {
  /** Requests whose reply did not come in time. */
  timeouts: number;
  /** Replies that came after their request had timed out (dropped, never matched to another). */
  lateReplies: number;
}

export class GpuSocket implements Disposable {
  readonly #socket: UnixSocket;
  readonly #reader: MessageReader;
  readonly #pending: Pending[] = [];
  readonly #updateAckTimeoutMs: number;
  readonly #replyTimeoutMs: number;
  readonly #onCaughtUp: (() => void) | undefined;
  /** Abandoned requests still waiting for their late reply. */
  #overdue = 0;
  #features = 0n;
  #closed: GpuSocketError | null = null;
  readonly stats: GpuSocketStats = { timeouts: 0, lateReplies: 0 };
  /** Settles when the reader stops (QEMU closed the socket, or a bad reply). */
  readonly ended: Promise<void>;

  constructor(socket: UnixSocket, options: GpuSocketOptions = {}) {
    this.#socket = socket;
    this.#updateAckTimeoutMs = timeout(options.updateAckTimeoutMs ?? 1000, 'updateAckTimeoutMs');
    this.#replyTimeoutMs = timeout(options.replyTimeoutMs ?? 5000, 'replyTimeoutMs');
    this.#onCaughtUp = options.onCaughtUp;
    this.#reader = new MessageReader(socket, { versioned: false, maxPayload: EDID_RESPONSE_SIZE });
    this.ended = this.#readReplies();
  }

  /** Asks QEMU's protocol features and acks the ones we use. */
  async negotiate(): Promise<bigint> {
    const reply = await this.#request(GpuRequest.GET_PROTOCOL_FEATURES, new Uint8Array(0), 8);
    this.#features = new DataView(reply.buffer, reply.byteOffset, 8).getBigUint64(0, true) & OUR_FEATURES;
    await this.#send(GpuRequest.SET_PROTOCOL_FEATURES, encodeU64(this.#features));
    return this.#features;
  }

  get features(): bigint {
    return this.#features;
  }

  /** Some request timed out and its reply has not come yet: QEMU is not reading the socket. */
  get overdue(): boolean {
    return this.#overdue > 0;
  }

  /** QEMU's virtio_gpu_resp_display_info (408 bytes, response header included). */
  getDisplayInfo(): Promise<Uint8Array> {
    return this.#request(GpuRequest.GET_DISPLAY_INFO, new Uint8Array(0), DISPLAY_INFO_SIZE);
  }

  /** QEMU's virtio_gpu_resp_edid (1056 bytes); only when QEMU offered EDID. */
  getEdid(scanoutId: number): Promise<Uint8Array> {
    if (!(this.#features & GpuProtocolFeature.EDID)) return Promise.reject(new GpuSocketError('QEMU did not offer the EDID protocol feature: it would never answer GET_EDID'));
    return this.#request(GpuRequest.GET_EDID, u32s(scanoutId), EDID_RESPONSE_SIZE);
  }

  /** Shows a dma-buf on a scanout. `fd` is duplicated for the send and stays the caller's. */
  async dmabufScanout(s: DmabufScanout, fd: number): Promise<void> {
    const withModifier = (this.#features & GpuProtocolFeature.DMABUF2) !== 0n;
    const payload = new Uint8Array(withModifier ? 48 : 40);
    const v = new DataView(payload.buffer);
    v.setUint32(0, s.scanoutId, true);
    encodeRect(v, 4, s.rect);
    v.setUint32(20, s.width, true);
    v.setUint32(24, s.height, true);
    v.setUint32(28, s.stride, true);
    v.setUint32(32, 0, true); // fd_flags: Y_0_TOP unset, top row first
    v.setInt32(36, s.fourcc | 0, true);
    if (withModifier) v.setBigUint64(40, s.modifier, true);
    await this.#send(withModifier ? GpuRequest.DMABUF_SCANOUT2 : GpuRequest.DMABUF_SCANOUT, payload, [fd]);
  }

  /** Turns a scanout off: DMABUF_SCANOUT without an fd and a 0×0 size, as contrib does on disable. */
  async disableScanout(scanoutId: number): Promise<void> {
    const payload = new Uint8Array(40);
    new DataView(payload.buffer).setUint32(0, scanoutId, true);
    await this.#send(GpuRequest.DMABUF_SCANOUT, payload);
  }

  /** Tells QEMU a rectangle changed; resolves when QEMU acks it (after drawing, on a GL display). */
  async dmabufUpdate(scanoutId: number, rect: Rect): Promise<void> {
    const payload = new Uint8Array(20);
    const v = new DataView(payload.buffer);
    v.setUint32(0, scanoutId, true);
    encodeRect(v, 4, rect);
    await this.#request(GpuRequest.DMABUF_UPDATE, payload, 0, this.#updateAckTimeoutMs);
  }

  async cursorPosition(scanoutId: number, x: number, y: number, hide = false): Promise<void> {
    await this.#send(hide ? GpuRequest.CURSOR_POS_HIDE : GpuRequest.CURSOR_POS, u32s(scanoutId, x, y));
  }

  /** A new cursor image: 64×64 pixels (16384 bytes), hot spot, position. */
  async cursorUpdate(scanoutId: number, x: number, y: number, hotX: number, hotY: number, pixels: Uint8Array): Promise<void> {
    const payload = new Uint8Array(20 + 64 * 64 * 4);
    payload.set(u32s(scanoutId, x, y, hotX, hotY));
    payload.set(pixels.subarray(0, 64 * 64 * 4), 20);
    await this.#send(GpuRequest.CURSOR_UPDATE, payload);
  }

  #send(request: number, payload: Uint8Array, fds: number[] = []): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closed);
    return this.#socket.send(encodeMessage(request, 0, payload), fds);
  }

  #request(request: number, payload: Uint8Array, replySize: number, timeoutMs = this.#replyTimeoutMs): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<Uint8Array>((resolve, reject) => {
      const pending: Pending = { request, settle: null };
      const timer = setTimeout(() => {
        // The entry stays in the FIFO: QEMU answers in order, so its reply is still due first.
        if (!pending.settle) return;
        pending.settle = null;
        this.#overdue++;
        this.stats.timeouts++;
        reject(new GpuSocketTimeoutError(request, timeoutMs));
      }, timeoutMs);
      pending.settle = {
        resolve: (reply) => (reply.length === replySize ? resolve(reply) : reject(new GpuSocketError(`QEMU answered GPU request ${request} with ${reply.length} bytes, not ${replySize}`))),
        reject,
        timer,
      };
      this.#pending.push(pending);
      this.#send(request, payload).catch((err: Error) => {
        // Never sent: no reply will come for it.
        const at = this.#pending.indexOf(pending);
        if (at >= 0) this.#pending.splice(at, 1);
        if (pending.settle) {
          clearTimeout(timer);
          pending.settle = null;
          reject(err);
        } else if (this.#overdue > 0) this.#overdue--;
      });
    });
  }

  async #readReplies(): Promise<void> {
    let reason = 'QEMU closed the GPU socket';
    try {
      for (;;) {
        const message = await this.#reader.read();
        if (message === null) break;
        // QEMU sends no fds on this socket; close any, never keep them.
        for (const fd of message.fds) native.close(fd);
        const expected = this.#pending[0];
        if (!(message.flags & FLAG_REPLY) || !expected || expected.request !== message.request) {
          reason = `QEMU sent GPU message ${message.request} (flags ${message.flags}) when ${expected ? `the reply to ${expected.request}` : 'nothing'} was due`;
          break;
        }
        this.#pending.shift();
        if (expected.settle) {
          clearTimeout(expected.settle.timer);
          expected.settle.resolve(message.payload);
        } else {
          this.stats.lateReplies++;
          if (--this.#overdue === 0) this.#onCaughtUp?.();
        }
      }
    } catch (err) {
      reason = `the GPU socket failed: ${(err as Error).message}`;
    }
    this.#fail(reason);
  }

  #fail(reason: string): void {
    this.#closed ??= new GpuSocketError(reason);
    this.#overdue = 0;
    for (const p of this.#pending.splice(0)) {
      if (!p.settle) continue;
      clearTimeout(p.settle.timer);
      p.settle.reject(this.#closed);
    }
  }

  [Symbol.dispose](): void {
    this.#fail('the GPU socket was closed');
    this.#socket.close();
  }
}

function timeout(ms: number, name: string): number {
  if (!Number.isInteger(ms) || ms < 1 || ms > 0x7fff_ffff) throw new GuestDmabufError(`${name} must be a whole number of milliseconds, 1 to 2^31 − 1 (got ${ms})`, 'ERR_OUT_OF_RANGE');
  return ms;
}

function u32s(...values: number[]): Uint8Array {
  const bytes = new Uint8Array(4 * values.length);
  const v = new DataView(bytes.buffer);
  values.forEach((value, i) => v.setUint32(4 * i, value >>> 0, true));
  return bytes;
}
