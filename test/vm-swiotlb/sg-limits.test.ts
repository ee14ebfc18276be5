// Importers get sg tables within their own DMA limits: segments no longer than the device's
// max segment size and mapping size, never across its segment boundary. Booted with
// swiotlb=force every mapping bounces, and swiotlb cannot map a segment over 256 KiB: a
// buffer over 2 MiB huge pages must still import into vgem (PRIME maps the table) and allow
// CPU access (the driver maps it for its own device). The suite runs this folder in its own VM,
// booted with `--append swiotlb=force`; on any other boot the file fails at once.
import test from 'ava';
import { readFileSync } from 'node:fs';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import { baselineGuard } from '../vm/helpers/baseline.js';
import { ourDevice } from '../vm/helpers/devices.js';
import { inodeOf, isLive } from '../vm/helpers/dmabuf-debugfs.js';
import { gemClose, openVgem, primeImport } from '../vm/helpers/importers.js';
import { reserveHugePages } from '../vm/helpers/memory.js';
import { attempt, create, fillPattern, mapShared, memfd, native, openDevice, syncBuffer, unmapView } from '../vm/helpers/raw.js';

if (!/\bswiotlb=force\b/.test(readFileSync('/proc/cmdline', 'utf8'))) {
  throw new Error('test/vm-swiotlb needs a guest booted with swiotlb=force: guest-dmabuf-vm --append swiotlb=force -- …');
}
const serial = test.serial;
const HUGE = 2 << 20;
reserveHugePages(8);
const checkBaseline = baselineGuard(test);

for (const [what, hugetlb] of [['hugetlb 2 MiB', true], ['shmem 4 KiB', false]] as const) {
  serial(`swiotlb=force: vgem imports a 4 MiB buffer over ${what} pages`, (t) => {
    const dev = openDevice(ourDevice().path);
    const drm = openVgem();
    const fd = memfd(4 * HUGE, undefined, hugetlb);
    const source = mapShared(fd, 4 * HUGE);
    fillPattern(source, 3);
    const buf = create(dev, { memfd: fd, offset: HUGE, size: 2 * HUGE });
    const ino = inodeOf(buf);
    let handle = 0;
    t.is(attempt(() => (handle = primeImport(drm, buf))), 'OK', 'PRIME import (attach + map through swiotlb)');
    if (handle) gemClose(drm, handle);
    native.close(buf);
    t.false(isLive(ino));
    unmapView(source);
    for (const f of [fd, drm, dev]) native.close(f);
  });

  serial(`swiotlb=force: CPU access to a 4 MiB buffer over ${what} pages`, (t) => {
    const dev = openDevice(ourDevice().path);
    const fd = memfd(4 * HUGE, undefined, hugetlb);
    const buf = create(dev, { memfd: fd, offset: 0, size: 2 * HUGE });
    const { DMA_BUF_SYNC_START: START, DMA_BUF_SYNC_END: END, DMA_BUF_SYNC_RW: RW } = dmaBufAbi;
    t.deepEqual([syncBuffer(buf, START | RW), syncBuffer(buf, END | RW)], ['OK', 'OK']);
    for (const f of [buf, fd, dev]) native.close(f);
  });
}

checkBaseline();
