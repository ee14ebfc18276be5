// `npm run bench:e2e` (in the 6.12 VM): the whole chain from a guest's screen to a Wayland
// compositor, ours against what copying proxies do (bench/e2e-paths.ts has both chains). The
// guest (nested QEMU 10.0, TCG, -device vhost-user-gpu-pci, 1280×800) redraws its whole screen
// as fast as it can for BENCH_E2E_SECONDS (default 20) with draw-drm's `run`: each frame drawn
// whole and DIRTYFB'd whole. Per chain, a fresh weston 14 (headless, GL on llvmpipe), and:
//   frames/s the guest drew (its own count), commits/s that reached weston (the proxy's counts,
//   read with SIGUSR1), and CPU time per guest frame (utime+stime from /proc/<pid>/stat, from
//   `run` until every process is idle after the last frame) of the back end, the proxy, weston,
//   their total, and QEMU apart (the guest's drawing under TCG, the same work in both chains).
// Before and after the run weston's screenshot must equal the guest's picture (its frozen last
// frame after), or the chain is reported broken rather than measured. Then the ratio of totals
// per frame, ours ÷ copy, against the target ≤ 0.1. BENCH_VERBOSE=1 prints every line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQemu } from '../qemu-glue/qemu-binaries.js';
import { drmCommand, screenShows } from '../test/vm/helpers/draw-drm.js';
import { NestedQemu } from '../test/vm/helpers/nested-qemu.js';
import type { Program } from '../test/vm/helpers/program.js';
import { Weston } from '../test/vm/helpers/weston.js';
import { gpuGuestBoot, TINY, vhostUserGpuQemuArgs } from '../vm/gpu-guest-boot.js';
import { DRM_MOVED, DRM_SHOWN, type Picture } from '../vm/gpu-guest.js';
import { COPY, OURS, startChain, type Chain, type Path } from './e2e-paths.js';
import { cpuMs, idle, printTable, threadCpu, threadCpuDelta } from './stats.js';

const SECONDS = Number(process.env.BENCH_E2E_SECONDS ?? 20);
const W = 1280;
const H = 800;
const BOOT_MS = 300_000;
const COMMAND_MS = 120_000;
const verbose = process.env.BENCH_VERBOSE === '1';
const started = performance.now();
const say = (line: string): void => void process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
const log = (line: string): void => void (verbose && process.stderr.write(`  ${line}\n`));

interface Row {
  path: Path;
  failed?: string;
  frames: number;
  guestSeconds: number;
  commits: number;
  seconds: number;
  /** CPU ms per guest frame. */
  backEnd: number;
  proxy: number;
  weston: number;
  qemu: number;
  /** The check after the run. */
  screen: string;
  /** Back end's, proxy's and weston's CPU ms by kind of thread (threadCpuDelta), for the run. */
  threads: [string, number][][];
}

/** The proxy's commits so far, from its `stats: … commits=N` line on SIGUSR1. */
async function commits(proxy: Program): Promise<number> {
  const from = proxy.lines.length;
  proxy.child.kill('SIGUSR1');
  const { line } = await proxy.line(/stats: .*commits=\d+/, 10_000, from);
  return Number(/commits=(\d+)/.exec(line)![1]);
}

/** Boots the GPU guest on `socket` and starts draw-drm, with progress lines while it boots. */
async function bootGuest(socket: string, name: string): Promise<NestedQemu> {
  const boot = gpuGuestBoot(TINY, { build: false });
  const binary = findQemu('10.0');
  const qemu = new NestedQemu({
    binary: binary.binary,
    args: [...binary.extraArgs, ...vhostUserGpuQemuArgs({ socketPath: socket, display: { width: W, height: H }, image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, 'gpu_guest.ask=1'] })],
    env: binary.env,
    logOnce: [/console doesn't support GL!/],
    log: (l) => log(`guest ${l}`),
  });
  const progress = setInterval(() => say(`${name}: … the nested guest is booting (${qemu.seconds.toFixed(0)} s)`), 10_000);
  try {
    await qemu.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
  } finally {
    clearInterval(progress);
  }
  say(`${name}: guest up after ${qemu.seconds.toFixed(1)} s`);
  qemu.send('drm');
  await qemu.waitFor(/^draw-drm: ready$/, COMMAND_MS);
  return qemu;
}

