// A nested QEMU 10.0 (TCG, -display none) booting the GPU test guest on
// `-device vhost-user-gpu-pci`, served by our back end in this process on a fresh listener: the
// serial console as lines to wait for, a line to answer the guest's prompts with (init.sh's
// gpu_guest.ask), and the device whose scanout holds the exported dma-buf.
import { spawn, type ChildProcess } from 'node:child_process';
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

const NO_GL = /console doesn't support GL!/;

export interface NestedGpuGuestOptions {
  boot: GpuGuestBoot;
  /** Extra kernel command-line switches (init.sh's gpu_guest.*). */
  append?: readonly string[];
  /** Pass -no-reboot: the guest's `reboot -f` ends QEMU instead of restarting the guest. */
  noReboot?: boolean;
  /** The device's mode and timeouts (its callbacks are the helper's own). */
  device?: Pick<GpuDeviceOptions, 'mode' | 'waitForFreeTimeoutMs'>;
  log: (line: string) => void;
}

/** A control command the device answered, when (ms since QEMU was spawned). */
export interface AnsweredCommand {
  type: number;
  response: number;
  ms: number;
}

export class NestedGpuGuest {
  readonly device: VhostUserGpuDevice;
  readonly warnings: GuestDmabufError[] = [];
  /** Every console line so far (QEMU's stderr prefixed `qemu: `). */
  readonly lines: string[] = [];
  /** Milliseconds from spawn to the first RESOURCE_CREATE_2D of each boot's first resource (one per connection reset). */
  readonly firstCreateMs: number[] = [];
  readonly exited: Promise<number | null>;
  readonly started = performance.now();
  backend: VhostUserBackend | null = null;
  /** RESOURCE_FLUSHes of a shown resource so far. */
  flushes = 0;
  /** Every control command answered, in order. */
  readonly answered: AnsweredCommand[] = [];
  #consumed = 0;
  #waiters = new Set<() => void>();
  #exitCode: number | null | undefined;
  #createSeen = false;
  readonly #child: ChildProcess;
  readonly #listener: UnixListener;
  readonly #dir: string;
  readonly #served: Promise<void>;
  /** Where console lines and warnings go; a test sharing the guest with an earlier one sets its own. */
  log: (line: string) => void;

  private constructor(options: NestedGpuGuestOptions) {
    this.log = options.log;
    this.device = new VhostUserGpuDevice({
      ...options.device,
      onWarning: (e) => {
        this.warnings.push(e);
        this.log(`warning: ${e.code}: ${e.message}`);
      },
      onFlush: () => {
        this.flushes++;
        this.#wake();
      },
      onCommand: (type, response) => {
        this.answered.push({ type, response, ms: performance.now() - this.started });
        if (type === Command.RESOURCE_CREATE_2D && !this.#createSeen) {
          this.#createSeen = true;
          this.firstCreateMs.push(performance.now() - this.started);
        }
      },
    });
    const qemu = findQemu('10.0');
    this.#dir = mkdtempSync(join(tmpdir(), 'nested-gpu-'));
    const socketPath = join(this.#dir, 'gpu.sock');
    this.#listener = UnixListener.listen(socketPath);
    const { boot } = options;
    const args = [
      ...qemu.extraArgs,
      ...vhostUserGpuQemuArgs({ socketPath, image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, ...(options.append ?? [])], reboot: !options.noReboot }),
    ];
    this.#child = spawn(qemu.binary, args, { env: { ...process.env, ...qemu.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.#child.on('exit', (code) => {
      this.#exitCode = code;
      this.#wake();
      resolve(code);
    }));
    this.#lines(this.#child.stdout!, '');
    this.#lines(this.#child.stderr!, 'qemu: ');
    this.#served = this.#serve();
  }

  static start(options: NestedGpuGuestOptions): NestedGpuGuest {
    return new NestedGpuGuest(options);
  }

  /** Seconds since QEMU was spawned. */
  get seconds(): number {
    return (performance.now() - this.started) / 1000;
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

  #lines(stream: NodeJS.ReadableStream, prefix: string): void {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
        const line = prefix + buffered.slice(0, at).replace(/\r$/, '');
        buffered = buffered.slice(at + 1);
        this.lines.push(line);
        // QEMU with -display none says this at every DMABUF_SCANOUT and UPDATE: once is enough.
        if (NO_GL.test(line) && this.lines.some((l, i) => i < this.lines.length - 1 && NO_GL.test(l))) continue;
        this.log(`[${this.seconds.toFixed(1).padStart(6)} s] ${line}`);
        this.#wake();
      }
    });
  }

  /** Resolves at the next console line, flush or exit, or after `ms`. */
  #nextEvent(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** The next console line (after the last one waited for) matching `pattern`; rejects on timeout or QEMU's exit. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (; this.#consumed < this.lines.length; this.#consumed++) {
        const match = pattern.exec(this.lines[this.#consumed]!);
        if (match) {
          this.#consumed++;
          return match;
        }
      }
      if (this.#exitCode !== undefined) throw new Error(`QEMU exited (${this.#exitCode}) before the console showed ${pattern}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no console line matching ${pattern} within ${timeoutMs / 1000} s`);
      await this.#nextEvent(left);
    }
  }

  /** Waits until a RESOURCE_FLUSH of a shown resource comes after the `seen`-th; false on timeout or QEMU's exit. */
  async waitForFlush(seen: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.flushes <= seen) {
      const left = deadline - performance.now();
      if (left <= 0 || this.#exitCode !== undefined) return false;
      await this.#nextEvent(left);
    }
    return true;
  }

  /** A line on the guest's console input (answers init.sh's prompts). */
  send(line: string): void {
    this.#child.stdin!.write(`${line}\n`);
  }

  /** SIGKILL, as a crash would: QEMU closes nothing on its way out. */
  async kill(): Promise<void> {
    if (this.#exitCode === undefined) this.#child.kill('SIGKILL');
    await this.exited;
    // The pipes to QEMU stay open in this process until destroyed (stdin is never ended by QEMU).
    for (const stream of [this.#child.stdin, this.#child.stdout, this.#child.stderr]) stream?.destroy();
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
