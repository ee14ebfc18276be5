// planSurface (a surface's buffer: page-rounded memfd items and the plane offset) and parseRamfbConfig (QEMU's big-endian etc/ramfb struct).
import test from 'ava';
import { mulberry32 } from '../seeded-random.js';
import { GuestMemory, RAMFB_CONFIG_SIZE, SurfaceError, TranslationError, fourcc, parseRamfbConfig, planSurface, type MemfdItem } from '../../lib/index.js';

const item = (memfd: number, offset: number, size: number): MemfdItem => ({ memfd, offset: BigInt(offset), size: BigInt(size) });

// 256 MiB of RAM at 256 MiB, kept in memfd 10 from offset 2 MiB (so memfd offsets differ from GPAs).
const memory = (): GuestMemory => new GuestMemory([{ gpa: 0x1000_0000, size: 0x1000_0000, memfd: 10, offset: 0x20_0000, name: 'ram' }]);

test('a framebuffer at a page-aligned GPA: plane offset 0, size up to the last line, rounded to pages', (t) => {
  const plan = planSurface(memory(), { gpa: 0x1000_0000 }, { width: 1024, height: 768, stride: 4096, format: 'XR24' });
  t.is(plan.planeOffset, 0);
  t.is(plan.format.code, 'XR24');
  t.is(plan.width, 1024);
  t.is(plan.height, 768);
  t.is(plan.stride, 4096);
  t.is(plan.size, 0x30_0000n);
  t.deepEqual(plan.items, [item(10, 0x20_0000, 0x30_0000)]);

  // 800x600 RG16, stride 1600: 1600 × 599 + 1600 = 960000 bytes → 235 pages (962560).
  const rg16 = planSurface(memory(), { gpa: 0x1010_0000n }, { width: 800, height: 600, stride: 1600, format: fourcc('RG16') });
  t.is(rg16.size, 962560n);
  t.deepEqual(rg16.items, [item(10, 0x30_0000, 962560)]);
});

test('a framebuffer at an unaligned GPA: the plane offset is the in-page offset, items start on the page', (t) => {
  // 640x480 XR24, stride 2560: 0x100 + 2560 × 480 = 1229056 bytes → 301 pages.
  const plan = planSurface(memory(), { gpa: 0x1000_0100 }, { width: 640, height: 480, stride: 2560, format: 'XRGB8888' });
  t.is(plan.planeOffset, 0x100);
  t.is(plan.size, 301n * 4096n);
  t.deepEqual(plan.items, [item(10, 0x20_0000, 301 * 4096)]);
  const shifted = planSurface(memory(), { gpa: 0x1000_0000 }, { width: 640, height: 480, stride: 2560, format: 'XR24', offset: 0x1f00 });
  t.is(shifted.planeOffset, 0xf00);
  t.deepEqual(shifted.items, [item(10, 0x20_1000, 301 * 4096)], '0xf00 + 1228800 bytes need 301 pages from 0x1000');
});

test('the size is decided by the last line\'s end, not stride × height', (t) => {
  // 100 XR24 pixels (400 bytes) per line, stride 4100, 2 lines: the last line ends at 4500 (2
  // pages); stride × height is 8200 (3 pages).
  const plan = planSurface(memory(), { gpa: 0x1000_0000 }, { width: 100, height: 2, stride: 4100, format: 'XR24' });
  t.is(plan.size, 8192n);
  t.deepEqual(plan.items, [item(10, 0x20_0000, 8192)]);
  // One page for a single line at the end of a page: 0xf00 + 256 bytes = exactly 1 page.
  const tail = planSurface(memory(), { gpa: 0x1000_0f00 }, { width: 64, height: 1, stride: 256, format: 'AR24' });
  t.is(tail.planeOffset, 0xf00);
  t.is(tail.size, 4096n);
});

