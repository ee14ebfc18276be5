// The whole chain, every part real and each in its own process: a nested QEMU 10.0 with the GPU
// guest (draw-drm on virtio-gpu) → `guest-dmabuf sidecar` as its vhost-user-gpu back end
// (scanouts exported through our udmabuf driver) → `guest-dmabuf show` → weston 14 (headless,
// GL on llvmpipe). weston's screenshots must equal the picture the guest drew, then the last frame
// of its moving picture (the guest's flushes travel as damage, the buffer imported once);
// `guest-dmabuf capture` reads the same pixels; the guest reboots and `show --follow` shows its
// next boot's picture in the same window, boot 1's buffers unpinned; QEMU killed withdraws the
// surface; SIGTERM ends show and the sidecar, and our driver holds nothing of them afterwards.
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePng, type Image } from '../../lib/index.js';
import { findQemu } from '../../qemu-glue/qemu-binaries.js';
import { gpuGuestBoot, TINY, vhostUserGpuQemuArgs } from '../../vm/gpu-guest-boot.js';
import { differingPixels, drawnImage, DRM_MOVED, DRM_SHOWN, type Picture } from '../../vm/gpu-guest.js';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { ourBuffers, type OurBuffer } from './helpers/dmabuf-debugfs.js';
import { drmCommand, screenShows as shows, until } from './helpers/draw-drm.js';
import { NestedQemu } from './helpers/nested-qemu.js';
import { startProgram, type Program } from './helpers/program.js';
import { Weston } from './helpers/weston.js';

const W = 1280;
const H = 800;
const CLI = join(PROJECT_ROOT, 'dist', 'qemu-glue', 'cli.js');
const BOOT_MS = 240_000;
const COMMAND_MS = 120_000;

/** One of our CLIs (sidecar, show, capture), its output logged under `name` and kept as text. */
function program(t: ExecutionContext, name: string, args: string[], env: NodeJS.ProcessEnv = process.env): Program & { output: () => string } {
  const started = startProgram(name, process.execPath, [CLI, ...args], { env, log: (line) => t.log(`${name}: ${line}`) });
  return { ...started, output: () => started.lines.join('\n') };
}

/** Processes that map one of these dma-bufs or hold an fd of it (by inode), for the failure message. */
function holders(inodes: number[]): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
      const mapped = inodes.some((ino) => new RegExp(` ${ino}\\s+/dmabuf:`).test(maps));
      const fds = readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return inodes.includes(Number(statSync(`/proc/${pid}/fd/${fd}`).ino)) && /dmabuf/.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
        } catch {
          return false;
        }
      });
      if (mapped || fds.length) found.push(`${pid} (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}${mapped ? ', mapped' : ''}${fds.length ? `, fd ${fds.join(' ')}` : ''})`);
    } catch {
      // The process ended meanwhile.
    }
  }
  return found;
}


/** Nothing but weston holds these buffers (or none is left); a buffer nobody holds would be a kernel leak. */
function onlyWeston(buffers: OurBuffer[]): boolean {
  const holding = holders(buffers.map((b) => b.ino));
  return buffers.length === 0 || (holding.length > 0 && holding.every((h) => h.includes('(weston')));
}

/** Pixels of `image` (a W×H screenshot or capture) that are not `picture`. */
const differing = (image: Image, picture: Picture): number => differingPixels(image, drawnImage(W, H, picture));

/** Screenshots until weston shows `picture` (a flush travels guest → sidecar → show → weston). */
const screenShows = (weston: Weston, picture: Picture): ReturnType<typeof shows> => shows(weston, W, H, picture);