/** Every pid the row counts, QEMU last. */
const pidsOf = (chain: Chain, weston: Weston, qemu: NestedQemu): number[] => [chain.backEnd.child.pid!, chain.proxy.child.pid!, weston.pid, qemu.pid];

async function measure(path: Path): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-e2e-'));
  let weston: Weston | undefined;
  let chain: Chain | undefined;
  let qemu: NestedQemu | undefined;
  try {
    say(`${path.name}: starting weston 14 (headless, GL on llvmpipe)`);
    weston = await Weston.start({ width: W, height: H });
    chain = await startChain(path, dir, weston, log);
    say(`${path.name}: ${path.backEndName} and ${path.proxyName} up; booting the nested guest (QEMU 10.0, TCG; about 25–40 s)`);
    qemu = await bootGuest(chain.qemuSocket, path.name);
    const shown = await drmCommand(qemu, 'show gradient-xor', DRM_SHOWN, log);
    if (Number(shown[1]) !== W || Number(shown[2]) !== H) throw new Error(`the guest's mode is ${shown[1]}×${shown[2]}, not ${W}×${H}`);
    const before = await screenShows(weston, W, H, 'gradient-xor', 60_000);
    if (before.bad) throw new Error(`weston does not show the guest's picture before the run: ${before.bad} pixels differ`);
    const pids = pidsOf(chain, weston, qemu);
    await idle(pids.slice(0, 3));
    const commits0 = await commits(chain.proxy);
    say(`${path.name}: weston shows the guest's picture; the guest redraws its screen for ${SECONDS} s`);
    qemu.send(`run ${SECONDS}`);
    await qemu.waitFor(/^draw-drm: moving$/, COMMAND_MS);
    const t0 = performance.now();
    const cpu0 = pids.map((pid) => cpuMs(pid));
    const threads0 = pids.slice(0, 3).map((pid) => threadCpu(pid));
    const moved = await qemu.waitFor(DRM_MOVED, SECONDS * 1000 + COMMAND_MS);
    const quietMs = 1000;
    await idle(pids.slice(0, 3), quietMs);
    const seconds = (performance.now() - t0 - quietMs) / 1000;
    const [backEnd, proxy, westonMs, qemuMs] = pids.map((pid, i) => cpuMs(pid) - cpu0[i]!) as [number, number, number, number];
    const threads = pids.slice(0, 3).map((pid, i) => threadCpuDelta(threads0[i]!, threadCpu(pid)));
    const committed = (await commits(chain.proxy)) - commits0;
    const frames = Number(moved[1]);
    const last = moved[3] as Picture;
    const after = await screenShows(weston, W, H, last, 30_000);
    const screen = after.bad === 0 ? `= ${last}` : `${after.bad} px differ from ${last}`;
    say(`${path.name}: ${frames} frames drawn, ${committed} commits; weston's screen ${screen}`);
    return { path, frames, guestSeconds: Number(moved[2]), commits: committed, seconds, backEnd: backEnd / frames, proxy: proxy / frames, weston: westonMs / frames, qemu: qemuMs / frames, screen, threads };
  } catch (err) {
    const said = chain ? [chain.backEnd, chain.proxy].map((p) => `${p.child.spawnfile} said:\n${p.lines.slice(-15).join('\n')}`).join('\n') : '';
    throw new Error(`${(err as Error).message}\n${said}`);
  } finally {
    await qemu?.kill();
    for (const program of [chain?.proxy, chain?.backEnd]) {
      program?.child.kill('SIGTERM');
      const timer = setTimeout(() => program?.child.kill('SIGKILL'), 5000);
      await program?.exited;
      clearTimeout(timer);
    }
    await weston?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const path of [OURS, COPY]) {
  rows.push(
    await measure(path).catch((err: Error): Row => {
      say(`${path.name}: failed: ${err.message}`);
      return { path, failed: err.message.split('\n')[0], frames: 0, guestSeconds: 0, commits: 0, seconds: 0, backEnd: NaN, proxy: NaN, weston: NaN, qemu: NaN, screen: '', threads: [] };
    }),
  );
}