test('bad layouts throw SurfaceErrors', (t) => {
  const mem = memory();
  const at = { gpa: 0x1000_0000 };
  const narrow = t.throws(() => planSurface(mem, at, { width: 1024, height: 768, stride: 4095, format: 'XR24' }), { instanceOf: SurfaceError });
  t.true(narrow?.message.includes('stride 4095'), narrow?.message);
  t.true(narrow?.message.includes('4096 bytes'), narrow?.message);
  for (const width of [0, -1, 1.5, Number.NaN]) {
    const err = t.throws(() => planSurface(mem, at, { width, height: 10, stride: 4096, format: 'XR24' }), { instanceOf: SurfaceError });
    t.true(err?.message.startsWith('width must be a positive integer'), err?.message);
  }
  t.throws(() => planSurface(mem, at, { width: 10, height: 0, stride: 4096, format: 'XR24' }), { instanceOf: SurfaceError, message: /^height/ });
  t.throws(() => planSurface(mem, at, { width: 10, height: 10, stride: 0, format: 'XR24' }), { instanceOf: SurfaceError, message: /^stride/ });
  t.throws(() => planSurface(mem, at, { width: 10, height: 10, stride: 64, format: 'XR24', offset: -1 }), { instanceOf: SurfaceError, message: /^offset/ });
  t.throws(() => planSurface(mem, at, { width: 10, height: 10, stride: 64, format: 'NV12' }), { instanceOf: SurfaceError, message: /unknown DRM format/ });
});

test('scattered backing pages with an offset: only the pages holding pixels, merged where contiguous', (t) => {
  // Backing offsets: [0, 0x1000) at 0x1000_5000, [0x1000, 0x3000) at 0x1000_2000,
  // [0x3000, 0x4000) at 0x1000_9000, [0x4000, 0x5000) at 0x1000_a000.
  const backing = [
    { gpa: 0x1000_5000, length: 0x1000 },
    { gpa: 0x1000_2000, length: 0x2000 },
    { gpa: 0x1000_9000, length: 0x1000 },
    { gpa: 0x1000_a000, length: 0x1000 },
  ];
  // 512 XR24 pixels = 2048 bytes per line, 6 lines from backing offset 0x1800: bytes [0x1800, 0x4800).
  const plan = planSurface(memory(), backing, { width: 512, height: 6, stride: 2048, format: 'XR24', offset: 0x1800 });
  t.is(plan.planeOffset, 0x800);
  t.deepEqual(plan.items, [item(10, 0x20_2000, 0x2000), item(10, 0x20_9000, 0x2000)]);
  t.is(plan.size, 0x4000n);

  // 4 lines: bytes [0x1800, 0x3800) end inside the third entry; the fourth is not needed.
  const shorter = planSurface(memory(), backing, { width: 512, height: 4, stride: 2048, format: 'XR24', offset: 0x1800 });
  t.deepEqual(shorter.items, [item(10, 0x20_2000, 0x2000), item(10, 0x20_9000, 0x1000)]);

  const tooSmall = t.throws(() => planSurface(memory(), backing, { width: 512, height: 8, stride: 2048, format: 'XR24', offset: 0x1800 }), { instanceOf: SurfaceError });
  t.true(tooSmall?.message.includes('up to 0x5800'), tooSmall?.message);
  t.true(tooSmall?.message.includes('only 0x5000 bytes'), tooSmall?.message);
});

test('virtio-gpu mem entries ({addr, length}) plan like iovecs; an empty backing is refused', (t) => {
  const entries = [
    { addr: 0x1000_5000, length: 0x1000 },
    { addr: 0x1000_2000n, length: 0x2000n },
    { addr: 0x1000_9000, length: 0x1000 },
    { addr: 0x1000_a000, length: 0x1000 },
  ];
  const plan = planSurface(memory(), entries, { width: 512, height: 6, stride: 2048, format: 'XR24', offset: 0x1800 });
  t.is(plan.planeOffset, 0x800);
  t.deepEqual(plan.items, [item(10, 0x20_2000, 0x2000), item(10, 0x20_9000, 0x2000)]);
  const hole = [{ addr: 0x1000_0000, length: 0x1000 }, { addr: 0x2000_0000, length: 0x1000 }];
  const err = t.throws(() => planSurface(memory(), hole, { width: 1024, height: 2, stride: 4096, format: 'XR24' }), { instanceOf: TranslationError });
  t.is(err?.iovecIndex, 1);
  t.is(err?.gpa, 0x2000_0000n);
  t.regex(err?.message ?? '', /^backing entry 1 /);
  t.throws(() => planSurface(memory(), [], { width: 1, height: 1, stride: 4, format: 'XR24' }), { instanceOf: SurfaceError, message: /no entries/ });
});