test('a guest\'s screen through QEMU, the sidecar, show and weston: pixel-exact, moving, captured, followed across a reboot; QEMU killed and SIGTERM leave nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-e2e-'));
  const listen = join(dir, 'sidecar.sock');
  const gpuSocket = join(dir, 'gpu.sock');
  await using weston = await Weston.start({ width: W, height: H });
  t.log(`weston started in ${Math.round(weston.startMs)} ms`);
  const sidecar = program(t, 'sidecar', ['sidecar', '--listen', listen, '--vhost-user-gpu', gpuSocket]);
  let qemu: NestedQemu | null = null;
  let show: ReturnType<typeof program> | null = null;
  try {
    t.true(await until(() => existsSync(gpuSocket) && existsSync(listen), 30_000), 'the sidecar listens on both sockets');
    const boot = gpuGuestBoot(TINY, { build: false });
    const binary = findQemu('10.0');
    qemu = new NestedQemu({
      binary: binary.binary,
      args: [...binary.extraArgs, ...vhostUserGpuQemuArgs({ socketPath: gpuSocket, image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, 'gpu_guest.ask=1'], reboot: true })],
      env: binary.env,
      logOnce: [/console doesn't support GL!/],
      log: (l) => t.log(`guest ${l}`),
    });
    show = program(t, 'show', ['show', '--sidecar', listen, '--fullscreen', '--follow'], { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket });
    await qemu.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
    qemu.send('drm');
    await qemu.waitFor(/^draw-drm: ready$/, COMMAND_MS);
    const shown = await drmCommand(qemu, 'show gradient-xor', DRM_SHOWN, (l) => t.log(l));
    t.deepEqual(shown.slice(1, 3), [`${W}`, `${H}`]);
    t.true(await until(() => /showing buffer/.test(show!.output()), 60_000), 'show presented the guest\'s buffer');
    const first = await screenShows(weston, 'gradient-xor');
    t.is(first.bad, 0, `weston shows the guest's picture (${first.shots} screenshot(s))`);

    const moved = await drmCommand(qemu, 'move 8', DRM_MOVED, (l) => t.log(l));
    const last = moved[3] as Picture;
    const moving = await screenShows(weston, last);
    t.is(moving.bad, 0, `weston shows the moving picture's last frame, ${last} (${moving.shots} screenshot(s))`);

    const out = join(dir, 'guest.png');
    const capture = program(t, 'capture', ['capture', '--sidecar', listen, '--out', out]);
    t.is(await capture.exited, 0);
    t.is(differing(decodePng(readFileSync(out)), last), 0, 'capture reads the same pixels');

    const bootOne = ourBuffers().filter((b) => b.creatorPid === sidecar.child.pid);
    t.true(bootOne.length >= 1, 'the sidecar\'s exports are our driver\'s');

    // The guest reboots: its scanout is withdrawn (the device is reset), and show --follow keeps
    // its window for the next boot's "scanout 0".
    qemu.send('quit');
    await qemu.waitFor(/^gpu-guest: next\?/, COMMAND_MS);
    qemu.send('reboot');
    await qemu.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
    qemu.send('drm');
    await qemu.waitFor(/^draw-drm: ready$/, COMMAND_MS);
    await drmCommand(qemu, 'show gradient-xor-inverted', DRM_SHOWN, (l) => t.log(l));
    t.true(await until(() => /following "scanout 0"/.test(show!.output()), 60_000), 'show followed the guest\'s next scanout');
    const second = await screenShows(weston, 'gradient-xor-inverted');
    t.is(second.bad, 0, `after the reboot, the same window shows boot 2's picture (${second.shots} screenshot(s))`);
    const left = (): OurBuffer[] => ourBuffers().filter((b) => b.creatorPid === sidecar.child.pid && bootOne.some((o) => o.ino === b.ino));
    // show gave them back once weston released them (its log says so); weston itself may keep
    // the last of them imported a while (see below), nothing else may.
    t.true(await until(() => onlyWeston(left()), 30_000), `boot 1's buffers are held by weston alone, or by nobody: ${JSON.stringify(left())}, held by ${holders(left().map((b) => b.ino)).join(', ')}`);
    t.regex(show.output(), /buffer 2 released by the compositor: given back/);

    const beforeKill = show.output().length;
    await qemu.kill();
    t.true(await until(() => /withdrawn \(gone\)[^]*waiting for a surface named "scanout 0"/.test(show!.output().slice(beforeKill)), 30_000), 'QEMU\'s death withdraws the surface; show waits for the next');
    show.child.kill('SIGTERM');
    t.is(await show.exited, 0, 'SIGTERM ends show');
    // Four buffers: at each boot fbcon's framebuffer, then draw-drm's dumb buffer (the sidecar's
    // `replaced`); every frame after that is a commit of the same imported buffer.
    const [, commits, imports] = /: (\d+) commits, (\d+) imports, 1 surfaces followed; ended: aborted/.exec(show.output()) ?? [];
    t.is(Number(imports), 4, 'one import per buffer the guest scanned out');
    t.true(Number(commits) > Number(imports), `the moving frames were commits of the imported buffer (${commits} commits)`);
    t.notRegex(show.output(), /MaxListenersExceededWarning/);
  } finally {
    await qemu?.kill();
    show?.child.kill('SIGTERM');
    sidecar.child.kill('SIGTERM');
  }
  t.is(await sidecar.exited, 0, 'SIGTERM ends the sidecar cleanly');
  t.regex(sidecar.output(), /SIGTERM: withdrawing every surface and exiting/);
  // Measured: weston 14 (headless, kiosk, llvmpipe) keeps buffers it released and the client
  // destroyed imported and mapped (> 20 s, with nothing else to draw; boot 1's dumb buffer after
  // boot 2's two buffers were shown). So what the sidecar made may outlive it only through
  // weston, and must go when weston does.
  const sidecarLeft = (): OurBuffer[] => ourBuffers().filter((b) => b.creatorPid === sidecar.child.pid);
  if (!(await until(() => sidecarLeft().length === 0, 5000))) {
    t.log(`after the sidecar exited, ${sidecarLeft().length} of its buffers live on, held by ${holders(sidecarLeft().map((b) => b.ino)).join(', ')}`);
    t.true(onlyWeston(sidecarLeft()), 'only weston may still hold them');
  }
  await weston.stop();
  t.true(await until(() => sidecarLeft().length === 0, 10_000), `nothing of the sidecar is left in our driver once weston stopped: ${JSON.stringify(sidecarLeft())}`);
  rmSync(dir, { recursive: true, force: true });
});
