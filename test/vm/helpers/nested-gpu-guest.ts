// A nested QEMU 10.0 (TCG, -display none) booting the GPU test guest on
// `-device vhost-user-gpu-pci`, served by our back end in this process on a fresh listener: the
// console and exit of NestedQemu, plus the device whose scanout holds the exported dma-buf and
// the flushes it saw.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GuestDmabufError } from '../../../lib/core/errors.js';
import { UnixListener } from '../../../lib/ipc/unix-listener.js';
import { findQemu } from '../../../qemu-glue/qemu-binaries.js';
import { VhostUserBackend } from '../../../qemu-glue/vhost-user/backend.js';
import { Request } from '../../../qemu-glue/vhost-user/protocol.js';
import { VhostUserGpuDevice, type GpuDeviceOptions } from '../../../qemu-glue/vhost-user-gpu/gpu-device.js';
import { Command } from '../../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { vhostUserGpuQemuArgs, type GpuGuestBoot } from '../../../vm/gpu-guest-boot.js';
import { NestedQemu } from './nested-qemu.js';

/** QEMU with -display none says this at every DMABUF_SCANOUT and UPDATE: once is enough. */
const NO_GL = /console doesn't support GL!/;

export interface NestedGpuGuestOptions {
  boot: GpuGuestBoot;
  /** Extra kernel command-line switches (init.sh's gpu_guest.*). */
  append?: readonly string[];
  /** Pass -no-reboot: the guest's `reboot -f` ends QEMU instead of restarting the guest. */
  noReboot?: boolean;
  /** The device's mode and timeouts (its callbacks are the helper's own). */
  device?: Pick<GpuDeviceOptions, 'mode' | 'waitForFreeTimeoutMs' | 'updateAckTimeoutMs'>;
  log: (line: string) => void;
}

/** A control command the device answered, when (ms since QEMU was spawned). */
export interface AnsweredCommand {
  type: number;
  response: number;
  ms: number;
}

export class NestedGpuGuest extends NestedQemu {
  readonly device: VhostUserGpuDevice;
  readonly warnings: GuestDmabufError[] = [];
  /** Milliseconds from spawn to the first RESOURCE_CREATE_2D of each boot's first resource (one per connection reset). */
  readonly firstCreateMs: number[] = [];
  backend: VhostUserBackend | null = null;
  /** RESOURCE_FLUSHes of a shown resource so far. */
  flushes = 0;
  /** Every control command answered, in order. */
  readonly answered: AnsweredCommand[] = [];
  #createSeen = false;
  readonly #listener: UnixListener;
  readonly #dir: string;
  readonly #served: Promise<void>;

  private constructor(options: NestedGpuGuestOptions, dir: string, listener: UnixListener) {
    const qemu = findQemu('10.0');
    const { boot } = options;
    super({
      binary: qemu.binary,
      args: [
        ...qemu.extraArgs,
        ...vhostUserGpuQemuArgs({ socketPath: join(dir, 'gpu.sock'), image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, ...(options.append ?? [])], reboot: !options.noReboot }),
      ],
      env: qemu.env,
      logOnce: [NO_GL],
      log: options.log,
    });
    this.#dir = dir;
    this.#listener = listener;
    this.device = new VhostUserGpuDevice({
      // A nested QEMU under TCG on a busy 2-core machine was seen to take over the default 1 s
      // to ack a DMABUF_UPDATE (a warning the tests would count); the tests here are not about that.
      updateAckTimeoutMs: 30_000,
      ...options.device,
      onWarning: (e) => {
        this.warnings.push(e);
        this.log(`warning: ${e.code}: ${e.message}`);
      },
      onFlush: () => {
        this.flushes++;
        this.wake();
      },
      onCommand: (type, response) => {
        this.answered.push({ type, response, ms: performance.now() - this.started });
        if (type === Command.RESOURCE_CREATE_2D && !this.#createSeen) {
          this.#createSeen = true;
          this.firstCreateMs.push(performance.now() - this.started);
        }
      },
    });
    this.#served = this.#serve();
  }

  static start(options: NestedGpuGuestOptions): NestedGpuGuest {
    // The listener is there before QEMU starts (it connects at once).
    const dir = mkdtempSync(join(tmpdir(), 'nested-gpu-'));
    let listener: UnixListener | undefined;
    try {
      listener = UnixListener.listen(join(dir, 'gpu.sock'));
      return new NestedGpuGuest(options, dir, listener);
    } catch (err) {
      listener?.close();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async #serve(): Promise<void> {
    const socket = await Promise.race([this.#listener.accept(), this.exited.then(() => null)]);
    this.#listener.close();
    if (!socket) return;
    const backend = new VhostUserBackend(socket, this.device, {
      onWarning: (e) => {
        this.warnings.push(e);
        this.log(`warning: ${e.code}: ${e.message}`);
      },
      // QEMU sends RESET_DEVICE at realize and at every device stop (a reboot): the next
      // CREATE_2D is that boot's first.
      onRequest: (request) => {
        if (request === Request.RESET_DEVICE) this.#createSeen = false;
      },
    });
    this.backend = backend;
    await backend.served;
  }

  /** Waits until a RESOURCE_FLUSH of a shown resource comes after the `seen`-th; false on timeout or QEMU's exit. */
  waitForFlush(seen: number, timeoutMs: number): Promise<boolean> {
    return this.waitUntil(() => this.flushes > seen, timeoutMs);
  }

  /**
   * Waits until no RESOURCE_FLUSH came for `quietMs` and returns the count: the guest's kernel
   * may still have a flush of its last frame queued after its program said it drew that frame.
   */
  async quietFlushes(quietMs: number): Promise<number> {
    while (await this.waitForFlush(this.flushes, quietMs));
    return this.flushes;
  }

  /** Kills QEMU if it still runs, then waits until the back end has torn its connection down. */
  async close(): Promise<void> {
    await this.kill();
    await this.#served;
    await this.backend?.close();
    this.#listener.close();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
