// `npm start`, inside the test VM: a real guest's screen in a real compositor with zero copies.
// Every part is a process of its own, as a person would run them:
//   weston 14 (headless, GL renderer on llvmpipe)
//   guest-dmabuf sidecar --vhost-user-gpu …   QEMU's vhost-user-gpu back end, serving the scanout
//   QEMU 10.0 (nested, TCG) with the GPU guest: Linux's virtio-gpu, draw-drm drawing a moving
//                                              picture into a dumb buffer
//   guest-dmabuf show --sidecar …             imports the guest's scanout into weston
// The guest's picture is frozen at a known frame; weston's screenshot is written to
// OUT/compositor.png, and the frame as the guest program computes it (vm/gpu-guest.ts's formula,
// not our data path) to OUT/guest.png; the two are compared pixel for pixel. Timings are printed.
//   node dist/examples/guest-screen.js OUT_DIR [FRAMES]
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodePng, type Image } from '../lib/index.js';
import { findQemu } from '../qemu-glue/qemu-binaries.js';
import { drmCommand } from '../test/vm/helpers/draw-drm.js';
import { NestedQemu } from '../test/vm/helpers/nested-qemu.js';
import { startProgram, type Program } from '../test/vm/helpers/program.js';
import { Weston } from '../test/vm/helpers/weston.js';
import { gpuGuestBoot, TINY, vhostUserGpuQemuArgs } from '../vm/gpu-guest-boot.js';
import { differingPixels, drawnImage, DRM_MOVED, DRM_SHOWN, type Picture } from '../vm/gpu-guest.js';
import { PROJECT_ROOT } from '../vm/paths.js';

const W = 1280;
const H = 800;
const [outDir, framesArg] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node dist/examples/guest-screen.js OUT_DIR [FRAMES]   (npm start runs it in the VM)');
  process.exit(64);
}
const FRAMES = Number(framesArg ?? 60);
const CLI = join(PROJECT_ROOT, 'dist', 'qemu-glue', 'cli.js');
const started = performance.now();
const seconds = (): string => ((performance.now() - started) / 1000).toFixed(1);
const say = (line: string): void => console.log(`[${seconds().padStart(5)} s] ${line}`);

/** One of our programs (dist/qemu-glue/cli.js). */
const program = (name: string, args: string[], env: NodeJS.ProcessEnv = process.env): Program =>
  startProgram(name, process.execPath, [CLI, ...args], { env, log: (line) => process.env.DEMO_VERBOSE && console.error(`  ${name}: ${line}`) });