const ms = (v: number): string => `${v.toFixed(2)} ms`;
const total = (r: Row): number => r.backEnd + r.proxy + r.weston;
console.log(`\nbench:e2e: a ${W}×${H} XRGB8888 guest screen redrawn whole for ${SECONDS} s, nested QEMU 10.0 (TCG) → back end → proxy → weston 14 (headless, GL on llvmpipe)`);
console.log('CPU time per frame the guest drew (utime+stime of each process, from the run until all but QEMU are idle after it;');
console.log('commits/s over that same time, the frames that reached weston as commits)\n');
printTable(
  ['path', 'guest frames/s', 'commits/s', 'back end', 'proxy', 'weston', 'total (no QEMU)', 'QEMU', 'weston shows'],
  rows.filter((r) => !r.failed).map((r) => [
    r.path.name,
    `${(r.frames / r.guestSeconds).toFixed(1)} (${r.frames})`,
    `${(r.commits / r.seconds).toFixed(1)} (${r.commits})`,
    `${ms(r.backEnd)} ${r.path.backEndName}`,
    `${ms(r.proxy)} ${r.path.proxyName}`,
    ms(r.weston),
    ms(total(r)),
    ms(r.qemu),
    r.screen,
  ]),
);
// Both proxies commit once per frame callback, merging what the guest flushed meanwhile: when the
// compositor is the slowest part, a proxy's and weston's work follows the commits, not the frames.
console.log('\nthe same per commit that reached weston (CPU of the run ÷ commits)\n');
printTable(
  ['path', 'commits', 'proxy', 'weston', 'proxy + weston'],
  rows.filter((r) => !r.failed).map((r) => {
    const perCommit = (perFrame: number): number => (perFrame * r.frames) / r.commits;
    return [r.path.name, `${r.commits}`, ms(perCommit(r.proxy)), ms(perCommit(r.weston)), ms(perCommit(r.proxy + r.weston))];
  }),
);
console.log('\nwhere it went, ms per guest frame by kind of thread (user or system time)');
for (const r of rows.filter((r) => !r.failed)) {
  [r.path.backEndName, r.path.proxyName, 'weston'].forEach((name, i) => {
    console.log(`  ${r.path.name}, ${name}: ${r.threads[i]!.slice(0, 6).map(([kind, total]) => `${kind} ${(total / r.frames).toFixed(2)}`).join(', ')}`);
  });
}
for (const r of rows.filter((r) => r.failed)) console.log(`${r.path.name}: no figures: ${r.failed}`);
const [ours, copy] = rows;
const valid = (r: Row | undefined): r is Row => !!r && !r.failed && r.screen.startsWith('=');
if (!valid(ours) || !valid(copy)) {
  console.log('\nno ratio: a chain failed or weston did not show the guest\'s last frame');
  process.exit(1);
}
const ratio = total(ours) / total(copy);
console.log(`\nCPU per frame without QEMU, ours ÷ copy: ${ratio.toFixed(3)} (target ≤ 0.1) ${ratio <= 0.1 ? 'met' : 'NOT met'}`);
console.log(`  back end ${(ours.backEnd / copy.backEnd).toFixed(3)}, proxy ${(ours.proxy / copy.proxy).toFixed(3)}, weston ${(ours.weston / copy.weston).toFixed(3)}`);
// The compositor draws every commit whichever way its buffer came; with llvmpipe that draw is
// most of each chain's CPU. So even a back end and proxy that cost nothing would leave this:
console.log(`  with our back end and proxy at no cost at all, weston's share alone: ${(ours.weston / total(copy)).toFixed(3)}`);