test('limits and RAM errors pass through as TranslationErrors', (t) => {
  const backing = [
    { gpa: 0x1000_5000, length: 0x1000 },
    { gpa: 0x1000_2000, length: 0x1000 },
  ];
  const layout = { width: 1024, height: 2, stride: 4096, format: 'XR24' };
  const listLimit = t.throws(() => planSurface(memory(), backing, layout, { listLimit: 1, sizeLimitBytes: 1n << 30n }), { instanceOf: TranslationError });
  t.is(listLimit?.code, 'ERR_DRIVER_LIMIT');
  t.true(listLimit?.message.includes('list_limit of 1'), listLimit?.message);
  t.deepEqual(planSurface(memory(), backing, layout, { listLimit: 2, sizeLimitBytes: 8192n }).items, [item(10, 0x20_5000, 0x1000), item(10, 0x20_2000, 0x1000)]);
  const sizeLimit = t.throws(() => planSurface(memory(), { gpa: 0x1000_0000 }, layout, { listLimit: 8, sizeLimitBytes: 4096n }), { instanceOf: TranslationError });
  t.is(sizeLimit?.code, 'ERR_DRIVER_LIMIT');
  t.true(sizeLimit?.message.includes('size_limit_mb'), sizeLimit?.message);
  const outside = t.throws(() => planSurface(memory(), { gpa: 0x1fff_f000 }, layout), { instanceOf: TranslationError });
  t.is(outside?.gpa, 0x2000_0000n);
  t.is(outside?.nearestRegion, 'ram');
});

/** A ramfb config as the guest writes it: big-endian u64 addr, u32 fourcc, flags, width, height, stride. */
function ramfbConfig(addr: bigint, format: number, width: number, height: number, stride: number, into = new Uint8Array(RAMFB_CONFIG_SIZE), at = 0): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset + at, RAMFB_CONFIG_SIZE);
  view.setBigUint64(0, addr);
  view.setUint32(8, format);
  view.setUint32(12, 0);
  view.setUint32(16, width);
  view.setUint32(20, height);
  view.setUint32(24, stride);
  return into;
}

test('parseRamfbConfig reads the big-endian struct', (t) => {
  t.is(RAMFB_CONFIG_SIZE, 28);
  const bytes = ramfbConfig(0x1_2345_6000n, fourcc('XR24'), 1024, 768, 4096);
  t.deepEqual([...bytes.subarray(0, 12)], [0, 0, 0, 1, 0x23, 0x45, 0x60, 0, 0x34, 0x32, 0x52, 0x58], 'addr and fourcc big-endian');
  t.deepEqual(parseRamfbConfig(bytes), { gpa: 0x1_2345_6000n, width: 1024, height: 768, stride: 4096, format: 0x34325258 });
  t.deepEqual(parseRamfbConfig(ramfbConfig(0x4000_0000n, fourcc('RG16'), 800, 600, 0)), { gpa: 0x4000_0000n, width: 800, height: 600, stride: 1600, format: 0x36314752 }, 'stride 0 means packed');
  t.is(parseRamfbConfig(ramfbConfig(0n, fourcc('RG24'), 100, 1, 0)).stride, 300);
});

test('parseRamfbConfig reads a subarray with a non-zero byteOffset', (t) => {
  const backing = new Uint8Array(64).fill(0xee);
  ramfbConfig(0xfedc_b000n, fourcc('AR24'), 640, 480, 2560, backing, 5);
  t.deepEqual(parseRamfbConfig(backing.subarray(5, 5 + RAMFB_CONFIG_SIZE)), { gpa: 0xfedc_b000n, width: 640, height: 480, stride: 2560, format: 0x34325241 });
});

test('parseRamfbConfig errors', (t) => {
  for (const length of [0, 27, 29]) {
    const err = t.throws(() => parseRamfbConfig(new Uint8Array(length)), { instanceOf: SurfaceError });
    t.true(err?.message.includes(`not ${length}`), err?.message);
  }
  const unknown = t.throws(() => parseRamfbConfig(ramfbConfig(0x1000n, fourcc('NV12'), 64, 64, 0)), { instanceOf: SurfaceError });
  t.true(unknown?.message.includes("'NV12'"), unknown?.message);
  const noMode = t.throws(() => parseRamfbConfig(ramfbConfig(0x1000n, fourcc('XR24'), 0, 768, 0)), { instanceOf: SurfaceError });
  t.true(noMode?.message.includes('0x768'), noMode?.message);
  t.throws(() => parseRamfbConfig(ramfbConfig(0x1000n, fourcc('XR24'), 1024, 0, 0)), { instanceOf: SurfaceError });
  t.throws(() => parseRamfbConfig(ramfbConfig(0n, 0, 0, 0, 0)), { instanceOf: SurfaceError }, 'an all-zero config (no mode set)');
});

