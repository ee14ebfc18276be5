// The vhost-user back end: serves one front end (QEMU) on a connected socket and applies its
// requests to a device. Generic: framing is framing.ts, payloads are messages.ts, guest RAM is
// memory-map.ts, queues are split-virtqueue.ts; the device (device.ts) knows nothing of this.
//
// QEMU waits for each reply on the main socket, so every request is handled to the end before
// the next is read, and nothing here waits on anything but the socket.
import { ClosedError, GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { EventFd } from '../../lib/fd/eventfd.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import type { VhostUserDevice, DeviceQueue } from './device.js';
import { VhostUserError, VirtqueueError } from './errors.js';
import { encodeMessage, MessageReader, type VhostUserMessage } from './framing.js';
import { VhostMemoryMap } from './memory-map.js';
import * as M from './messages.js';
import { Feature, FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, MAX_MEM_SLOTS, ProtocolFeature, Request, requestName } from './protocol.js';
import { MAX_QUEUE_SIZE } from './split-virtqueue.js';
import { SplitVirtqueue } from './split-virtqueue.js';
import { Vring } from './vring.js';

/** Protocol features this back end implements. CONFIG is what QEMU's vhost-user-gpu requires. */
export const SUPPORTED_PROTOCOL_FEATURES = ProtocolFeature.CONFIG | ProtocolFeature.REPLY_ACK | ProtocolFeature.RESET_DEVICE;

export interface BackendOptions {
  /** Something went wrong that did not end the connection (a refused request, a broken queue). */
  onWarning?: (error: GuestDmabufError) => void;
  /** Every request as it arrives (for logs and traces). */
  onRequest?: (request: number, flags: number, size: number, fds: number) => void;
}

/** Requests that always answer with a payload of their own (not REPLY_ACK's u64). */
const ANSWERING = new Set<number>([
  Request.GET_FEATURES,
  Request.GET_PROTOCOL_FEATURES,
  Request.GET_QUEUE_NUM,
  Request.GET_VRING_BASE,
  Request.GET_CONFIG,
  Request.GET_MAX_MEM_SLOTS,
]);

export class VhostUserBackend implements AsyncDisposable {
  readonly #socket: UnixSocket;
  readonly #device: VhostUserDevice;
  readonly #reader: MessageReader;
  readonly #vrings: Vring[];
  readonly #onWarning: (error: GuestDmabufError) => void;
  readonly #onRequest: BackendOptions['onRequest'];
  #offeredFeatures: bigint;
  #ackedFeatures = 0n;
  #protocolFeatures = 0n;
  #owned = false;
  #memory: VhostMemoryMap | null = null;
  #closed = false;
  /** Per queue: is processQueue running, and was it kicked meanwhile. */
  readonly #running: boolean[];
  readonly #again: boolean[];
  readonly #served: Promise<void>;
  #requests = 0;

  /** Serves `socket` (owned from now on) for `device` until the front end disconnects or close(). */
  constructor(socket: UnixSocket, device: VhostUserDevice, options: BackendOptions = {}) {
    this.#socket = socket;
    this.#device = device;
    this.#reader = new MessageReader(socket);
    this.#onWarning = options.onWarning ?? (() => undefined);
    this.#onRequest = options.onRequest;
    this.#vrings = Array.from({ length: device.queueCount }, (_, i) => new Vring(i));
    this.#running = this.#vrings.map(() => false);
    this.#again = this.#vrings.map(() => false);
    this.#offeredFeatures = device.features | Feature.VERSION_1 | Feature.RING_INDIRECT_DESC | Feature.RING_EVENT_IDX | Feature.PROTOCOL_FEATURES;
    this.#served = this.#serve();
  }

  /** Resolves when the connection ended (front end gone, a framing error, or close()); rejects never. */
  get served(): Promise<void> {
    return this.#served;
  }

  /** Requests handled so far. */
  get requestCount(): number {
    return this.#requests;
  }

  get ackedFeatures(): bigint {
    return this.#ackedFeatures;
  }

  get memory(): VhostMemoryMap | null {
    return this.#memory;
  }

  async #serve(): Promise<void> {
    try {
      for (;;) {
        const message = await this.#reader.read();
        if (message === null) break;
        this.#requests++;
        this.#onRequest?.(message.request, message.flags, message.payload.length, message.fds.length);
        await this.#dispatch(message);
      }
    } catch (err) {
      if (!(err instanceof ClosedError) || !this.#closed) this.#onWarning(asError(err));
    } finally {
      this.#teardown();
    }
  }

  async #dispatch(message: VhostUserMessage): Promise<void> {
    const { request, flags, payload, fds } = message;
    const needAck = (flags & FLAG_NEED_REPLY) !== 0 && (this.#protocolFeatures & ProtocolFeature.REPLY_ACK) !== 0n && !ANSWERING.has(request);
    let reply: Uint8Array | undefined;
    let failed = false;
    try {
      // #handle splices out the fds it keeps; whatever is left here is closed below.
      reply = this.#handle(request, payload, fds);
    } catch (err) {
      failed = true;
      const error = asError(err);
      // A request that must answer with a payload and cannot leaves QEMU waiting or
      // misreading: end the connection, as libvhost-user does.
      if (ANSWERING.has(request) && !(request === Request.GET_CONFIG)) throw error;
      this.#onWarning(error);
      if (request === Request.GET_CONFIG) reply = new Uint8Array(0); // QEMU refuses a short config reply
    } finally {
      for (const fd of fds) native.close(fd);
    }
    if (needAck) reply = M.encodeU64(failed ? 1n : 0n);
    if (reply !== undefined) await this.#socket.send(encodeMessage(request, FLAG_VERSION | FLAG_REPLY, reply));
  }

  /** Applies one request; takes the fds it keeps out of `fds` (the caller closes the rest). */
  #handle(request: number, payload: Uint8Array, fds: number[]): Uint8Array | undefined {
    const noFds = (): void => {
      if (fds.length) {
        for (const fd of fds.splice(0)) native.close(fd);
        throw new VhostUserError(`${requestName(request)} came with fds it does not take`, 'ERR_VHOST_USER_MESSAGE');
      }
    };
    if (request !== Request.SET_MEM_TABLE && request !== Request.SET_VRING_KICK && request !== Request.SET_VRING_CALL && request !== Request.SET_VRING_ERR && request !== Request.GPU_SET_SOCKET && !isDeviceRequest(request)) noFds();
    switch (request) {
      case Request.GET_FEATURES:
        return M.encodeU64(this.#offeredFeatures);
      case Request.SET_FEATURES: {
        // QEMU 10.0 acks bits the back end never offered (bit 40, RING_RESET, which it
        // handles itself): keep only what we offered, as libvhost-user ignores the rest.
        const features = M.decodeU64(request, payload) & this.#offeredFeatures;
        this.#ackedFeatures = features;
        this.#device.setFeatures(features);
        return undefined;
      }
      case Request.GET_PROTOCOL_FEATURES:
        return M.encodeU64(SUPPORTED_PROTOCOL_FEATURES);
      case Request.SET_PROTOCOL_FEATURES: {
        const features = M.decodeU64(request, payload);
        const unknown = features & ~SUPPORTED_PROTOCOL_FEATURES;
        if (unknown) throw new VhostUserError(`SET_PROTOCOL_FEATURES acks bits 0x${unknown.toString(16)} that were not offered`, 'ERR_VHOST_USER_STATE');
        this.#protocolFeatures = features;
        return undefined;
      }
      case Request.SET_OWNER:
        this.#owned = true;
        return undefined;
      case Request.RESET_OWNER:
      case Request.RESET_DEVICE:
        this.#reset();
        return undefined;
      case Request.SET_MEM_TABLE:
        this.#setMemory(new VhostMemoryMap(M.decodeMemoryTable(request, payload), fds.splice(0)));
        return undefined;
      case Request.GET_QUEUE_NUM:
        return M.encodeU64(BigInt(this.#device.queueCount));
      case Request.GET_MAX_MEM_SLOTS:
        return M.encodeU64(BigInt(MAX_MEM_SLOTS));
      case Request.SET_VRING_NUM: {
        const { index, num } = M.decodeVringState(request, payload);
        const vring = this.#vring(request, index);
        const max = Math.min(this.#device.maxQueueSize, MAX_QUEUE_SIZE);
        if (num === 0 || num > max || (num & (num - 1)) !== 0) throw new VhostUserError(`SET_VRING_NUM ${num} for queue ${index}: a split ring holds a power of two up to ${max}`, 'ERR_VHOST_USER_MESSAGE');
        vring.size = num;
        return undefined;
      }
      case Request.SET_VRING_ADDR: {
        const a = M.decodeVringAddress(request, payload);
        const vring = this.#vring(request, a.index);
        vring.addresses = { desc: a.descUserAddr, avail: a.availUserAddr, used: a.usedUserAddr };
        return undefined;
      }
      case Request.SET_VRING_BASE: {
        const { index, num } = M.decodeVringState(request, payload);
        if (num > 0xffff) throw new VhostUserError(`SET_VRING_BASE ${num} for queue ${index} is past a 16-bit ring index`, 'ERR_VHOST_USER_MESSAGE');
        this.#vring(request, index).base = num;
        return undefined;
      }
      case Request.GET_VRING_BASE: {
        const { index } = M.decodeVringState(request, payload);
        const vring = this.#vring(request, index);
        return M.encodeVringState({ index, num: vring.stop() });
      }
      case Request.SET_VRING_KICK:
      case Request.SET_VRING_CALL:
      case Request.SET_VRING_ERR: {
        const { index, noFd } = M.decodeVringFdRequest(request, payload);
        const vring = this.#vring(request, index);
        if (noFd !== (fds.length === 0) || fds.length > 1) throw new VhostUserError(`${requestName(request)} for queue ${index} says ${noFd ? 'no fd' : 'one fd'} but came with ${fds.length}`, 'ERR_VHOST_USER_MESSAGE');
        const eventfd = noFd ? null : EventFd.adopt(fds.splice(0)[0]!);
        if (request === Request.SET_VRING_CALL) vring.setCall(eventfd);
        else if (request === Request.SET_VRING_ERR) vring.setErr(eventfd);
        else {
          // A kick starts the ring; without PROTOCOL_FEATURES it is enabled at once too.
          if (!eventfd) throw new VhostUserError(`SET_VRING_KICK for queue ${index} without an fd: polling rings are not supported`, 'ERR_VHOST_USER_MESSAGE');
          vring.stop();
          vring.setKick(eventfd);
          if ((this.#ackedFeatures & Feature.PROTOCOL_FEATURES) === 0n) vring.enabled = true;
          this.#start(vring);
        }
        return undefined;
      }
      case Request.SET_VRING_ENABLE: {
        const { index, num } = M.decodeVringState(request, payload);
        const vring = this.#vring(request, index);
        vring.enabled = num !== 0;
        if (vring.enabled) this.#schedule(vring);
        return undefined;
      }
      case Request.GET_CONFIG: {
        const access = M.decodeConfig(request, payload);
        const data = this.#device.readConfig(access.offset, access.size);
        return M.encodeConfig({ ...access, data });
      }
      case Request.SET_CONFIG: {
        const access = M.decodeConfig(request, payload);
        this.#device.writeConfig(access.offset, access.data);
        return undefined;
      }
      default:
        return this.#device.handleDeviceRequest(request, payload, fds.splice(0));
    }
  }

  #vring(request: number, index: number): Vring {
    const vring = this.#vrings[index];
    if (!vring) throw new VhostUserError(`${requestName(request)} names queue ${index}; the device has ${this.#vrings.length}`, 'ERR_VHOST_USER_STATE');
    return vring;
  }

  #setMemory(memory: VhostMemoryMap): void {
    const old = this.#memory;
    this.#memory = memory;
    for (const vring of this.#vrings) {
      try {
        vring.queue?.remap(memory);
      } catch (err) {
        vring.queue = null;
        this.#warnQueue(vring, asError(err));
      }
    }
    this.#device.setMemory(memory);
    old?.[Symbol.dispose]();
  }

  /** Makes the queue (needs size, addresses, memory) and watches its kick fd. */
  #start(vring: Vring): void {
    if (!vring.size || !vring.addresses || !this.#memory) {
      throw new VhostUserError(`SET_VRING_KICK for queue ${vring.index} before its ${!vring.size ? 'SET_VRING_NUM' : !vring.addresses ? 'SET_VRING_ADDR' : 'SET_MEM_TABLE'}`, 'ERR_VHOST_USER_STATE');
    }
    vring.queue = new SplitVirtqueue(vring.index, vring.size, vring.addresses, vring.base, this.#memory, {
      eventIdx: (this.#ackedFeatures & Feature.RING_EVENT_IDX) !== 0n,
      indirect: (this.#ackedFeatures & Feature.RING_INDIRECT_DESC) !== 0n,
    });
    void this.#watchKicks(vring, vring.kick!, vring.generation);
    this.#schedule(vring);
  }

  async #watchKicks(vring: Vring, kick: EventFd, generation: number): Promise<void> {
    try {
      while (vring.generation === generation && !this.#closed) {
        await kick.wait();
        this.#schedule(vring);
      }
    } catch {
      // The kick fd was closed: the ring stopped or was given a new kick fd.
    }
  }

  /** Runs the device on a queue that may have work; one run per queue at a time. */
  #schedule(vring: Vring): void {
    if (!vring.queue || !vring.enabled || this.#closed) return;
    const i = vring.index;
    if (this.#running[i]) {
      this.#again[i] = true;
      return;
    }
    this.#running[i] = true;
    void (async () => {
      try {
        do {
          this.#again[i] = false;
          const queue = vring.queue;
          if (!queue || !vring.enabled || queue.broken) break;
          try {
            await this.#device.processQueue(this.#deviceQueue(vring, queue));
          } catch (err) {
            this.#warnQueue(vring, asError(err));
          }
        } while (this.#again[i]);
      } finally {
        this.#running[i] = false;
      }
    })();
  }

  #deviceQueue(vring: Vring, queue: SplitVirtqueue): DeviceQueue {
    const current = (): SplitVirtqueue | null => (vring.queue === queue ? queue : null);
    return {
      index: vring.index,
      pop: () => current()?.pop() ?? null,
      push: (head, written) => current()?.push(head, written),
      notify: () => {
        if (current()?.shouldNotify()) vring.call?.signal();
      },
      get live() {
        return current() !== null;
      },
    };
  }

  #warnQueue(vring: Vring, error: GuestDmabufError): void {
    if (error instanceof VirtqueueError) vring.err?.signal();
    this.#onWarning(error);
  }

  #reset(): void {
    for (const vring of this.#vrings) vring.reset();
    this.#ackedFeatures = 0n;
    this.#device.reset();
    this.#device.setMemory(null);
    this.#memory?.[Symbol.dispose]();
    this.#memory = null;
  }

  #teardown(): void {
    this.#closed = true;
    this.#reset();
    for (const vring of this.#vrings) vring[Symbol.dispose]();
    this.#owned = false;
    this.#socket.close();
  }

  /** Whether SET_OWNER was received on this connection. */
  get owned(): boolean {
    return this.#owned;
  }

  /** Ends the connection and frees everything it held. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#socket.close();
    await this.#served;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Requests past the generic ones belong to the device and may carry fds. */
function isDeviceRequest(request: number): boolean {
  return !Object.values(Request).includes(request as never) || request === Request.GPU_SET_SOCKET;
}

function asError(err: unknown): GuestDmabufError {
  return err instanceof GuestDmabufError ? err : new GuestDmabufError(String((err as Error)?.message ?? err), 'ERR_INTERNAL', { cause: err });
}
