// Buffers whose pages overlap, mapped for DMA at the same time: one buffer listing a page twice
// (upstream's CREATE_LIST allows it), two buffers over the same pages, and a buffer in CPU
// access (mapped for our misc device) imported by another device. All are legitimate: a dma-buf
// is a view of memory user space chose. DMA-API debugging tracks every active mapping's first
// cacheline across all devices and reports a second one as "overlapping mappings aren't
// supported" unless it was made with DMA_ATTR_SKIP_CPU_SYNC; found by the ioctl fuzzer on the
// debug kernel. The driver maps with that attribute and does the same cache maintenance
// explicitly. On the debug kernel the runner's kernel-log check is what fails here.
import test from 'ava';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { gemClose, openVgem, primeImport } from './helpers/importers.js';
import { fillPattern, mapShared, memfd, native, openDevice, PAGE, syncBuffer, unmapView } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);

function setup(): { dev: number; fd: number; drm: number; close: () => void } {
  const dev = openDevice(ourDevice().path);
  const fd = memfd(4 * PAGE);
  const view = mapShared(fd, 4 * PAGE);
  fillPattern(view, 7);
  unmapView(view);
  const drm = openVgem();
  return { dev, fd, drm, close: () => [drm, fd, dev].forEach((f) => native.close(f)) };
}
const item = (fd: number, page: number, pages: number): abi.CreateItem => ({ memfd: fd, offset: BigInt(page * PAGE), size: BigInt(pages * PAGE) });
const createList = (dev: number, items: abi.CreateItem[]): number => native.ioctl(dev, abi.UDMABUF_CREATE_LIST, abi.encodeCreateList(abi.UDMABUF_FLAGS_CLOEXEC, items));

test.serial('ours: a buffer listing the same page twice imports into vgem', (t) => {
  const { dev, fd, drm, close } = setup();
  const buf = createList(dev, [item(fd, 0, 1), item(fd, 1, 1), item(fd, 0, 1)]);
  const handle = primeImport(drm, buf);
  t.true(handle > 0);
  gemClose(drm, handle);
  native.close(buf);
  close();
});

test.serial('ours: two buffers over the same pages imported into vgem together', (t) => {
  const { dev, fd, drm, close } = setup();
  const a = createList(dev, [item(fd, 0, 2)]);
  const b = createList(dev, [item(fd, 0, 4)]);
  const ha = primeImport(drm, a);
  const hb = primeImport(drm, b);
  t.not(ha, hb);
  gemClose(drm, hb);
  gemClose(drm, ha);
  for (const f of [b, a]) native.close(f);
  close();
});

test.serial('ours: a buffer in CPU access imported into vgem, and CPU access while imported', (t) => {
  const { dev, fd, drm, close } = setup();
  const a = createList(dev, [item(fd, 0, 2)]);
  t.is(syncBuffer(a, dmaBufAbi.DMA_BUF_SYNC_START | dmaBufAbi.DMA_BUF_SYNC_RW), 'OK');
  const handle = primeImport(drm, a);
  t.is(syncBuffer(a, dmaBufAbi.DMA_BUF_SYNC_END | dmaBufAbi.DMA_BUF_SYNC_RW), 'OK');
  const b = createList(dev, [item(fd, 0, 1)]);
  t.is(syncBuffer(b, dmaBufAbi.DMA_BUF_SYNC_START | dmaBufAbi.DMA_BUF_SYNC_READ), 'OK');
  t.is(syncBuffer(b, dmaBufAbi.DMA_BUF_SYNC_END | dmaBufAbi.DMA_BUF_SYNC_READ), 'OK');
  gemClose(drm, handle);
  for (const f of [b, a]) native.close(f);
  close();
});

checkBaseline();
