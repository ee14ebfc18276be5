// Other drivers import our buffers: vgem through DRM PRIME (attach + map_dma_buf), vivid by
// capturing into one with V4L2_MEMORY_DMABUF (vb2-vmalloc maps it with vmap): its test pattern must
// land in the memfd. Run against every device under test.
import test from 'ava';
import { baselineGuard } from './helpers/baseline.js';
import { attachedDevices, inodeOf, isLive } from './helpers/dmabuf-debugfs.js';
import { devicesUnderTest } from './helpers/devices.js';
import { captureFormat, captureInto, gemClose, openVgem, openVividCapture, primeImport, stopCapture } from './helpers/importers.js';
import { create, mapShared, memfd, native, openDevice, PAGE, unmapView } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const roundUp = (n: number): number => Math.ceil(n / PAGE) * PAGE;

for (const dut of devicesUnderTest()) {
  const name = (what: string): string => `${dut.label}: ${what}`;

  test.serial(name('vgem imports the dma-buf via PRIME, holds it, and detaches on GEM_CLOSE'), (t) => {
    const dev = openDevice(dut.path);
    const drm = openVgem();
    const fd = memfd(64 * PAGE);
    const buf = create(dev, { memfd: fd, offset: 0, size: 64 * PAGE });
    const ino = inodeOf(buf);
    const handle = primeImport(drm, buf);
    t.true(handle > 0);
    t.is(primeImport(drm, buf), handle, 'a second import finds the same GEM object');
    t.deepEqual(attachedDevices(ino), ['vgem'], 'attached once, by the vgem device');
    native.close(buf);
    t.true(isLive(ino), 'vgem keeps the buffer alive after our fd is closed');
    t.deepEqual(attachedDevices(ino), ['vgem'], 'still attached to vgem');
    gemClose(drm, handle);
    t.false(isLive(ino), 'GEM_CLOSE drops the last reference: released');
    native.close(fd);
    native.close(drm);
    native.close(dev);
  });

  test.serial(name('vivid captures its test pattern into the dma-buf and it appears in the memfd'), (t) => {
    const dev = openDevice(dut.path);
    const video = openVividCapture();
    const format = captureFormat(video);
    const size = roundUp(format.sizeImage);
    const fd = memfd(size);
    const guest = mapShared(fd, size);
    guest.fill(0xee);
    const buf = create(dev, { memfd: fd, offset: 0, size });
    const ino = inodeOf(buf);
    const used = captureInto(video, buf, size);
    t.is(used, format.sizeImage);
    t.true(isLive(ino));

    const frame = guest.subarray(0, format.sizeImage);
    const untouched = frame.reduce((n, b) => n + (b === 0xee ? 1 : 0), 0);
    t.true(untouched < frame.length / 20, `${untouched} of ${frame.length} bytes still hold the fill`);
    // vivid's default pattern is colour bars: along one line near the bottom (below the text
    // overlay) the bars' centres differ in luma.
    t.is(format.fourcc, 'YUYV');
    const row = Math.floor(format.height * 0.9) * format.bytesPerLine;
    const lumas = Array.from({ length: 8 }, (_, bar) => frame[row + 2 * Math.floor(((bar + 0.5) * format.width) / 8)]!);
    t.log(`${format.width}x${format.height} ${format.fourcc}; bar lumas ${lumas.join(' ')}`);
    t.true(new Set(lumas).size >= 6, 'at least six distinct bars');
    t.true(lumas[0]! > lumas[7]!, 'the first bar (white) is brighter than the last (black)');

    stopCapture(video);
    native.close(video);
    native.close(buf);
    t.false(isLive(ino), 'released once vivid freed its queue and our fd is closed');
    unmapView(guest);
    native.close(fd);
    native.close(dev);
  });
}

checkBaseline();
