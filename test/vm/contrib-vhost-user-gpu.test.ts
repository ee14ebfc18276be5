// QEMU's own vhost-user-gpu back end (contrib/vhost-user-gpu from the QEMU 10.0 packages) on
// /dev/udmabuf: ours on 6.1 (Debian's kernel has none), the in-tree driver on 6.12, for
// comparison. A real nested QEMU and guest (the GPU guest kernel, draw-drm on a dumb buffer);
// between QEMU and contrib a transparent tap (helpers/vhost-user-tap.ts) keeps a dup of each
// DMABUF_SCANOUT's dma-buf, which QEMU with -display none drops at once, so its pixels can be
// checked. Contrib makes a memfd per resource, copies every TRANSFER_TO_HOST_2D into it and
// shows a udmabuf of that memfd (udmabuf/CONSUMERS.md §2).
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { contribVhostUserGpu, findQemu } from '../../qemu-glue/qemu-binaries.js';
import { gpuGuestBoot, TINY, vhostUserGpuQemuArgs } from '../../vm/gpu-guest-boot.js';
import { DRM_SHOWN, drawnPixel } from '../../vm/gpu-guest.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { drmCommand } from './helpers/draw-drm.js';
import { NestedQemu } from './helpers/nested-qemu.js';
import { extraFds, processResources, startPoller } from './helpers/process-resources.js';
import { settledPicture, type Expected, type PixelSource } from './helpers/scanout-pixels.js';
import { VhostUserGpuTap } from './helpers/vhost-user-tap.js';

const BOOT_MS = 240_000;
const COMMAND_MS = 120_000;
const SETTLE_MS = 30_000;
/** Ours is /dev/udmabuf when the kernel has no udmabuf of its own (6.1). */
const oursIsUdmabuf = basename(process.env.GUEST_DMABUF_DEVICE ?? '') === 'udmabuf';
const expectedExporter = oursIsUdmabuf ? 'guest_udmabuf' : 'udmabuf';

test.before(startPoller);


test(`contrib vhost-user-gpu takes its udmabuf path on /dev/udmabuf (${expectedExporter}): the guest's picture reaches QEMU's display as its dma-buf, transferred rectangles only, and nothing is left`, async (t) => {
  const before = processResources();
  const buffersBefore = ourBuffers().length;
  const dir = mkdtempSync(join(tmpdir(), 'contrib-gpu-'));
  const backendPath = join(dir, 'contrib.sock');
  const output: string[] = [];
  const contrib = spawn(contribVhostUserGpu(), [`--socket-path=${backendPath}`], { env: { ...process.env, G_MESSAGES_DEBUG: 'all' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const contribExited = new Promise<number | null>((resolve) => contrib.on('exit', resolve));
  for (const stream of [contrib.stdout, contrib.stderr]) stream.on('data', (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean)));
  let tap: VhostUserGpuTap | null = null;
  let qemu: NestedQemu | null = null;
  try {
    for (let i = 0; !existsSync(backendPath); i++) {
      if (i > 300 || contrib.exitCode !== null) return t.fail(`contrib never listened: ${output.join('\n')}`);
      await sleep(100);
    }
    tap = VhostUserGpuTap.listen(join(dir, 'tap.sock'), backendPath);
    const boot = gpuGuestBoot(TINY, { build: false });
    const binary = findQemu('10.0');
    qemu = new NestedQemu({
      binary: binary.binary,
      args: [...binary.extraArgs, ...vhostUserGpuQemuArgs({ socketPath: join(dir, 'tap.sock'), image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, 'gpu_guest.ask=1'] })],
      env: binary.env,
      logOnce: [/console doesn't support GL!/],
      log: (l) => t.log(l),
    });
    await qemu.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
    qemu.send('drm');
    await qemu.waitFor(/^draw-drm: ready$/, COMMAND_MS);
    t.true(output.some((l) => l.includes('Using experimental udmabuf backend')), `contrib took its udmabuf path: ${output.filter((l) => l.includes('Using')).join('; ')}`);

    const shown = (): PixelSource | null => {
      const s = tap!.scanouts.get(0);
      return s ? { fd: s.dmabuf.fd, width: s.width, height: s.height, stride: s.stride, offset: 0 } : null;
    };
    const assertShows = async (expected: Expected, what: string): Promise<void> => {
      const { check, compares } = await settledPicture(tap!, shown, expected, SETTLE_MS);
      if (!check) return void t.fail(`${what}: no DMABUF_SCANOUT reached QEMU`);
      t.is(check.pixels, 1280 * 800, what);
      t.is(check.differing, 0, `${what}: ${check.differing} pixels differ after ${compares} comparison(s), the first ${JSON.stringify(check.first)}`);
    };

    await drmCommand(qemu, 'show gradient-xor', DRM_SHOWN, (l) => t.log(l));
    await assertShows('gradient-xor', 'the picture, through contrib\'s copy');
    const tapped = tap.scanouts.get(0)!;
    t.is(tapped.dmabuf.info().exporter, expectedExporter, 'the scanout dma-buf was made by the /dev/udmabuf driver');
    t.deepEqual([tapped.width, tapped.height, tapped.stride], [1280, 800, 5120]);
    if (oursIsUdmabuf) {
      const contribs = ourBuffers().filter((b) => b.creatorPid === contrib.pid);
      t.true(contribs.length >= 1, 'our debugfs lists contrib\'s buffer by its pid');
      t.log(`our driver's buffers created by contrib: ${JSON.stringify(contribs)}`);
    }

    // What contrib's copy shows: only the rectangle transferred.
    await drmCommand(qemu, 'draw gradient-xor-inverted', /^draw-drm: drew picture/, (l) => t.log(l));
    await drmCommand(qemu, 'dirty 100 50 300 200', /^draw-drm: dirtied /, (l) => t.log(l));
    const inRect = (x: number, y: number): boolean => x >= 100 && x < 400 && y >= 50 && y < 250;
    await assertShows((x, y) => drawnPixel(x, y, inRect(x, y) ? 'gradient-xor-inverted' : 'gradient-xor'), 'the transferred rectangle inverted, the rest as before');

    await drmCommand(qemu, 'quit', /^draw-drm: quit$/, (l) => t.log(l));
    await qemu.waitFor(/^gpu-guest: next\?/, COMMAND_MS);
    qemu.send('poweroff');
    t.is(await qemu.exited, 0, 'QEMU exited on the guest\'s reboot (-no-reboot)');
    const code = await Promise.race([contribExited, sleep(30_000).then(() => 'still running')]);
    t.log(`contrib after QEMU left: ${String(code)}`);
    t.log(`GPU socket requests from contrib: ${[...new Set(tap.gpuRequests)].join(', ')}`);
  } finally {
    await qemu?.kill();
    await tap?.close();
    contrib.kill('SIGKILL');
    await contribExited;
    rmSync(dir, { recursive: true, force: true });
  }
  if (oursIsUdmabuf) t.is(ourBuffers().length, buffersBefore, 'none of contrib\'s buffers is left in our driver');
  const after = processResources();
  t.is(after.fds, before.fds, `no fd left in this process (extra: ${extraFds(before, after).join(', ')})`);
});