test('randomized: a surface window over a page-aligned backing is the pages holding its bytes, merged', (t) => {
  const PAGE = 4096;
  // Two memfds; the second region continues the first's memfd range, the third is another memfd.
  const regions = [
    { gpa: 0x10_0000, size: 64 * PAGE, memfd: 1, offset: 0 },
    { gpa: 0x100_0000, size: 64 * PAGE, memfd: 1, offset: 64 * PAGE },
    { gpa: 0x200_0000, size: 64 * PAGE, memfd: 2, offset: 0 },
  ];
  const mem = new GuestMemory(regions);
  const pageOf = (gpa: number): { memfd: number; offset: number } => {
    const r = regions.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size)!;
    return { memfd: r.memfd, offset: r.offset + gpa - r.gpa };
  };
  const allPages = regions.flatMap((r) => Array.from({ length: r.size / PAGE }, (_, i) => r.gpa + i * PAGE));
  const rand = mulberry32(0x5a11ace);
  let checked = 0;
  for (let c = 0; c < 2000; c++) {
    // A backing of runs of 1-4 pages, often following each other in guest-physical space.
    const backing: { addr: number; length: number }[] = [];
    let next = allPages[Math.floor(rand() * allPages.length)]!;
    for (let pages = 0; pages < 24; ) {
      const run = 1 + Math.floor(rand() * 4);
      if (rand() < 0.4 || !allPages.includes(next)) next = allPages[Math.floor(rand() * (allPages.length - 4))]!;
      const runPages = Array.from({ length: run }, (_, k) => next + k * PAGE).filter((g, k, list) => allPages.includes(g) && (k === 0 || g === list[k - 1]! + PAGE));
      backing.push({ addr: next, length: runPages.length * PAGE });
      next += runPages.length * PAGE;
      pages += runPages.length;
    }
    const total = backing.reduce((sum, e) => sum + e.length, 0);
    const bpp = 4;
    const width = 1 + Math.floor(rand() * 200);
    const stride = width * bpp + Math.floor(rand() * 64) * 4;
    const offset = Math.floor(rand() * 3 * PAGE);
    const height = Math.max(1, Math.floor((total - offset - width * bpp) / stride) + 1 - Math.floor(rand() * 3));
    const end = offset + (height - 1) * stride + width * bpp;
    if (end > total) continue;
    // Reference: backing page p is at guest page backingPages[p]; the buffer is backing pages
    // offset / PAGE .. (end - 1) / PAGE, each translated, merged where memfd-contiguous.
    const backingPages = backing.flatMap((e) => Array.from({ length: e.length / PAGE }, (_, k) => e.addr + k * PAGE));
    const expected: { memfd: number; offset: number; size: number }[] = [];
    for (let p = Math.floor(offset / PAGE); p <= Math.floor((end - 1) / PAGE); p++) {
      const at = pageOf(backingPages[p]!);
      const prev = expected[expected.length - 1];
      if (prev && prev.memfd === at.memfd && prev.offset + prev.size === at.offset) prev.size += PAGE;
      else expected.push({ ...at, size: PAGE });
    }
    const plan = planSurface(mem, backing, { width, height, stride, format: 'XR24', offset });
    const what = `case ${c}: offset ${offset}, ${width}x${height} stride ${stride}, backing ${JSON.stringify(backing)}`;
    t.is(plan.planeOffset, offset % PAGE, what);
    t.deepEqual(plan.items, expected.map((e) => item(e.memfd, e.offset, e.size)), what);
    checked++;
  }
  t.true(checked > 1500, `${checked} windows checked`);
  t.log(`${checked} windows checked`);
});

test('an impossible mode from the guest (ramfb 0xffffffff x 0xffffffff) is a SurfaceError naming it', (t) => {
  const bytes = new Uint8Array(RAMFB_CONFIG_SIZE);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 0x1000_0000n);
  view.setUint32(8, fourcc('XR24'));
  view.setUint32(16, 0xffff_ffff);
  view.setUint32(20, 0xffff_ffff);
  const fb = parseRamfbConfig(bytes);
  const err = t.throws(() => planSurface(memory(), { gpa: fb.gpa }, fb), { instanceOf: SurfaceError });
  t.regex(err?.message ?? '', /4294967295x4294967295 surface with stride 17179869180 .*impossible mode/);
});
