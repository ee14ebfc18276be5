// The vhost-user-gpu back end end to end on the guest kernel users run: Debian's 6.1 with its
// virtio-gpu modules, nested under QEMU 10.0 (TCG) with `-device vhost-user-gpu-pci` served by our
// back end in this process, the scanout exported through our udmabuf driver in this VM. One boot
// (~100+ s nested: the kernel's own init dominates), so one test; the GPU guest kernel's faster
// boots carry the reboot and crash checks (vhost-user-gpu-e2e.test.ts).
import test from 'ava';
import { native } from '../../lib/core/native.js';
import { fourccCode } from '../../lib/index.js';
import { gpuGuestBoot } from '../../vm/gpu-guest-boot.js';
import { DRAW_REPORT } from '../../vm/gpu-guest.js';
import { NestedGpuGuest } from './helpers/nested-gpu-guest.js';
import { extraFds, processResources, startPoller } from './helpers/process-resources.js';
import { settledPicture } from './helpers/scanout-pixels.js';

test.serial('Debian 6.1 guest: the scanout dma-buf holds the picture the guest drew, all 1,024,000 pixels; nothing leaks', async (t) => {
  // Built on the host beforehand (test/run-suites.ts, or `node dist/vm/gpu-guest-cli.js`).
  const boot = gpuGuestBoot('6.1', { build: false });
  t.log(`${boot.kernel.version} through ${boot.entry}`);
  await startPoller();
  const baseline = processResources();
  // The guest asks for its picture and, once drawn, waits for the test before rebooting: without
  // that hold it rebooted 2 s after drawing, and on a loaded machine (a CI rehearsal beside other
  // builds) before fbdev's deferred copy reached the scanout: the picture never settled.
  const guest = NestedGpuGuest.start({ boot, noReboot: true, append: ['gpu_guest.ask=1'], log: (l) => t.log(l) });
  try {
    await guest.waitFor(/^gpu-guest: picture\?/, 420_000);
    guest.send('gradient-xor');
    const report = await guest.waitFor(DRAW_REPORT, 120_000);
    t.log(`drawn at ${guest.seconds.toFixed(1)} s, first CREATE_2D at ${((guest.firstCreateMs[0] ?? NaN) / 1000).toFixed(1)} s after QEMU started`);
    t.deepEqual(report.slice(1, 6), ['1280', '800', '5120', 'xrgb8888', 'gradient-xor']);
    // The guest's fbdev copy may land after the report (scanout-pixels.ts settledPicture).
    const { check, compares } = await settledPicture(guest, () => guest.device.scanout(0), 'gradient-xor', 30_000);
    const buffer = guest.device.scanout(0);
    if (!buffer || !check) return t.fail('scanout 0 shows no exported buffer');
    t.log(`${compares} comparison(s) until the dma-buf held the picture`);
    t.is(fourccCode(buffer.fourcc), 'XR24');
    t.deepEqual([buffer.width, buffer.height, buffer.stride, buffer.offset], [1280, 800, 5120, 0]);
    t.is(check.pixels, 1_024_000);
    t.is(check.differing, 0, `first differing pixel: ${JSON.stringify(check.first)}`);
    t.true(processResources().buffers.length >= 1, 'our driver lists the scanout buffer');
    // Then the guest reboots when told; -no-reboot makes that QEMU's clean exit.
    await guest.waitFor(/^gpu-guest: next\?/, 120_000);
    guest.send('reboot');
    t.is(await guest.exited, 0);
    t.deepEqual(guest.warnings.map((w) => w.code), [], 'no warnings from the back end');
  } finally {
    await guest.close();
  }
  const after = processResources();
  t.is(after.fds, baseline.fds, `open fds (extra: ${extraFds(baseline, after).join(', ')})`);
  t.is(after.dmabufFds, baseline.dmabufFds, 'dma-buf fds');
  t.deepEqual(after.buffers, baseline.buffers, 'our driver\'s buffers created by this process');
  t.is(after.lockedKb, baseline.lockedKb, 'locked_vm');
  t.deepEqual(native.pollerStats(), { watches: 0, waits: 0 }, 'no kick fd left watched');
});