const dir = mkdtempSync(join(tmpdir(), 'guest-screen-'));
const gpuSocket = join(dir, 'gpu.sock');
const listen = join(dir, 'sidecar.sock');
let weston: Weston | undefined;
let sidecar: Program | undefined;
let show: Program | undefined;
let qemu: NestedQemu | undefined;
let status = 1;
try {
  say('starting weston 14 (headless, GL renderer on llvmpipe)');
  weston = await Weston.start({ width: W, height: H });
  const westonMs = weston.startMs;
  say(`starting guest-dmabuf sidecar as QEMU's vhost-user-gpu back end`);
  sidecar = program('sidecar', ['sidecar', '--listen', listen, '--vhost-user-gpu', gpuSocket]);
  await sidecar.line(/listening on .*sidecar\.sock/, 30_000);
  show = program('show', ['show', '--sidecar', listen, '--fullscreen'], { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket });

  const boot = gpuGuestBoot(TINY, { build: false });
  const binary = findQemu('10.0');
  say(`starting QEMU 10.0 (nested, TCG) with the GPU guest (${boot.kernel.version}): its first scanout takes about 20–40 s here`);
  const qemuStarted = performance.now();
  qemu = new NestedQemu({
    binary: binary.binary,
    args: [...binary.extraArgs, ...vhostUserGpuQemuArgs({ socketPath: gpuSocket, image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, 'gpu_guest.ask=1'] })],
    env: binary.env,
    logOnce: [/console doesn't support GL!/],
    log: (line) => process.env.DEMO_VERBOSE && console.error(`  guest: ${line}`),
  });
  const progress = setInterval(() => say(`… the guest is booting (${((performance.now() - qemuStarted) / 1000).toFixed(0)} s)`), 10_000);
  let firstScanout: { line: string; at: number };
  try {
    firstScanout = await sidecar.line(/surface \d+ \(scanout 0, from vhost-user-gpu\)/, 300_000);
  } finally {
    clearInterval(progress);
  }
  say(`first scanout exported: ${firstScanout.line.replace(/^guest-dmabuf sidecar: /, '')}`);
  const firstShown = await show.line(/showing buffer/, 60_000);
  say('shown in weston (fbcon\'s console, for now)');

  await qemu.waitFor(/^gpu-guest: picture\?/, 120_000);
  qemu.send('drm');
  await qemu.waitFor(/^draw-drm: ready$/, 60_000);
  const drmAsked = performance.now();
  await drmCommand(qemu, 'show gradient-xor', DRM_SHOWN);
  say(`the guest draws a moving picture: ${FRAMES} frames, then freezes on the last`);
  const moved = await drmCommand(qemu, `move ${FRAMES}`, DRM_MOVED);
  const replaced = await show.line(/replaced by buffer/, 60_000);
  const frozen = moved[3] as Picture;
  const guestFps = Number(moved[1]) / Number(moved[2]);
  say(`the guest drew ${moved[1]} frames in ${Number(moved[2]).toFixed(2)} s (${guestFps.toFixed(1)} frames/s) and froze on ${frozen}`);

  // Screenshots until weston shows the frozen frame (the last flushes are on their way).
  const want = drawnImage(W, H, frozen);
  let shot: Image = weston.screenshot();
  let differing = Infinity;
  for (let tries = 0; tries < 30; tries++) {
    differing = differingPixels(shot, want);
    if (differing === 0) break;
    await sleep(500);
    shot = weston.screenshot();
  }
  writeFileSync(join(outDir, 'compositor.png'), encodePng(shot, { alpha: false }));
  writeFileSync(join(outDir, 'guest.png'), encodePng(want, { alpha: false }));
  say(`wrote ${join(outDir, 'compositor.png')} (weston's screenshot) and ${join(outDir, 'guest.png')} (${frozen} as the guest computes it)`);

  show.child.kill('SIGTERM');
  const showEnd = await show.line(/commits, \d+ imports/, 30_000);
  const commits = Number(/(\d+) commits/.exec(showEnd.line)![1]);
  console.log('');
  console.log('timings');
  console.log(`  weston start                          ${(westonMs / 1000).toFixed(1)} s`);
  console.log(`  QEMU start → first scanout exported   ${((firstScanout.at - qemuStarted) / 1000).toFixed(1)} s`);
  console.log(`  first scanout → first frame in weston ${((firstShown.at - firstScanout.at) / 1000).toFixed(2)} s (export, send, import, commit, frame callback)`);
  console.log(`  draw-drm's buffer → shown in weston   ${((replaced.at - drmAsked) / 1000).toFixed(2)} s (a new scanout: exported and imported again)`);
  console.log(`  guest drawing                         ${guestFps.toFixed(1)} frames/s (${moved[1]} frames)`);
  console.log(`  show                                  ${commits} commits in all, ${/(\d+) imports/.exec(showEnd.line)![1]} imports: every guest frame reached weston as a commit of the imported buffer`);
  console.log('');
  if (differing === 0) {
    console.log(`out/compositor.png and out/guest.png are identical: all ${W * H} pixels`);
    status = 0;
  } else {
    console.log(`out/compositor.png differs from out/guest.png in ${differing} of ${W * H} pixels`);
  }
} catch (err) {
  console.error(`guest-screen: ${(err as Error).stack ?? String(err)}`);
  if (sidecar) console.error(`sidecar said:\n${sidecar.lines.join('\n')}`);
  if (show) console.error(`show said:\n${show.lines.join('\n')}`);
} finally {
  await qemu?.kill();
  show?.child.kill('SIGTERM');
  sidecar?.child.kill('SIGTERM');
  await weston?.stop();
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
