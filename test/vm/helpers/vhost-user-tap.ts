// A transparent tap between QEMU and a vhost-user-gpu back-end program (QEMU's contrib one):
// QEMU connects to the tap's socket, the tap connects to the back end's, and every message goes
// through unchanged both ways, fds included, except one: GPU_SET_SOCKET, whose socket (QEMU's
// display end) the tap keeps, handing the back end one end of its own pair instead and relaying
// the GPU protocol between the two. So the test sees what QEMU's display is sent (DMABUF_SCANOUT
// with its dma-buf, DMABUF_UPDATE) while QEMU, the guest and the back end run as they would.
// QEMU with -display none closes every scanout dma-buf at once; the tap keeps a dup of the last.
import { native } from '../../../lib/core/native.js';
import { UnixListener } from '../../../lib/ipc/unix-listener.js';
import { UnixSocket } from '../../../lib/ipc/unix-socket.js';
import { DmaBuf } from '../../../lib/kernel/dma-buf.js';
import { encodeMessage, MessageReader } from '../../../qemu-glue/vhost-user/framing.js';
import { Request } from '../../../qemu-glue/vhost-user/protocol.js';
import { GpuRequest } from '../../../qemu-glue/vhost-user-gpu/gpu-socket.js';

/** A whole-screen VHOST_USER_GPU_UPDATE (the memory fallback's pixels) fits. */
const MAX_GPU_PAYLOAD = 64 << 20;

interface Received {
  request: number;
  flags: number;
  payload: Uint8Array;
  fds: number[];
}

/** The fds to send on, and what to do once sent (close what is no longer needed). */
interface Forward {
  fds: readonly number[];
  sent: () => void;
}

/** The message's own fds, closed here once sent (the peer has its copies). */
const forwardAsIs = (message: Received): Forward => ({ fds: message.fds, sent: () => message.fds.forEach((fd) => native.close(fd)) });

export interface TappedScanout {
  scanoutId: number;
  width: number;
  height: number;
  stride: number;
  fourcc: number;
  /** The tap's own dup of the dma-buf the back end sent (closed when replaced or at close()). */
  dmabuf: DmaBuf;
}

/** A DMABUF_UPDATE: the rectangle of a scanout the back end flushed. */
export interface TappedUpdate {
  scanoutId: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export class VhostUserGpuTap {
  /** The last DMABUF_SCANOUT(2) per scanout. */
  readonly scanouts = new Map<number, TappedScanout>();
  /** Every GPU-socket request the back end sent, by number, in order. */
  readonly gpuRequests: number[] = [];
  /** DMABUF_UPDATEs the back end sent (its flushes that reached QEMU's display). */
  updates = 0;
  #waiters = new Set<() => void>();
  readonly #listener: UnixListener;
  readonly #sockets: UnixSocket[] = [];
  readonly #relays: Promise<void>[] = [];

  readonly #onUpdate: ((update: TappedUpdate) => void) | undefined;

  private constructor(listener: UnixListener, onUpdate?: (update: TappedUpdate) => void) {
    this.#listener = listener;
    this.#onUpdate = onUpdate;
  }

  /**
   * Listens on `path` for QEMU; at its connection, connects to the back end at `backendPath`.
   * `onUpdate` runs at each DMABUF_UPDATE before it goes on to QEMU: the back end waits for
   * QEMU's ack, so the scanout's pixels hold still while it runs (a display's copy is whole).
   */
  static listen(path: string, backendPath: string, { onUpdate }: { onUpdate?: (update: TappedUpdate) => void } = {}): VhostUserGpuTap {
    const tap = new VhostUserGpuTap(UnixListener.listen(path), onUpdate);
    tap.#relays.push(tap.#accept(backendPath));
    return tap;
  }

  async #accept(backendPath: string): Promise<void> {
    const qemu = await this.#listener.accept();
    this.#listener.close();
    const backend = await UnixSocket.connect(backendPath, { timeoutMs: 10_000 });
    this.#sockets.push(qemu, backend);
    this.#relays.push(this.#relay(qemu, backend, true, (m) => this.#fromQemu(m)), this.#relay(backend, qemu, true));
  }

  /** QEMU's GPU_SET_SOCKET: keep QEMU's display end, give the back end ours. */
  #fromQemu(message: Received): Forward {
    if (message.request !== Request.GPU_SET_SOCKET || message.fds.length !== 1) return forwardAsIs(message);
    const display = UnixSocket.adopt(message.fds[0]!);
    const [ours, theirs] = UnixSocket.pair();
    this.#sockets.push(display, ours);
    this.#relays.push(this.#relay(ours, display, false, (m) => this.#fromBackendGpu(m)), this.#relay(display, ours, false));
    return { fds: [theirs.fd], sent: () => theirs.close() };
  }

  #fromBackendGpu(message: Received): Forward {
    this.gpuRequests.push(message.request);
    const scanout = message.request === GpuRequest.DMABUF_SCANOUT || message.request === GpuRequest.DMABUF_SCANOUT2;
    if (scanout && message.fds.length === 1) {
      // VhostUserGpuDMABUFScanout: scanout_id, x, y, width, height, fd_width, fd_height,
      // fd_stride, fd_flags, fd_drm_fourcc (hw/display/vhost-user-gpu.c).
      const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength);
      const scanoutId = view.getUint32(0, true);
      this.scanouts.get(scanoutId)?.dmabuf.close();
      this.scanouts.set(scanoutId, {
        scanoutId,
        width: view.getUint32(20, true),
        height: view.getUint32(24, true),
        stride: view.getUint32(28, true),
        fourcc: view.getUint32(36, true),
        dmabuf: DmaBuf.adopt(native.dup(message.fds[0]!)),
      });
    }
    if (message.request === GpuRequest.DMABUF_UPDATE) {
      this.updates++;
      if (this.#onUpdate && message.payload.byteLength >= 20) {
        // VhostUserGpuUpdate: scanout_id, x, y, width, height.
        const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength);
        const [scanoutId, x, y, width, height] = [0, 4, 8, 12, 16].map((at) => view.getUint32(at, true)) as [number, number, number, number, number];
        this.#onUpdate({ scanoutId, x, y, width, height });
      }
      for (const wake of this.#waiters) wake();
    }
    return forwardAsIs(message);
  }

  /** As settledPicture's FlushSource: true once more than `seen` DMABUF_UPDATEs came, false on timeout. */
  get flushes(): number {
    return this.updates;
  }

  async waitForFlush(seen: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.updates <= seen) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#waiters.add(done);
      });
    }
    return true;
  }

  /** Forwards every message from `from` to `to` until either side ends; `inspect` may swap the fds. */
  async #relay(from: UnixSocket, to: UnixSocket, versioned: boolean, inspect: (m: Received) => Forward = forwardAsIs): Promise<void> {
    const reader = new MessageReader(from, { versioned, maxPayload: versioned ? undefined : MAX_GPU_PAYLOAD });
    try {
      for (;;) {
        const message = await reader.read();
        if (!message) break;
        const forward = inspect(message);
        try {
          await to.send(encodeMessage(message.request, message.flags, message.payload), forward.fds);
        } finally {
          forward.sent();
        }
      }
    } catch {
      // One side went away (QEMU killed, the back end exited): the other is closed below.
    }
    from.close();
    to.close();
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const socket of this.#sockets) if (!socket.closed) socket.close();
    await Promise.allSettled(this.#relays);
    for (const scanout of this.scanouts.values()) scanout.dmabuf.close();
    this.scanouts.clear();
  }
}
