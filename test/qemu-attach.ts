// Starting a QEMU the way someone else would (its own memfd backends, QMP on a unix socket
// path), for tests of attaching to it. Nothing boots: -S keeps the CPUs stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQemu, type QemuVersion } from '../qemu-glue/qemu-binaries.js';
import { QmpClient } from '../qemu-glue/qmp/client.js';

export interface ForeignQemu {
  process: ChildProcess;
  socketPath: string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
  /**
   * Connects to its QMP socket. QEMU binds the socket file before it listens, so a connect
   * right after the file appears can be refused: retried for a while.
   */
  connect(timeoutMs?: number): Promise<QmpClient>;
}

/** QEMU with `-qmp unix:PATH,server=on,wait=off`; resolves once the socket exists. */
export async function startForeignQemu(version: QemuVersion, args: readonly string[]): Promise<ForeignQemu> {
  const qemu = findQemu(version);
  const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-qemu-'));
  const socketPath = join(dir, 'qmp.sock');
  const child = spawn(qemu.binary, [...qemu.extraArgs, '-S', '-nodefaults', '-display', 'none', '-accel', 'tcg', '-qmp', `unix:${socketPath},server=on,wait=off`, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...qemu.env },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = performance.now() + 30_000;
  while (!existsSync(socketPath)) {
    if (child.exitCode !== null || performance.now() > deadline) {
      await kill();
      throw new Error(`QEMU ${version} did not create its QMP socket: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const connect = async (timeoutMs = 30_000): Promise<QmpClient> => {
    const until = performance.now() + timeoutMs;
    for (;;) {
      try {
        return await QmpClient.connect(socketPath, { timeoutMs });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || performance.now() > until) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  return { process: child, socketPath, stderr: () => stderr, exited, kill, connect };
}

/** The QEMU versions the suite runs every QEMU test on; missing ones fail loudly, never skip. */
export const QEMU_VERSIONS: readonly QemuVersion[] = ['7.2', '10.0'];
