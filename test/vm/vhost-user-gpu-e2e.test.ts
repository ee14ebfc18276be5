// The vhost-user-gpu back end end to end, with every part real: a nested QEMU 10.0 (TCG) with
// `-device vhost-user-gpu-pci` served by our back end in this process, the guest's own Linux
// virtio-gpu driver (the GPU guest kernel, vm/gpu-guest-kernel.ts: ~30 s per nested boot instead
// of Debian's ~100 s), its fbdev drawn by draw-fb, and the scanout exported through our udmabuf
// driver in this VM. Two QEMUs in all, three guest boots:
//   QEMU A: boot 1 draws picture 1, `reboot -f`, boot 2 draws picture 2, then QEMU is killed;
//   QEMU B (a fresh back end): boot 3 draws picture 1, powers off.
// The tests share QEMU A, in order: each says which step it takes, and one that finds the step
// before it failed fails too (never skipped).
import test, { type ExecutionContext } from 'ava';
import { fourccCode } from '../../lib/index.js';
import { gpuGuestBoot, TINY, type GpuGuestBoot } from '../../vm/gpu-guest-boot.js';
import { DRAW_REPORT, type Picture } from '../../vm/gpu-guest.js';
import { isLive } from './helpers/dmabuf-debugfs.js';
import { NestedGpuGuest } from './helpers/nested-gpu-guest.js';
import { assertBackToBaseline, extraFds, pinnedPages, processResources, startPoller, type ProcessResources } from './helpers/process-resources.js';
import { settledPicture } from './helpers/scanout-pixels.js';

/** Per prompt: a tiny-kernel boot reaches init in ~20 s nested; slack for a loaded machine. */
const BOOT_MS = 240_000;
const ASK = ['gpu_guest.ask=1'];
/** How long after draw-fb's report the guest's fbdev copy may take to land (scanout-pixels.ts). */
const SETTLE_MS = 30_000;

let boot: GpuGuestBoot;
let baseline: ProcessResources;
let qemuA: NestedGpuGuest | null = null;
/** What this process held while boot 1 showed its picture. */
let showing1: { resources: ProcessResources; inodes: number[] } | null = null;
let boot2Shown = false;

test.before(async () => {
  await startPoller();
  // Built on the host beforehand (test/run-suites.ts, or `node dist/vm/gpu-guest-cli.js`): the
  // cache is read-only here.
  boot = gpuGuestBoot(TINY, { build: false });
  baseline = processResources();
});

test.after.always(async () => {
  await qemuA?.close();
});

/** Answers the boot's prompt with `picture`, waits for draw-fb's report, checks the scanout's dma-buf. */
async function drawAndCheck(t: ExecutionContext, guest: NestedGpuGuest, picture: Picture): Promise<number[]> {
  await guest.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
  const asked = guest.seconds;
  guest.send(picture);
  const report = await guest.waitFor(DRAW_REPORT, 120_000);
  t.log(`${picture}: prompt at ${asked.toFixed(1)} s, drawn at ${guest.seconds.toFixed(1)} s, first CREATE_2D of this boot at ${((guest.firstCreateMs.at(-1) ?? NaN) / 1000).toFixed(1)} s after QEMU started`);
  t.deepEqual(report.slice(1, 6), ['1280', '800', '5120', 'xrgb8888', picture], 'draw-fb drew the picture asked for');
  const { check, compares } = await settledPicture(guest, () => guest.device.scanout(0), picture, SETTLE_MS);
  const buffer = guest.device.scanout(0);
  if (!buffer || !check) return t.fail('scanout 0 shows no exported buffer') as never;
  t.log(`${picture}: ${compares} comparison(s) until the dma-buf held the picture`);
  t.is(fourccCode(buffer.fourcc), 'XR24');
  t.deepEqual([buffer.width, buffer.height, buffer.stride, buffer.offset], [1280, 800, 5120, 0]);
  t.is(check.pixels, 1_024_000);
  t.is(check.differing, 0, `first differing pixel: ${JSON.stringify(check.first)}`);
  const mine = processResources();
  // The buffer is our driver's (its debugfs list has it, created by this process), pinned once.
  t.true(mine.buffers.length >= 1, 'our driver lists the scanout buffer');
  t.is(mine.dmabufFds, baseline.dmabufFds + 1, 'one dma-buf fd: the scanout\'s');
  t.deepEqual(guest.warnings.map((w) => w.code), [], 'no warnings from the back end');
  return mine.buffers.map((b) => b.ino);
}

test.serial('QEMU A, boot 1: the scanout dma-buf holds the picture the guest drew, all 1,024,000 pixels', async (t) => {
  qemuA = NestedGpuGuest.start({ boot, append: ASK, log: (l) => t.log(`A ${l}`) });
  const inodes = await drawAndCheck(t, qemuA, 'gradient-xor');
  showing1 = { resources: processResources(), inodes };
});

test.serial('QEMU A, guest reboot: boot 2 shows the second picture; no fd, buffer or pinned page of boot 1 is left', async (t) => {
  if (!qemuA || !showing1) return t.fail('boot 1 did not show its picture');
  qemuA.log = (l) => t.log(`A ${l}`);
  await qemuA.waitFor(/^gpu-guest: next\?/, 60_000);
  qemuA.send('reboot');
  await drawAndCheck(t, qemuA, 'gradient-xor-inverted');
  const now = processResources();
  for (const ino of showing1.inodes) t.false(isLive(ino), `boot 1's dma-buf ${ino} was released`);
  t.false(now.buffers.some((b) => showing1!.inodes.includes(b.ino)), 'our driver no longer lists boot 1\'s buffers');
  // The same state as boot 1 at the same step: one connection, one memory table, one scanout.
  t.is(now.fds, showing1.resources.fds, `open fds as while boot 1 showed (extra: ${extraFds(showing1.resources, now).join(', ')})`);
  t.is(now.buffers.length, showing1.resources.buffers.length, 'as many buffers as boot 1 had');
  t.is(pinnedPages(now), pinnedPages(showing1.resources), 'as many pinned pages as boot 1 had');
  t.is(now.lockedKb, showing1.resources.lockedKb, 'locked_vm as while boot 1 showed');
  t.is(qemuA.firstCreateMs.length, 2, 'each boot created its framebuffer anew');
  boot2Shown = true;
});

test.serial('QEMU A killed while showing, then QEMU B on a fresh back end: its picture, and nothing leaks', async (t) => {
  if (!qemuA || !boot2Shown) return t.fail('QEMU A did not reach its second picture');
  qemuA.log = (l) => t.log(`A ${l}`);
  await qemuA.waitFor(/^gpu-guest: next\?/, 60_000);
  t.truthy(qemuA.device.scanout(0), 'the scanout is exported when QEMU dies');
  await qemuA.close();
  qemuA = null;
  assertBackToBaseline(t, baseline, 'after QEMU A was killed');

  const qemuB = NestedGpuGuest.start({ boot, append: ASK, noReboot: true, log: (l) => t.log(`B ${l}`) });
  try {
    await drawAndCheck(t, qemuB, 'gradient-xor');
    await qemuB.waitFor(/^gpu-guest: next\?/, 60_000);
    qemuB.send('reboot'); // -no-reboot: QEMU exits
    t.is(await qemuB.exited, 0, 'QEMU B exited on the guest\'s reboot');
  } finally {
    await qemuB.close();
  }
  assertBackToBaseline(t, baseline, 'after QEMU B exited');
});
