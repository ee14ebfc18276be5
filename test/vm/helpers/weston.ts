// A real weston 14 for end-to-end tests: headless, GL renderer (llvmpipe in the VM), kiosk
// shell (every toplevel fullscreen over a black curtain), its own XDG_RUNTIME_DIR in /tmp,
// --debug so that weston-screenshooter may capture the output.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodePng, type Image } from '../../../lib/formats/png.js';

export interface WestonOptions {
  width?: number;
  height?: number;
  /** Give up starting after this long (default 120 s: llvmpipe under TCG on a loaded machine is slow; 10–27 s measured). */
  timeoutMs?: number;
}

export class Weston implements AsyncDisposable {
  readonly runtimeDir: string;
  readonly socket: string;
  readonly process: ChildProcess;
  /** Milliseconds from spawn until its socket accepted a client. */
  readonly startMs: number;
  #log = '';
  #exited: Promise<number | null>;

  static async start({ width = 640, height = 480, timeoutMs = 120_000 }: WestonOptions = {}): Promise<Weston> {
    unloadVgem();
    const runtimeDir = mkdtempSync('/tmp/weston-');
    chmodSync(runtimeDir, 0o700);
    const socket = 'wayland-test';
    const started = performance.now();
    const child = spawn(
      'weston',
      ['--backend=headless', '--renderer=gl', `--width=${width}`, `--height=${height}`, `--socket=${socket}`, '--debug', '--shell=kiosk', '--idle-time=0'],
      // Mesa's shader cache would land in $HOME/.cache: on the VM's tmpfs, Shmem a test file
      // would not give back.
      { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir, WAYLAND_DISPLAY: undefined, MESA_SHADER_CACHE_DISABLE: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const weston = new Weston(runtimeDir, socket, child, started);
    const deadline = started + timeoutMs;
    // weston creates the socket before it is ready to serve; its log says when the shell is up.
    while (!existsSync(join(runtimeDir, socket)) || !/kiosk|shell plugin|launching/i.test(weston.log)) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`weston exited (${child.exitCode ?? child.signalCode}) before its socket appeared:\n${weston.log}`);
      if (performance.now() > deadline) {
        await weston.stop();
        throw new Error(`weston did not create its socket within ${timeoutMs} ms:\n${weston.log}`);
      }
      await sleep(50);
    }
    (weston as { startMs: number }).startMs = performance.now() - started;
    return weston;
  }

  private constructor(runtimeDir: string, socket: string, child: ChildProcess, _started: number) {
    this.runtimeDir = runtimeDir;
    this.socket = socket;
    this.process = child;
    this.startMs = 0;
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (this.#log += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (this.#log += s));
    this.#exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Absolute socket path: pass it to WaylandClient.connect. */
  get path(): string {
    return join(this.runtimeDir, this.socket);
  }

  get log(): string {
    return this.#log;
  }

  get pid(): number {
    return this.process.pid!;
  }

  /** The output as weston-screenshooter captures it. */
  screenshot(): Image {
    const dir = mkdtempSync('/tmp/shot-');
    try {
      const run = spawnSync('weston-screenshooter', [], { cwd: dir, env: { ...process.env, XDG_RUNTIME_DIR: this.runtimeDir, WAYLAND_DISPLAY: this.socket }, encoding: 'utf8', timeout: 60_000 });
      const png = readdirSync(dir).find((f) => f.endsWith('.png'));
      if (run.status !== 0 || !png) throw new Error(`weston-screenshooter failed (${run.status ?? run.signal}): ${run.stderr}${run.stdout}`);
      return decodePng(readFileSync(join(dir, png)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Stops weston (SIGTERM, then SIGKILL) and removes its runtime directory. */
  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGTERM');
      const timer = setTimeout(() => this.process.kill('SIGKILL'), 5000);
      await this.#exited;
      clearTimeout(timer);
    }
    rmSync(this.runtimeDir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * The importer suites load vgem. With its render node present, weston 14's GL renderer on Mesa
 * 25 (headless, surfaceless EGL) picks that node and dies at the first dma-buf a client
 * presents (the client sees ECONNRESET); LIBGL_ALWAYS_SOFTWARE does not change that. Measured
 * in the 6.1 VM: `modprobe vgem` before the Wayland tests fails them, without it they pass.
 * So weston starts only once vgem is gone.
 */
function unloadVgem(): void {
  if (!existsSync('/sys/module/vgem')) return;
  const run = spawnSync('rmmod', ['vgem'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`vgem is loaded and cannot be unloaded (${run.stderr.trim()}): weston's GL renderer would pick its render node and crash at the first dma-buf; close vgem users first`);
}
