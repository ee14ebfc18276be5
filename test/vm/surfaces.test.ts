// Guest surfaces on the real drivers: the bytes of an exported virtio-gpu resource or
// framebuffer are the guest-physical bytes its scatter list names, with the fourcc, stride and
// plane offset an importer needs.
import test from 'ava';
import {
  CreateError,
  drmFormats,
  exportFramebuffer,
  exportVirtioGpuResource,
  GuestMemory,
  Memfd,
  TranslationError,
  Udmabuf,
  unmap,
  VIRTIO_GPU_FORMATS,
  virtioGpuFormat,
  type ExportedSurface,
} from '../../lib/index.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, ourDevice, withParam } from './helpers/devices.js';
import { GuestRam, MiB } from './helpers/guest-ram.js';
import { mulberry32 } from '../seeded-random.js';

const PAGE = 4096;
const checkBaseline = baselineGuard(test);

/** The pixel bytes a surface shows, line by line, read through its dma-buf. */
function surfaceLines(surface: ExportedSurface, lineBytes: number): Buffer {
  const view = surface.dmabuf.map();
  try {
    const { offset, stride } = surface.planes[0];
    return Buffer.concat(Array.from({ length: surface.height }, (_, y) => Buffer.from(view.subarray(offset + y * stride, offset + y * stride + lineBytes))));
  } finally {
    unmap(view);
  }
}

/**
 * A backing of `pages` pages scattered over all of guest RAM: runs of 1 to 4 adjacent pages
 * in shuffled order, always including the run that crosses from the last page below the PCI
 * hole to the first page at 4 GiB (adjacent in the memfd, not in guest-physical space).
 */
function scatteredBacking(ram: GuestRam, pages: number, next: () => number): { addr: number; length: number }[] {
  const all = ram.pages();
  const runs: { addr: number; length: number }[] = [
    { addr: ram.lowEnd - 2 * PAGE, length: 2 * PAGE },
    { addr: 4 * 2 ** 30, length: 2 * PAGE },
  ];
  const used = new Set([ram.lowEnd - 2 * PAGE, ram.lowEnd - PAGE, 4 * 2 ** 30, 4 * 2 ** 30 + PAGE]);
  let count = 4;
  while (count < pages) {
    const run = Math.min(1 + Math.floor(next() * 4), pages - count);
    const start = Math.floor(next() * (all.length - run));
    const addrs = all.slice(start, start + run);
    if (addrs.some((a) => used.has(a)) || addrs[run - 1]! - addrs[0]! !== (run - 1) * PAGE) continue;
    addrs.forEach((a) => used.add(a));
    runs.push({ addr: addrs[0]!, length: run * PAGE });
    count += run;
  }
  // Shuffle the runs but keep the crossing pair adjacent and in order.
  const [low, high, ...rest] = runs;
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [rest[i], rest[j]] = [rest[j]!, rest[i]!];
  }
  rest.splice(Math.floor(next() * rest.length), 0, low!, high!);
  return rest;
}

test.serial('a scattered virtio-gpu backing exports the guest-physical bytes it names, in order', (t) => {
  using ram = new GuestRam(8 * MiB, 8 * MiB, 4 * MiB);
  for (const device of devicesUnderTest()) {
    using dev = Udmabuf.open(device.path);
    const next = mulberry32(0xc0ffee);
    for (let round = 0; round < 12; round++) {
      const width = 64 + Math.floor(next() * 200);
      const height = 16 + Math.floor(next() * 64);
      const format = 2; // B8G8R8X8: XRGB8888
      const stride = width * 4;
      const pages = Math.ceil((stride * height) / PAGE);
      const entries = scatteredBacking(ram, pages, next);
      using surface = exportVirtioGpuResource(dev, ram.memory, { resourceId: round + 1, format, width, height, entries });
      const guest = Buffer.concat(entries.map((e) => ram.read(e.addr, e.length))).subarray(0, stride * height);
      t.true(surfaceLines(surface, stride).equals(guest), `${device.label} round ${round}: ${entries.length} runs, ${width}x${height}`);
      t.is(surface.dmabuf.size, BigInt(pages * PAGE), `${device.label} round ${round}: whole pages, no more`);
      t.deepEqual(surface.planes, [{ offset: 0, stride }]);
    }
  }
});

