// The two chains `npm run bench:e2e` compares, from QEMU's vhost-user-gpu socket to weston, each
// part its own process so that its CPU time is its own:
//   ours   guest-dmabuf sidecar --vhost-user-gpu (the scanout a udmabuf of the guest's own pages)
//          → guest-dmabuf show (imported once; each flush a damaged commit of that buffer)
//   copy   QEMU's contrib vhost-user-gpu (each transfer copied into its own image, shown as a
//          udmabuf of it) → bench/shm-copy-proxy.js (each update copied into a wl_shm buffer)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { contribVhostUserGpu } from '../qemu-glue/qemu-binaries.js';
import { until } from '../test/vm/helpers/draw-drm.js';
import { startProgram, type Program } from '../test/vm/helpers/program.js';
import type { Weston } from '../test/vm/helpers/weston.js';
import { PROJECT_ROOT } from '../vm/paths.js';

/** A chain started beside weston, waiting for QEMU. */
export interface Chain {
  /** The vhost-user-gpu back end (sidecar or contrib). */
  backEnd: Program;
  /** What takes its frames to weston (show or the wl_shm copy proxy). */
  proxy: Program;
  /** Where QEMU's -chardev connects. */
  qemuSocket: string;
}

/** A program to start: its file and arguments. */
interface Command {
  file: string;
  args: string[];
}

export interface Path {
  name: string;
  backEndName: string;
  proxyName: string;
  /** The back end, and the sockets it listens on once ready. */
  backEnd(dir: string): Command & { listens: string[] };
  /** The proxy ($WAYLAND_DISPLAY is weston's), and what it says once ready, if anything. */
  proxy(dir: string): Command & { ready?: RegExp };
  /** Where QEMU's -chardev connects. */
  qemuSocket(dir: string): string;
}

const CLI = join(PROJECT_ROOT, 'dist', 'qemu-glue', 'cli.js');
const PROXY = join(PROJECT_ROOT, 'dist', 'bench', 'shm-copy-proxy.js');
const START_MS = 30_000;

/** Starts `path`'s back end, waits for its sockets, then its proxy on weston. */
export async function startChain(path: Path, dir: string, weston: Weston, log: (line: string) => void): Promise<Chain> {
  const b = path.backEnd(dir);
  const backEnd = startProgram(path.backEndName, b.file, b.args, { log: (l) => log(`${path.backEndName}: ${l}`) });
  if (!(await until(() => b.listens.every(existsSync) || backEnd.child.exitCode !== null, START_MS)) || backEnd.child.exitCode !== null) {
    throw new Error(`${path.backEndName} did not listen on ${b.listens.join(' and ')}:\n${backEnd.lines.join('\n')}`);
  }
  const p = path.proxy(dir);
  const env = { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket };
  const proxy = startProgram(path.proxyName, p.file, p.args, { env, log: (l) => log(`${path.proxyName}: ${l}`) });
  if (p.ready) await proxy.line(p.ready, START_MS);
  return { backEnd, proxy, qemuSocket: path.qemuSocket(dir) };
}

const sock = (dir: string, name: string): string => join(dir, `${name}.sock`);

export const OURS: Path = {
  name: 'ours (zero copy)',
  backEndName: 'sidecar',
  proxyName: 'show',
  backEnd: (dir) => ({ file: process.execPath, args: [CLI, 'sidecar', '--listen', sock(dir, 'sidecar'), '--vhost-user-gpu', sock(dir, 'gpu')], listens: [sock(dir, 'gpu'), sock(dir, 'sidecar')] }),
  proxy: (dir) => ({ file: process.execPath, args: [CLI, 'show', '--sidecar', sock(dir, 'sidecar'), '--fullscreen'] }),
  qemuSocket: (dir) => sock(dir, 'gpu'),
};

export const COPY: Path = {
  name: 'copy (contrib + wl_shm proxy)',
  backEndName: 'contrib',
  proxyName: 'shm proxy',
  // Its g_debug (G_MESSAGES_DEBUG) would say which buffer path it took, at a cost per command: left off.
  backEnd: (dir) => ({ file: contribVhostUserGpu(), args: [`--socket-path=${sock(dir, 'contrib')}`], listens: [sock(dir, 'contrib')] }),
  proxy: (dir) => ({ file: process.execPath, args: [PROXY, '--listen', sock(dir, 'tap'), '--backend', sock(dir, 'contrib')], ready: /listening on/ }),
  qemuSocket: (dir) => sock(dir, 'tap'),
};
