// virtio-gpu 2D as a vhost-user device: decodes and checks each command from the control and
// cursor queues, keeps the guest's resources, and shows scanouts on QEMU's display through
// the GPU socket as dma-bufs: of the guest's own backing pages (zero copy: TRANSFER_TO_HOST_2D
// only checks its rectangle), or of a host copy TRANSFER_TO_HOST_2D fills (copy-on-transfer).
// Knows nothing of the vhost-user socket: see device.ts.
//
// Ordering. The control queue is answered strictly in order, one command at a time, as QEMU's
// own virtio-gpu does (virtio_gpu_process_cmdq stops at a command that is `waiting`, and QEMU 9.1
// suspends the queue that way until a blob's host mapping is gone). So when DETACH_BACKING or
// UNREF waits for an exported buffer to be free, later control commands wait behind it: Linux
// queues UNREF then CREATE/ATTACH over the same pages without waiting for answers, and may
// only reuse the pages once answered, so answering later commands first would buy nothing
// and reordering them could not be checked against the spec. The wait is bounded
// (waitForFreeTimeoutMs); the cursor queue and the vhost-user socket are never blocked by it.
import { GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import type { MemEntry } from '../../lib/guest/surface-layout.js';
import type { DeviceQueue, VhostUserDevice } from '../vhost-user/device.js';
import { VhostUserError } from '../vhost-user/errors.js';
import type { VhostMemoryMap } from '../vhost-user/memory-map.js';
import { MAX_CONFIG_SIZE, Request, requestName } from '../vhost-user/protocol.js';
import type { DescriptorChain } from '../vhost-user/split-virtqueue.js';
import { GpuSocket, GpuSocketTimeoutError } from './gpu-socket.js';
import { HostCopies } from './host-copy.js';
import { ResourceExports, type ReleaseOutcome } from './resource-exports.js';
import { CommandRefused, readBacking, ResourceTable, type GpuLimits, type Resource2D } from './resources.js';
import { udmabufExporter, type ScanoutBuffer, type ScanoutExporter } from './scanout-export.js';
import { describe, gather, inside, milliseconds, okNoData, writeResponse } from './command-io.js';
import * as P from './virtio-gpu-protocol.js';

export const CONTROL_QUEUE = 0;
export const CURSOR_QUEUE = 1;

/**
 * 'zero-copy': a scanout is a dma-buf of the guest's backing pages (the display may see the
 * guest draw; DETACH/UNREF wait for the buffer to be free). 'copy-on-transfer': of a host memfd
 * per resource that each TRANSFER_TO_HOST_2D copies its rectangle into.
 */
export type GpuMode = 'zero-copy' | 'copy-on-transfer';

export interface GpuDeviceOptions {
  /** Default 'zero-copy'. */
  mode?: GpuMode;
  /** How long DETACH_BACKING/UNREF wait for an exported buffer's holders to let go before answering anyway; default 2000 ms. */
  waitForFreeTimeoutMs?: number;
  /** How long a RESOURCE_FLUSH waits for QEMU to ack its DMABUF_UPDATE; default 1000 ms. */
  updateAckTimeoutMs?: number;
  /** Scanouts the device reports (virtio_gpu_config.num_scanouts); default 1. */
  scanouts?: number;
  /** Offer VIRTIO_GPU_F_EDID (answered through QEMU's GET_EDID); default true. */
  edid?: boolean;
  limits?: Partial<GpuLimits>;
  /** Default: udmabuf, zero copy. */
  exporter?: ScanoutExporter;
  /** What GET_DISPLAY_INFO reports when QEMU has not given a GPU socket. */
  defaultMode?: { width: number; height: number };
  /** A command was refused, an export failed, the GPU socket broke: the device keeps serving. */
  onWarning?: (error: GuestDmabufError) => void;
  /** A scanout now shows `buffer` (null: disabled). */
  onScanout?: (scanoutId: number, buffer: ScanoutBuffer | null, resourceId: number) => void;
  /** The guest flushed `rect` of a resource shown on `scanoutId`. */
  onFlush?: (scanoutId: number, rect: P.Rect) => void;
  /** Every control command and the response type it got (for logs and traces). */
  onCommand?: (type: number, response: number) => void;
}

/** Largest request we read: ATTACH_BACKING with the most entries QEMU allows. */
const MAX_REQUEST_SIZE = P.REQUEST_SIZE[P.Command.RESOURCE_ATTACH_BACKING]! + P.MAX_BACKING_ENTRIES * P.MEM_ENTRY_SIZE;

interface Scanout {
  resourceId: number;
  rect: P.Rect;
  /** The resource's export, once QEMU was sent it (owned by ResourceExports, not by the scanout). */
  buffer: ScanoutBuffer | null;
  /** The export failed: not tried again at every flush, only after a new SET_SCANOUT. */
  exportFailed: boolean;
}

export interface GpuStats {
  commands: number;
  /** RESOURCE_FLUSHes of a resource shown on a scanout (one per scanout showing it). */
  flushes: number;
  refused: number;
  /** Buffers exported (a kernel create each, with udmabuf). */
  exports: number;
  /** Scanouts shown with a resource's existing export. */
  exportsReused: number;
  cursorCommands: number;
  /** Bytes TRANSFER_TO_HOST_2D copied (copy-on-transfer; always 0 in zero copy). */
  bytesCopied: number;
  /** DETACH_BACKING/UNREF that waited for their buffers to be free, and got it. */
  waitsForFree: number;
  /** DETACH_BACKING/UNREF answered because the wait for free timed out. */
  waitForFreeTimeouts: number;
  /** DETACH_BACKING/UNREF of an exported resource answered without knowing: the exporter cannot observe releases. */
  releasesUnobserved: number;
  /** RESOURCE_FLUSHes answered because QEMU did not ack their DMABUF_UPDATE in time. */
  updateAckTimeouts: number;
  /** RESOURCE_FLUSHes answered without a DMABUF_UPDATE, while QEMU still owed an ack. */
  updatesSkipped: number;
}

export class VhostUserGpuDevice implements VhostUserDevice {
  readonly queueCount = 2;
  readonly maxQueueSize = 1024;
  readonly features: bigint;
  readonly resources: ResourceTable;
  readonly stats: GpuStats = { commands: 0, flushes: 0, refused: 0, exports: 0, exportsReused: 0, cursorCommands: 0, bytesCopied: 0, waitsForFree: 0, waitForFreeTimeouts: 0, releasesUnobserved: 0, updateAckTimeouts: 0, updatesSkipped: 0 };
  readonly mode: GpuMode;
  /** Copy-on-transfer's host images (empty in zero copy). */
  readonly hostCopies: HostCopies;
  readonly #exports = new ResourceExports();
  readonly #waitForFreeTimeoutMs: number;
  readonly #updateAckTimeoutMs: number | undefined;
  readonly #scanoutCount: number;
  readonly #exporter: ScanoutExporter;
  readonly #options: GpuDeviceOptions;
  readonly #scanouts: (Scanout | null)[];
  #memory: VhostMemoryMap | null = null;
  #gpu: GpuSocket | null = null;
  #gpuReady: Promise<unknown> = Promise.resolve();
  /** Scanouts whose last update QEMU did not ack (or was never sent): updated again once it catches up. */
  readonly #behind = new Set<number>();
  /** The current stall of QEMU's acks was reported (one warning per stall). */
  #ackStallReported = false;
  #unobservableReported = false;
  /** Counts resets: work resumed after a wait must not touch what a reset replaced. */
  #generation = 0;

  constructor(options: GpuDeviceOptions = {}) {
    this.#options = options;
    this.#scanoutCount = options.scanouts ?? 1;
    if (!Number.isInteger(this.#scanoutCount) || this.#scanoutCount < 1 || this.#scanoutCount > P.MAX_SCANOUTS) throw new GuestDmabufError(`scanouts must be 1 to ${P.MAX_SCANOUTS}`, 'ERR_OUT_OF_RANGE');
    this.features = options.edid === false ? 0n : P.VIRTIO_GPU_F_EDID;
    this.mode = options.mode ?? 'zero-copy';
    if (this.mode !== 'zero-copy' && this.mode !== 'copy-on-transfer') throw new GuestDmabufError(`mode must be 'zero-copy' or 'copy-on-transfer', not "${String(this.mode)}"`, 'ERR_INVALID_ARG_VALUE');
    this.#waitForFreeTimeoutMs = milliseconds(options.waitForFreeTimeoutMs ?? 2000, 'waitForFreeTimeoutMs');
    this.#updateAckTimeoutMs = options.updateAckTimeoutMs === undefined ? undefined : milliseconds(options.updateAckTimeoutMs, 'updateAckTimeoutMs');
    this.resources = new ResourceTable(options.limits);
    this.hostCopies = new HostCopies(this.resources.limits.maxHostCopyBytes);
    this.#exporter = options.exporter ?? udmabufExporter();
    this.#scanouts = Array.from({ length: this.#scanoutCount }, () => null);
  }

  /** The buffer scanout `id` shows, or null. */
  scanout(id: number): ScanoutBuffer | null {
    return this.#scanouts[id]?.buffer ?? null;
  }

  // --- VhostUserDevice ---

  readConfig(offset: number, size: number): Uint8Array {
    // virtio_gpu_config: events_read, events_clear, num_scanouts, num_capsets.
    const config = new Uint8Array(MAX_CONFIG_SIZE);
    const v = P.dataView(config);
    v.setUint32(8, this.#scanoutCount, true);
    return config.slice(offset, offset + size);
  }

  writeConfig(): void {
    // events_clear: no events are ever raised (no display hot-plug from this side).
  }

  setFeatures(): void {}

  setMemory(memory: VhostMemoryMap | null): void {
    this.#memory = memory;
    // Host copies do not depend on the table. Exports of guest pages were made through the old
    // one: the next flush exports again from the new table; the old buffers are retired, not
    // closed, so their resources' DETACH/UNREF still wait for them to be free.
    if (this.mode === 'copy-on-transfer') return;
    for (const scanout of this.#scanouts) if (scanout) scanout.buffer = null;
    this.#exports.retireAll();
  }

  handleDeviceRequest(request: number, _payload: Uint8Array, fds: number[]): Uint8Array | undefined {
    if (request !== Request.GPU_SET_SOCKET) {
      for (const fd of fds) native.close(fd);
      throw new VhostUserError(`${requestName(request)} is not a request vhost-user-gpu takes`, 'ERR_VHOST_USER_MESSAGE');
    }
    if (fds.length !== 1) {
      for (const fd of fds) native.close(fd);
      throw new VhostUserError(`GPU_SET_SOCKET came with ${fds.length} fds, not 1`, 'ERR_VHOST_USER_MESSAGE');
    }
    let socket: UnixSocket;
    try {
      socket = UnixSocket.adopt(fds[0]!);
    } catch (err) {
      native.close(fds[0]!);
      throw err;
    }
    this.#gpu?.[Symbol.dispose]();
    const gpu: GpuSocket = new GpuSocket(socket, { updateAckTimeoutMs: this.#updateAckTimeoutMs, onCaughtUp: () => this.#caughtUp(gpu) });
    this.#gpu = gpu;
    this.#behind.clear();
    this.#ackStallReported = false;
    // Never awaited here: QEMU waits on the main socket while we talk on this one.
    this.#gpuReady = gpu.negotiate().catch((err: unknown) => this.#warn(err));
    return undefined;
  }

  reset(): void {
    this.#generation++;
    this.#scanouts.fill(null);
    // Ends any wait for free: the guest that would be answered is gone.
    this.#exports.clear();
    this.hostCopies.clear();
    this.resources.clear();
    this.#behind.clear();
    this.#gpu?.[Symbol.dispose]();
    this.#gpu = null;
    this.#gpuReady = Promise.resolve();
  }

  async processQueue(queue: DeviceQueue): Promise<void> {
    for (let chain = queue.pop(); chain; chain = queue.pop()) {
      if (queue.index === CONTROL_QUEUE) {
        const response = await this.#control(chain);
        // Stopped or reset while the command waited (on QEMU, on a holder): drop the answer.
        if (!queue.live) return;
        queue.push(chain.head, writeResponse(chain, response));
      } else {
        await this.#cursor(chain);
        if (!queue.live) return;
        queue.push(chain.head, 0);
      }
      queue.notify();
    }
  }

  // --- commands ---

  async #control(chain: DescriptorChain): Promise<Uint8Array> {
    this.stats.commands++;
    const request = gather(chain, MAX_REQUEST_SIZE);
    const response = await this.#answer(request);
    this.#options.onCommand?.(request.length >= 4 ? P.dataView(request).getUint32(0, true) : 0, P.dataView(response).getUint32(0, true));
    return response;
  }

  async #answer(request: Uint8Array): Promise<Uint8Array> {
    let header: P.CtrlHeader | null = null;
    try {
      if (request.length < P.CTRL_HEADER_SIZE) throw new CommandRefused(P.Response.ERR_UNSPEC, `a ${request.length}-byte request has no control header`);
      const v = P.dataView(request);
      header = P.decodeHeader(v);
      const need = P.REQUEST_SIZE[header.type];
      if (need === undefined) throw new CommandRefused(P.Response.ERR_UNSPEC, `unknown command 0x${header.type.toString(16)}`);
      if (request.length < need) throw new CommandRefused(P.Response.ERR_UNSPEC, `command 0x${header.type.toString(16)} is ${request.length} bytes, it needs ${need}`);
      return await this.#execute(header, v, request);
    } catch (err) {
      if (!(err instanceof CommandRefused)) throw err;
      this.stats.refused++;
      this.#warn(new GuestDmabufError(`virtio-gpu: ${err.message}`, 'ERR_VIRTIO_GPU_REFUSED'));
      return okNoData(err.response, header);
    }
  }

  async #execute(header: P.CtrlHeader, v: DataView, request: Uint8Array): Promise<Uint8Array> {
    const C = P.Command;
    switch (header.type) {
      case C.GET_DISPLAY_INFO:
        return this.#displayInfo(header);
      case C.GET_EDID:
        return this.#edid(header, v.getUint32(24, true));
      case C.RESOURCE_CREATE_2D:
        this.resources.create(v.getUint32(24, true), v.getUint32(28, true), v.getUint32(32, true), v.getUint32(36, true));
        return okNoData(P.Response.OK_NODATA, header);
      case C.RESOURCE_UNREF: {
        const id = v.getUint32(24, true);
        this.resources.get(id);
        await this.#disableScanoutsOf(id);
        this.resources.unref(id);
        // In copy-on-transfer too: the host copy stays counted against its cap until free.
        const generation = this.#generation;
        await this.#waitForFree(id, 'RESOURCE_UNREF');
        // A reset meanwhile dropped it already; the id may name a new resource by now.
        if (generation === this.#generation) this.hostCopies.drop(id);
        return okNoData(P.Response.OK_NODATA, header);
      }
      case C.SET_SCANOUT:
        await this.#setScanout(v.getUint32(40, true), v.getUint32(44, true), P.decodeRect(v, 24));
        return okNoData(P.Response.OK_NODATA, header);
      case C.RESOURCE_FLUSH:
        await this.#flush(v.getUint32(40, true), P.decodeRect(v, 24));
        return okNoData(P.Response.OK_NODATA, header);
      case C.TRANSFER_TO_HOST_2D:
        this.#transfer(this.resources.get(v.getUint32(48, true)), P.decodeRect(v, 24), v.getBigUint64(40, true));
        return okNoData(P.Response.OK_NODATA, header);
      case C.RESOURCE_ATTACH_BACKING:
        this.#attach(v.getUint32(24, true), v.getUint32(28, true), request);
        return okNoData(P.Response.OK_NODATA, header);
      case C.RESOURCE_DETACH_BACKING: {
        const resource = this.resources.get(v.getUint32(24, true));
        if (!resource.backing) throw new CommandRefused(P.Response.ERR_UNSPEC, `resource ${resource.id} has no backing to detach`);
        this.resources.detach(resource);
        // A host copy is not the guest's memory: it stays shown, as QEMU's host image does.
        if (this.mode === 'zero-copy') {
          await this.#disableScanoutsOf(resource.id);
          await this.#waitForFree(resource.id, 'RESOURCE_DETACH_BACKING');
        }
        return okNoData(P.Response.OK_NODATA, header);
      }
      case C.GET_CAPSET_INFO:
      case C.GET_CAPSET:
        throw new CommandRefused(P.Response.ERR_INVALID_PARAMETER, 'the device has no capsets (2D only)');
      default:
        throw new CommandRefused(P.Response.ERR_UNSPEC, `command 0x${header.type.toString(16)} belongs on the cursor queue`);
    }
  }

  async #displayInfo(header: P.CtrlHeader): Promise<Uint8Array> {
    const response = new Uint8Array(P.DISPLAY_INFO_SIZE);
    const gpu = await this.#readyGpu();
    if (gpu) {
      try {
        response.set(await gpu.getDisplayInfo());
      } catch (err) {
        this.#warn(err);
        throw new CommandRefused(P.Response.ERR_UNSPEC, 'QEMU did not answer GET_DISPLAY_INFO');
      }
    } else {
      const { width, height } = this.#options.defaultMode ?? { width: 1280, height: 800 };
      P.encodeDisplayInfo(response, [{ rect: { x: 0, y: 0, width, height }, enabled: true, flags: 0 }]);
    }
    P.encodeResponseHeader(response, P.Response.OK_DISPLAY_INFO, header);
    return response;
  }

  async #edid(header: P.CtrlHeader, scanoutId: number): Promise<Uint8Array> {
    this.#checkScanoutId(scanoutId);
    if (this.features === 0n) throw new CommandRefused(P.Response.ERR_UNSPEC, 'GET_EDID without the EDID feature');
    const gpu = await this.#readyGpu();
    if (!gpu) throw new CommandRefused(P.Response.ERR_UNSPEC, 'GET_EDID before QEMU gave a GPU socket');
    let response: Uint8Array;
    try {
      response = (await gpu.getEdid(scanoutId)).slice();
    } catch (err) {
      this.#warn(err);
      throw new CommandRefused(P.Response.ERR_UNSPEC, 'QEMU gave no EDID');
    }
    P.encodeResponseHeader(response, P.Response.OK_EDID, header);
    return response;
  }

  #checkScanoutId(id: number): void {
    if (id >= this.#scanoutCount) throw new CommandRefused(P.Response.ERR_INVALID_SCANOUT_ID, `scanout ${id} does not exist (the device has ${this.#scanoutCount})`);
  }

  async #setScanout(scanoutId: number, resourceId: number, rect: P.Rect): Promise<void> {
    this.#checkScanoutId(scanoutId);
    if (resourceId === 0) {
      await this.#disable(scanoutId);
      return;
    }
    const resource = this.resources.get(resourceId);
    // QEMU's checks (virtio_gpu_do_set_scanout): inside the resource, at least 16×16.
    if (rect.width < 16 || rect.height < 16 || !inside(rect, resource)) {
      throw new CommandRefused(P.Response.ERR_INVALID_PARAMETER, `scanout rectangle ${describe(rect)} is not a 16×16-or-larger part of resource ${resourceId} (${resource.width}×${resource.height})`);
    }
    if (this.mode === 'copy-on-transfer') this.hostCopies.ensure(resource);
    this.#scanouts[scanoutId] = { resourceId, rect, buffer: null, exportFailed: false };
    this.#behind.delete(scanoutId);
    await this.#show(scanoutId);
  }

  /** Hands the scanout's resource to QEMU, exported first unless it already is. */
  async #show(scanoutId: number): Promise<void> {
    const scanout = this.#scanouts[scanoutId];
    if (!scanout || scanout.buffer || scanout.exportFailed) return;
    const resource = this.resources.get(scanout.resourceId);
    let buffer = this.#exports.get(resource.id);
    if (buffer) {
      this.stats.exportsReused++;
    } else {
      buffer = this.#export(resource, scanout) ?? undefined;
      if (!buffer) return;
    }
    scanout.buffer = buffer;
    this.#options.onScanout?.(scanoutId, buffer, resource.id);
    const gpu = await this.#readyGpu();
    if (gpu) {
      await gpu
        .dmabufScanout({ scanoutId, rect: scanout.rect, width: buffer.width, height: buffer.height, stride: buffer.stride, fourcc: buffer.fourcc, modifier: buffer.modifier }, buffer.fd)
        .catch((err: unknown) => this.#warn(err));
    }
  }

  /** A new export of the resource, kept in #exports; null when there is nothing to export yet or it failed (reported). */
  #export(resource: Resource2D, scanout: Scanout): ScanoutBuffer | null {
    const copy = this.mode === 'copy-on-transfer' ? this.hostCopies.get(resource.id) : undefined;
    const memory = copy ? copy.memory : this.#memory?.guestMemory;
    const entries = copy ? copy.entries : resource.backing;
    if (!memory || !entries) return null;
    let buffer: ScanoutBuffer;
    try {
      buffer = this.#exporter(memory, { resourceId: resource.id, format: resource.format, width: resource.width, height: resource.height, stride: resource.stride, entries });
    } catch (err) {
      // The guest's command was valid; what we could not do is ours to report, not the guest's.
      scanout.exportFailed = true;
      this.#warn(err);
      return null;
    }
    if (buffer.offset !== 0) {
      // A backing that starts inside a page: the dma-buf holds whole pages, and QEMU's
      // DMABUF_SCANOUT cannot say where the first pixel is. Needs copy-on-transfer.
      buffer[Symbol.dispose]();
      scanout.exportFailed = true;
      this.#warn(new GuestDmabufError(`resource ${resource.id}'s backing starts inside a page: QEMU's DMABUF_SCANOUT has no offset to show it with (copy-on-transfer can)`, 'ERR_NOT_SUPPORTED'));
      return null;
    }
    this.#exports.set(resource.id, buffer);
    this.stats.exports++;
    return buffer;
  }

  async #flush(resourceId: number, rect: P.Rect): Promise<void> {
    const resource = this.resources.get(resourceId);
    if (!inside(rect, resource)) throw new CommandRefused(P.Response.ERR_INVALID_PARAMETER, `flush rectangle ${describe(rect)} is outside resource ${resourceId} (${resource.width}×${resource.height})`);
    for (let id = 0; id < this.#scanouts.length; id++) {
      const scanout = this.#scanouts[id];
      if (scanout?.resourceId !== resourceId) continue;
      await this.#show(id);
      this.stats.flushes++;
      this.#options.onFlush?.(id, rect);
      const gpu = await this.#readyGpu();
      if (gpu && scanout.buffer) await this.#update(gpu, id, rect);
    }
  }

  /**
   * DMABUF_UPDATE, waiting (bounded) for QEMU's ack. While an earlier ack is overdue QEMU is
   * not reading the socket (it blocks while it draws), so the update is not sent at all: the
   * scanout is marked behind and updated whole once QEMU catches up.
   */
  async #update(gpu: GpuSocket, scanoutId: number, rect: P.Rect): Promise<void> {
    if (gpu.overdue) {
      this.stats.updatesSkipped++;
      this.#behind.add(scanoutId);
      return;
    }
    try {
      await gpu.dmabufUpdate(scanoutId, rect);
    } catch (err) {
      if (!(err instanceof GpuSocketTimeoutError)) return this.#warn(err);
      this.stats.updateAckTimeouts++;
      this.#behind.add(scanoutId);
      if (this.#ackStallReported) return;
      this.#ackStallReported = true;
      this.#warn(new GuestDmabufError(`QEMU did not ack DMABUF_UPDATE of scanout ${scanoutId} within ${err.timeoutMs} ms: flushes are answered without it until QEMU catches up (counted in stats.updateAckTimeouts, not reported again)`, 'ERR_VHOST_USER_GPU_TIMEOUT', { cause: err }));
    }
  }

  /** QEMU acked everything it owed: show it the latest of each scanout it missed. */
  #caughtUp(gpu: GpuSocket): void {
    if (gpu !== this.#gpu) return;
    this.#ackStallReported = false;
    const behind = [...this.#behind];
    this.#behind.clear();
    for (const id of behind) {
      const scanout = this.#scanouts[id];
      if (scanout?.buffer) void this.#update(gpu, id, scanout.rect);
    }
  }

  /**
   * After DETACH_BACKING or UNREF: closes the resource's buffers and waits until every holder
   * has let go of them, at most waitForFreeTimeoutMs; the guest is answered after that.
   */
  async #waitForFree(resourceId: number, command: string): Promise<void> {
    const wait = this.#exports.release(resourceId, this.#waitForFreeTimeoutMs);
    if (!wait) return;
    const outcome: ReleaseOutcome = await wait;
    switch (outcome.kind) {
      case 'released':
        this.stats.waitsForFree++;
        break;
      case 'timeout':
        this.stats.waitForFreeTimeouts++;
        this.#warn(new GuestDmabufError(`resource ${resourceId}'s dma-buf was still held ${this.#waitForFreeTimeoutMs} ms after ${command}: answering the guest anyway, and the holder may see the pages reused`, 'ERR_VIRTIO_GPU_WAIT_FOR_FREE_TIMEOUT'));
        break;
      case 'unobservable':
        this.stats.releasesUnobserved++;
        if (outcome.reason && !this.#unobservableReported) {
          this.#unobservableReported = true;
          this.#warn(new GuestDmabufError(`DETACH_BACKING and UNREF are answered without waiting for the buffer's holders: ${outcome.reason.message}`, outcome.reason.code, { cause: outcome.reason }));
        }
        break;
      case 'aborted':
        break;
    }
  }

  /** Checks the transfer; in copy-on-transfer copies its rectangle into the resource's host copy. */
  #transfer(resource: Resource2D, rect: P.Rect, offset: bigint): void {
    this.#checkTransfer(resource, rect, offset);
    if (this.mode !== 'copy-on-transfer') return; // zero copy: the guest is only told when its request is wrong
    const copy = this.hostCopies.ensure(resource);
    const copied = this.#memory ? copy.transfer(this.#memory, resource, rect, Number(offset)) : null;
    if (copied === null) throw new CommandRefused(P.Response.ERR_UNSPEC, `resource ${resource.id}'s backing is no longer guest RAM (the memory table changed)`);
    this.stats.bytesCopied += copied;
  }

  #checkTransfer(resource: Resource2D, rect: P.Rect, offset: bigint): void {
    if (!inside(rect, resource)) throw new CommandRefused(P.Response.ERR_INVALID_PARAMETER, `transfer rectangle ${describe(rect)} is outside resource ${resource.id} (${resource.width}×${resource.height})`);
    if (!resource.backing) throw new CommandRefused(P.Response.ERR_UNSPEC, `resource ${resource.id} has no backing to transfer from`);
    if (rect.width === 0 || rect.height === 0) return;
    // The last byte read: offset + (h − 1) × stride + w × bpp must be inside the backing.
    const end = offset + BigInt((rect.height - 1) * resource.stride + rect.width * resource.bytesPerPixel);
    if (end > BigInt(resource.backingBytes)) throw new CommandRefused(P.Response.ERR_INVALID_PARAMETER, `transfer of ${describe(rect)} from offset ${offset} reads to byte ${end}, past resource ${resource.id}'s ${resource.backingBytes} bytes of backing`);
  }

  #attach(resourceId: number, count: number, request: Uint8Array): void {
    const resource = this.resources.get(resourceId);
    if (count === 0 || count > P.MAX_BACKING_ENTRIES) throw new CommandRefused(P.Response.ERR_UNSPEC, `ATTACH_BACKING with ${count} entries (1 to ${P.MAX_BACKING_ENTRIES})`);
    const start = P.REQUEST_SIZE[P.Command.RESOURCE_ATTACH_BACKING]!;
    if (request.length < start + count * P.MEM_ENTRY_SIZE) throw new CommandRefused(P.Response.ERR_UNSPEC, `ATTACH_BACKING announces ${count} entries but carries ${Math.floor((request.length - start) / P.MEM_ENTRY_SIZE)}`);
    const v = P.dataView(request);
    const entries: MemEntry[] = [];
    for (let i = 0; i < count; i++) {
      const at = start + i * P.MEM_ENTRY_SIZE;
      const addr = v.getBigUint64(at, true);
      if (addr > BigInt(Number.MAX_SAFE_INTEGER)) throw new CommandRefused(P.Response.ERR_UNSPEC, `backing entry ${i} address ${addr} is not guest RAM`);
      entries.push({ addr: Number(addr), length: v.getUint32(at + 8, true) });
    }
    this.resources.attach(resource, entries, this.#memory);
  }

  async #cursor(chain: DescriptorChain): Promise<void> {
    this.stats.cursorCommands++;
    const request = gather(chain, P.REQUEST_SIZE[P.Command.UPDATE_CURSOR]!);
    if (request.length < P.REQUEST_SIZE[P.Command.UPDATE_CURSOR]!) return this.#warn(new GuestDmabufError(`a ${request.length}-byte cursor command is too short`, 'ERR_VIRTIO_GPU_REFUSED'));
    const v = P.dataView(request);
    const type = v.getUint32(0, true);
    const [scanoutId, x, y] = [v.getUint32(24, true), v.getUint32(28, true), v.getUint32(32, true)];
    const [resourceId, hotX, hotY] = [v.getUint32(40, true), v.getUint32(44, true), v.getUint32(48, true)];
    if (scanoutId >= this.#scanoutCount) return this.#warn(new GuestDmabufError(`cursor on scanout ${scanoutId}, which does not exist`, 'ERR_VIRTIO_GPU_REFUSED'));
    const gpu = await this.#readyGpu();
    if (type === P.Command.MOVE_CURSOR) {
      await gpu?.cursorPosition(scanoutId, x, y).catch((err: unknown) => this.#warn(err));
    } else if (type === P.Command.UPDATE_CURSOR) {
      if (resourceId === 0) {
        await gpu?.cursorPosition(scanoutId, x, y, true).catch((err: unknown) => this.#warn(err));
        return;
      }
      const resource = this.resources.has(resourceId) ? this.resources.get(resourceId) : null;
      const size = P.CURSOR_SIZE * P.CURSOR_SIZE * 4;
      const pixels = resource && resource.width === P.CURSOR_SIZE && resource.height === P.CURSOR_SIZE ? this.#cursorPixels(resource, size) : null;
      if (!pixels) return this.#warn(new GuestDmabufError(`cursor resource ${resourceId} is not a 64×64 resource with backing`, 'ERR_VIRTIO_GPU_REFUSED'));
      await gpu?.cursorUpdate(scanoutId, x, y, hotX, hotY, pixels).catch((err: unknown) => this.#warn(err));
    } else {
      this.#warn(new GuestDmabufError(`unknown cursor command 0x${type.toString(16)}`, 'ERR_VIRTIO_GPU_REFUSED'));
    }
  }

  /** What QEMU would read: the host image in copy-on-transfer (what was transferred), else the backing. */
  #cursorPixels(resource: Resource2D, size: number): Uint8Array | null {
    const copy = this.mode === 'copy-on-transfer' ? this.hostCopies.get(resource.id) : undefined;
    if (copy) return copy.bytes.slice(0, size);
    return resource.backing && this.#memory ? readBacking(this.#memory, resource.backing, 0, size) : null;
  }

  async #disableScanoutsOf(resourceId: number): Promise<void> {
    for (let id = 0; id < this.#scanouts.length; id++) {
      if (this.#scanouts[id]?.resourceId === resourceId) await this.#disable(id);
    }
  }

  async #disable(scanoutId: number): Promise<void> {
    const had = this.#scanouts[scanoutId];
    this.#scanouts[scanoutId] = null;
    this.#behind.delete(scanoutId);
    if (!had) return;
    this.#options.onScanout?.(scanoutId, null, 0);
    const gpu = await this.#readyGpu();
    await gpu?.disableScanout(scanoutId).catch((err: unknown) => this.#warn(err));
  }

  async #readyGpu(): Promise<GpuSocket | null> {
    await this.#gpuReady;
    return this.#gpu;
  }

  #warn(err: unknown): void {
    const error = err instanceof GuestDmabufError ? err : new GuestDmabufError(String((err as Error)?.message ?? err), 'ERR_INTERNAL', { cause: err });
    this.#options.onWarning?.(error);
  }
}