test.serial('a blob resource with an offset and an explicit stride shows the right window of its backing', (t) => {
  using ram = new GuestRam(4 * MiB, 4 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  const next = mulberry32(7);
  const entries = scatteredBacking(ram, 64, next);
  const [width, height, stride, offset] = [100, 40, 512, 3 * PAGE + 256];
  using surface = exportVirtioGpuResource(dev, ram.memory, { resourceId: 9, format: 67, width, height, stride, offset, entries });
  const backing = Buffer.concat(entries.map((e) => ram.read(e.addr, e.length)));
  const expected = Buffer.concat(Array.from({ length: height }, (_, y) => backing.subarray(offset + y * stride, offset + y * stride + width * 4)));
  t.true(surfaceLines(surface, width * 4).equals(expected));
  t.is(surface.planes[0].offset, 256, 'the window starts 256 bytes into its first page');
  t.is(surface.fourcc, 0x34324241, 'R8G8B8A8 (67) is DRM_FORMAT_ABGR8888');
  const needed = offset + (height - 1) * stride + width * 4;
  t.is(surface.dmabuf.size, BigInt(Math.ceil(needed / PAGE) * PAGE - 3 * PAGE), 'only the pages the window touches');
});

/** DRM_FORMAT_* values from include/uapi/drm/drm_fourcc.h, written out: the expected values
 * must not come from the table under test. */
const DRM_FOURCC: Record<string, number> = {
  XRGB8888: 0x34325258, ARGB8888: 0x34325241, XBGR8888: 0x34324258, ABGR8888: 0x34324241,
  BGRX8888: 0x34325842, BGRA8888: 0x34324142, RGBX8888: 0x34325852, RGBA8888: 0x34324152,
  RGB565: 0x36314752, BGR565: 0x36314742, RGB888: 0x34324752, BGR888: 0x34324742,
  XRGB2101010: 0x30335258, ARGB2101010: 0x30335241, XBGR2101010: 0x30334258, ABGR2101010: 0x30334241,
};
/** virtio-gpu 2D format → DRM format with the same bytes in memory on a little-endian host. */
const VIRTIO_TO_DRM: Record<number, string> = {
  1: 'ARGB8888', 2: 'XRGB8888', 3: 'BGRA8888', 4: 'BGRX8888', 67: 'ABGR8888', 68: 'RGBX8888', 121: 'RGBA8888', 134: 'XBGR8888',
};

test.serial('every virtio-gpu format exports with its fourcc and QEMU stride; every DRM format with its stride', (t) => {
  using ram = new GuestRam(4 * MiB, 4 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  const entries = [{ addr: ram.lowEnd - 64 * PAGE, length: 64 * PAGE }];
  t.deepEqual(Object.keys(VIRTIO_GPU_FORMATS).map(Number).sort((a, b) => a - b), Object.keys(VIRTIO_TO_DRM).map(Number), 'the 2D formats of the virtio spec');
  for (const [code, drmName] of Object.entries(VIRTIO_TO_DRM)) {
    const width = 67; // 268 bytes a line: not a multiple of 64
    using surface = exportVirtioGpuResource(dev, ram.memory, { resourceId: Number(code), format: Number(code), width, height: 9, entries });
    t.is(surface.fourcc, DRM_FOURCC[drmName], `virtio-gpu format ${code} is ${drmName}`);
    t.is(virtioGpuFormat(Number(code)).fourcc, DRM_FOURCC[drmName]);
    t.is(surface.planes[0].stride, 268, `virtio-gpu format ${code}: width × 4`);
    t.true(surfaceLines(surface, 268).equals(ram.read(entries[0]!.addr, 268 * 9)));
  }
  t.deepEqual(drmFormats.map((f) => f.name).sort(), Object.keys(DRM_FOURCC).sort(), 'the formats the library knows');
  for (const format of drmFormats) {
    const width = 33;
    const stride = Math.ceil((width * format.bytesPerPixel) / 64) * 64 + 64;
    const gpa = 4 * 2 ** 30 + 5 * PAGE + 96;
    using surface = exportFramebuffer(dev, ram.memory, { gpa, width, height: 7, stride, format: format.code });
    t.is(surface.fourcc, DRM_FOURCC[format.name], `${format.code} is DRM_FORMAT_${format.name}`);
    t.is(surface.planes[0].stride, stride, `${format.code}: the given stride`);
    t.is(surface.planes[0].offset, 96, `${format.code}: plane offset`);
    const lineBytes = width * format.bytesPerPixel;
    const expected = Buffer.concat(Array.from({ length: 7 }, (_, y) => ram.read(gpa + y * stride, lineBytes)));
    t.true(surfaceLines(surface, lineBytes).equals(expected), `${format.code}: bytes`);
  }
});

test.serial('framebuffers at unaligned addresses get the plane offset; the last line, not stride × height, sets the size', (t) => {
  using ram = new GuestRam(4 * MiB, 4 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  const [width, height, stride] = [300, 50, 1280];
  for (const delta of [0, 4, 0x100, 0xff0, 0xffc]) {
    const gpa = 4 * 2 ** 30 + 16 * PAGE + delta;
    using surface = exportFramebuffer(dev, ram.memory, { gpa, width, height, stride, format: 'XR24' });
    t.is(surface.planes[0].offset, delta, `gpa +${delta}`);
    const lastLineEnd = delta + (height - 1) * stride + width * 4;
    t.is(surface.dmabuf.size, BigInt(Math.ceil(lastLineEnd / PAGE) * PAGE), `gpa +${delta}: size`);
    const expected = Buffer.concat(Array.from({ length: height }, (_, y) => ram.read(gpa + y * stride, width * 4)));
    t.true(surfaceLines(surface, width * 4).equals(expected), `gpa +${delta}: bytes`);
  }
  // The last line ends 16 bytes before the DIMM's end (the end of RAM); stride × height would
  // run 64 bytes past it, into a page that is not RAM.
  const gpa = ram.dimmGpa + 2 * MiB - ((height - 1) * stride + width * 4) - 16;
  using atEnd = exportFramebuffer(dev, ram.memory, { gpa, width, height, stride, format: 'XR24' });
  t.is(atEnd.planes[0].offset, gpa % PAGE);
});

test.serial('a backing that strays into a hole, or needs more items than list_limit, is refused by name', async (t) => {
  using ram = new GuestRam(4 * MiB, 4 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  const hole = t.throws(
    () => exportVirtioGpuResource(dev, ram.memory, { resourceId: 1, format: 2, width: 64, height: 256, entries: [{ addr: 4 * 2 ** 30, length: 8 * PAGE }, { addr: ram.lowEnd, length: 8 * PAGE }] }),
    { instanceOf: TranslationError },
  );
  t.is(hole?.iovecIndex, 1);
  t.regex(hole?.message ?? '', /backing entry 1 .*0x80000000.*ram below 4g/);
  const pages = Array.from({ length: 40 }, (_, i) => ({ addr: 4 * 2 ** 30 + 2 * i * PAGE, length: PAGE })); // every other page: no merging
  await withParam(ourDevice(), 'list_limit', '32', () => {
    const err = t.throws(() => exportVirtioGpuResource(dev, ram.memory, { resourceId: 2, format: 2, width: 64, height: 40 * 16, entries: pages }), { instanceOf: TranslationError });
    t.is(err?.code, 'ERR_DRIVER_LIMIT');
    t.regex(err?.message ?? '', /40 memfd items.*list_limit of 32.*\/sys\/module\/guest_udmabuf\/parameters\/list_limit/);
    // Over the limit and wrong in itself: the error is what is wrong with the memory, which
    // raising list_limit would not fix.
    using unsealed = Memfd.create('unsealed', 1 * MiB);
    const memory = new GuestMemory([{ gpa: 0, size: 1 * MiB, memfd: unsealed, offset: 0 }]);
    const spread = Array.from({ length: 40 }, (_, i) => ({ addr: 2 * i * PAGE, length: PAGE }));
    const sealErr = t.throws(() => exportVirtioGpuResource(dev, memory, { resourceId: 3, format: 2, width: 64, height: 40 * 16, entries: spread }), { instanceOf: CreateError });
    t.regex(sealErr?.message ?? '', /lacks the 'shrink' seal/);
  });
});

checkBaseline();
