// The vhost-user-gpu back end under a guest program that controls what reaches the device: draw-drm
// (vm/gpu-guest/draw-drm.c) shows a DRM dumb buffer on the guest's virtio-gpu and, command by
// command, draws into it, transfers one rectangle of it (DIRTYFB), animates it, or destroys it
// (RESOURCE_UNREF). A nested QEMU 10.0 with the GPU guest kernel, as in vhost-user-gpu-e2e.test.ts;
// two QEMUs, one per mode, each booted once:
//   QEMU C (zero copy): the picture and the moving picture's last frame; pixels the guest writes
//     are shown without any transfer (the scanout is the guest's memory); an UNREF while a holder
//     keeps the scanout's dma-buf is answered only after the holder lets go (wait-for-free).
//   QEMU D (copy-on-transfer): pixels the guest writes are not shown until transferred, and only
//     the transferred rectangle changes.
// The tests of one QEMU share it, in order; one that finds the step before it failed fails too.
import test, { type ExecutionContext } from 'ava';
import { fstatSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { native } from '../../lib/core/native.js';
import { DmaBuf } from '../../lib/kernel/dma-buf.js';
import { fourccCode } from '../../lib/index.js';
import { Command, Response } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { gpuGuestBoot, TINY, type GpuGuestBoot } from '../../vm/gpu-guest-boot.js';
import { DRM_MOVED, DRM_SHOWN, drawnPixel } from '../../vm/gpu-guest.js';
import { isLive } from './helpers/dmabuf-debugfs.js';
import { drmCommand, until } from './helpers/draw-drm.js';
import { NestedGpuGuest, type NestedGpuGuestOptions } from './helpers/nested-gpu-guest.js';
import { assertBackToBaseline, processResources, startPoller, type ProcessResources } from './helpers/process-resources.js';
import { settledPicture, type Expected } from './helpers/scanout-pixels.js';

const BOOT_MS = 240_000;
/** A command's report; `run`/`move` frames take ~0.1–1 s each nested. */
const COMMAND_MS = 120_000;
const SETTLE_MS = 30_000;
/** How long the holder keeps the buffer after the device has closed its own fd. */
const HOLD_MS = 4000;
const WIDTH = 1280;
const HEIGHT = 800;
/** The rectangle QEMU D's guest transfers: x, y, width, height. */
const RECT = [100, 50, 300, 200] as const;

let boot: GpuGuestBoot;
let baseline: ProcessResources;
let qemuC: NestedGpuGuest | null = null;
let qemuD: NestedGpuGuest | null = null;
let cShown = false;
let dShown = false;

test.before(async () => {
  await startPoller();
  boot = gpuGuestBoot(TINY, { build: false });
  baseline = processResources();
});

test.after.always(async () => {
  await qemuC?.close();
  await qemuD?.close();
});

/** Boots a guest that runs draw-drm, waits for it to be ready. */
async function startDrm(t: ExecutionContext, name: string, device: NestedGpuGuestOptions['device']): Promise<NestedGpuGuest> {
  const guest = NestedGpuGuest.start({ boot, append: ['gpu_guest.ask=1'], noReboot: true, device, log: (l) => t.log(`${name} ${l}`) });
  await guest.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
  guest.send('drm');
  await guest.waitFor(/^draw-drm: ready$/, COMMAND_MS);
  return guest;
}


/** The scanout against `expected`, every pixel: once it settled (the guest's flushes), or right now. */
async function assertShows(t: ExecutionContext, guest: NestedGpuGuest, expected: Expected, what: string, when: 'settled' | 'now' = 'settled'): Promise<void> {
  const flushes = when === 'settled' ? guest : { flushes: 0, waitForFlush: async () => false };
  const { check, compares } = await settledPicture(flushes, () => guest.device.scanout(0), expected, SETTLE_MS);
  if (!check) return t.fail(`${what}: scanout 0 shows no exported buffer`);
  t.is(check.pixels, WIDTH * HEIGHT, what);
  t.is(check.differing, 0, `${what}: ${check.differing} pixels differ after ${compares} comparison(s), the first ${JSON.stringify(check.first)}`);
}


const unrefs = (guest: NestedGpuGuest): number => guest.answered.filter((c) => c.type === Command.RESOURCE_UNREF).length;

test.serial('QEMU C, zero copy: a dumb buffer\'s scanout holds its picture, then the last frame of the moving picture', async (t) => {
  qemuC = await startDrm(t, 'C', { mode: 'zero-copy', waitForFreeTimeoutMs: 120_000 });
  const shown = await drmCommand(qemuC, 'show gradient-xor', DRM_SHOWN, (l) => t.log(l));
  t.deepEqual(shown.slice(1, 4), [`${WIDTH}`, `${HEIGHT}`, `${WIDTH * 4}`]);
  await assertShows(t, qemuC, 'gradient-xor', 'the picture');
  const buffer = qemuC.device.scanout(0)!;
  t.is(fourccCode(buffer.fourcc), 'XR24');
  const moved = await drmCommand(qemuC, 'move 6', DRM_MOVED, (l) => t.log(l));
  t.is(moved[3], 'moving-5');
  t.log(`6 frames in ${moved[2]} s nested`);
  await assertShows(t, qemuC, 'moving-5', 'the moving picture\'s last frame');
  t.is(qemuC.device.stats.bytesCopied, 0, 'zero copy copies nothing');
  t.deepEqual(qemuC.warnings.map((w) => w.code), []);
  cShown = true;
});

test.serial('QEMU C, zero copy: what the guest writes is shown before any transfer (the scanout is its memory)', async (t) => {
  if (!qemuC || !cShown) return t.fail('QEMU C did not show its picture');
  qemuC.log = (l) => t.log(`C ${l}`);
  const flushes = await qemuC.quietFlushes(2_000);
  await drmCommand(qemuC, 'draw gradient-xor-inverted', /^draw-drm: drew picture gradient-xor-inverted$/, (l) => t.log(l));
  // No waiting for a flush: the pixels are there the moment the guest's writes are.
  await assertShows(t, qemuC, 'gradient-xor-inverted', 'the pixels written, not transferred', 'now');
  t.is(qemuC.flushes, flushes, 'the guest flushed nothing');
});

test.serial('QEMU C, wait-for-free: an UNREF while a holder keeps the scanout\'s dma-buf is answered only after the holder lets go', async (t) => {
  if (!qemuC || !cShown) return t.fail('QEMU C did not show its picture');
  qemuC.log = (l) => t.log(`C ${l}`);
  const guest = qemuC;
  const shown = guest.device.scanout(0);
  if (!shown) return t.fail('nothing shown');
  const holder = DmaBuf.adopt(native.dup(shown.fd));
  const ino = fstatSync(holder.fd).ino;
  const unrefsBefore = unrefs(guest);
  const withHolder = processResources().dmabufFds;
  await drmCommand(guest, 'destroy', /^draw-drm: destroyed$/, (l) => t.log(l));
  // The device closes its own fd when the UNREF arrives, then waits for the holder's.
  t.true(await until(() => processResources().dmabufFds === withHolder - 1, COMMAND_MS), 'the device let go of its fd: the UNREF arrived');
  await sleep(HOLD_MS);
  t.is(unrefs(guest), unrefsBefore, `no UNREF answered while the holder kept the buffer ${HOLD_MS} ms`);
  t.true(isLive(ino), 'the buffer is alive: the holder has it');
  const releasedAt = performance.now() - guest.started;
  holder.close();
  t.true(await until(() => unrefs(guest) > unrefsBefore, 30_000), 'the UNREF is answered once the holder let go');
  const answer = guest.answered.filter((c) => c.type === Command.RESOURCE_UNREF).at(-1)!;
  t.is(answer.response, Response.OK_NODATA);
  t.true(answer.ms >= releasedAt, 'answered after the release');
  t.log(`UNREF answered ${(answer.ms - releasedAt).toFixed(0)} ms after the holder closed its fd`);
  t.false(isLive(ino), 'the buffer is gone');
  t.is(guest.device.stats.waitsForFree, 1);
  t.is(guest.device.stats.waitForFreeTimeouts, 0);
  t.deepEqual(guest.warnings.map((w) => w.code), []);
  // The guest goes on: draw-drm exits, fbcon takes the display back.
  await drmCommand(guest, 'quit', /^draw-drm: quit$/, (l) => t.log(l));
  await guest.waitFor(/^gpu-guest: next\?/, COMMAND_MS);
  guest.send('poweroff');
  t.is(await guest.exited, 0, 'QEMU exited on the guest\'s reboot (-no-reboot)');
  await guest.close();
  qemuC = null;
  assertBackToBaseline(t, baseline, 'after QEMU C');
});

test.serial('QEMU D, copy-on-transfer: the scanout changes only where the guest transferred', async (t) => {
  qemuD = await startDrm(t, 'D', { mode: 'copy-on-transfer' });
  await drmCommand(qemuD, 'show gradient-xor', DRM_SHOWN, (l) => t.log(l));
  await assertShows(t, qemuD, 'gradient-xor', 'the picture, transferred whole');
  dShown = true;
  await drmCommand(qemuD, 'draw gradient-xor-inverted', /^draw-drm: drew picture gradient-xor-inverted$/, (l) => t.log(l));
  await sleep(1000);
  await assertShows(t, qemuD, 'gradient-xor', 'written but not transferred: not shown', 'now');
  const copied = qemuD.device.stats.bytesCopied;
  const [rx, ry, rw, rh] = RECT;
  await drmCommand(qemuD, `dirty ${rx} ${ry} ${rw} ${rh}`, /^draw-drm: dirtied /, (l) => t.log(l));
  const inRect = (x: number, y: number): boolean => x >= rx && x < rx + rw && y >= ry && y < ry + rh;
  const partly = (x: number, y: number): number => drawnPixel(x, y, inRect(x, y) ? 'gradient-xor-inverted' : 'gradient-xor');
  await assertShows(t, qemuD, partly, 'the transferred rectangle inverted, the rest as before');
  t.is(qemuD.device.stats.bytesCopied - copied, rw * rh * 4, 'only the rectangle was copied');
  t.deepEqual(qemuD.warnings.map((w) => w.code), []);
});

test.serial('QEMU D: the guest powers off; nothing of either QEMU is left', async (t) => {
  if (!qemuD || !dShown) return t.fail('QEMU D did not show its picture');
  qemuD.log = (l) => t.log(`D ${l}`);
  await drmCommand(qemuD, 'quit', /^draw-drm: quit$/, (l) => t.log(l));
  await qemuD.waitFor(/^gpu-guest: next\?/, COMMAND_MS);
  qemuD.send('poweroff');
  t.is(await qemuD.exited, 0);
  await qemuD.close();
  qemuD = null;
  assertBackToBaseline(t, baseline, 'after QEMU D');
});
