// GuestMemory: QEMU RAM maps (q35, pc, aarch64 virt, NUMA backends and DIMMs), translating scatter lists into merged memfd items, the errors, and a seeded randomized check against a page-by-page reference.
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import { GuestDmabufError, GuestMemory, Memfd, TranslationError, type GuestRange, type MemfdItem, type RamRegion } from '../../lib/index.js';
import { mulberry32 } from '../seeded-random.js';

const P = 4096;
const MiB = 2 ** 20;
const GiB = 2 ** 30;

const item = (memfd: number, offset: number, size: number): MemfdItem => ({ memfd, offset: BigInt(offset), size: BigInt(size) });
/** The TranslationError `fn` throws (anything else, or nothing, fails the test). */
const translationError = (fn: () => unknown): TranslationError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof TranslationError) return e;
    throw new Error(`expected a TranslationError, got ${String(e)}`);
  }
  throw new Error('expected a TranslationError, nothing was thrown');
};

// q35 with -m 6G: ram >= 0xb0000000, so lowmem is 0x80000000; the other 4 GiB start at 4 GiB.
const q35 = (): GuestMemory =>
  new GuestMemory([
    { gpa: 4 * GiB, size: 4 * GiB, memfd: 10, offset: 2 * GiB, name: 'ram-above-4g' },
    { gpa: 0, size: 2 * GiB, memfd: 10, offset: 0, name: 'ram-below-4g' },
  ]);

// pc (i440fx) with -m 4G and gigabyte alignment: 3 GiB below 4 GiB, 1 GiB at 4 GiB.
const pc = (): GuestMemory =>
  new GuestMemory([
    { gpa: 0, size: 3 * GiB, memfd: 20, offset: 0, name: 'pc.ram-low' },
    { gpa: 4 * GiB, size: 1 * GiB, memfd: 20, offset: 3 * GiB, name: 'pc.ram-high' },
  ]);

// aarch64 virt: RAM starts at 1 GiB.
const virt = (): GuestMemory => new GuestMemory([{ gpa: 0x4000_0000, size: 2 * GiB, memfd: 30, offset: 0, name: 'mach-virt.ram' }]);

// q35, 4 GiB over two NUMA backends (mem0 below 4 GiB, mem1 above), then device memory from
// 6 GiB with two hot-plugged DIMMs and a hole between them.
const numa = (): GuestMemory =>
  new GuestMemory([
    { gpa: 0, size: 2 * GiB, memfd: 40, offset: 0, name: 'mem0' },
    { gpa: 4 * GiB, size: 2 * GiB, memfd: 41, offset: 0, name: 'mem1' },
    { gpa: 0x1_8000_0000, size: 512 * MiB, memfd: 42, offset: 0, name: 'dimm1' },
    { gpa: 0x1_c000_0000, size: 512 * MiB, memfd: 43, offset: 0, name: 'dimm2' },
  ]);

test('q35 6 GiB: regions sorted, size, regionAt', (t) => {
  const mem = q35();
  t.is(mem.size, 6n * 2n ** 30n);
  t.deepEqual(mem.regions, [
    { gpa: 0n, size: 0x8000_0000n, memfd: 10, offset: 0n, name: 'ram-below-4g' },
    { gpa: 0x1_0000_0000n, size: 0x1_0000_0000n, memfd: 10, offset: 0x8000_0000n, name: 'ram-above-4g' },
  ]);
  t.is(mem.regionAt(0x7fff_ffff)?.name, 'ram-below-4g');
  t.is(mem.regionAt(0x8000_0000), undefined, 'the PCI hole is not RAM');
  t.is(mem.regionAt(0xffff_ffff), undefined);
  t.deepEqual(mem.regionAt(0x1_0000_0000n), { gpa: 0x1_0000_0000n, size: 0x1_0000_0000n, memfd: 10, offset: 0x8000_0000n, name: 'ram-above-4g' });
  t.is(mem.regionAt(0x1_ffff_ffff)?.name, 'ram-above-4g');
  t.is(mem.regionAt(0x2_0000_0000), undefined, 'above all RAM');
});

test('q35 6 GiB: ranges below and above 4 GiB land at the backend offsets', (t) => {
  const mem = q35();
  t.deepEqual(mem.translate([{ gpa: 0x1000, length: 0x3000 }]), [item(10, 0x1000, 0x3000)]);
  t.deepEqual(mem.translate([{ gpa: 4 * GiB + 0x5000, length: 0x2000 }]), [item(10, 2 * GiB + 0x5000, 0x2000)]);
  t.deepEqual(mem.translate([{ gpa: 0x1_ffff_f000, length: 0x1000 }]), [item(10, 6 * GiB - 0x1000, 0x1000)], 'the last page of RAM');
});

test('q35 6 GiB: the last page below 2 GiB then 4 GiB is one item (contiguous in the memfd)', (t) => {
  const mem = q35();
  t.deepEqual(
    mem.translate([
      { gpa: 0x7fff_f000, length: 0x1000 },
      { gpa: 0x1_0000_0000, length: 0x2000 },
    ]),
    [item(10, 0x7fff_f000, 0x3000)],
  );
});

test('q35 6 GiB: a range running from RAM below 4 GiB into the PCI hole names the iovec and region', (t) => {
  const mem = q35();
  const err = translationError(() =>
    mem.translate([
      { gpa: 0x1000, length: 0x1000 },
      { gpa: 0x7fff_f000, length: 0x2000 },
    ]),
  );
  t.is(err.code, 'ERR_NOT_GUEST_RAM');
  t.is(err.iovecIndex, 1);
  t.is(err.gpa, 0x8000_0000n);
  t.is(err.nearestRegion, 'ram-below-4g');
  t.regex(err.message, /iovec 1 /);
  t.true(err.message.includes('0x80000000'), err.message);
  t.true(err.message.includes('0x7ffff000'), 'names where the range started');
  t.true(err.message.includes('ram-below-4g'), err.message);
});

test('q35 6 GiB: holes — PCI hole, above all RAM, running past the end', (t) => {
  const mem = q35();
  const lapic = translationError(() => mem.translate([{ gpa: 0xfee0_0000, length: 0x1000 }]));
  t.is(lapic.iovecIndex, 0);
  t.is(lapic.gpa, 0xfee0_0000n);
  t.is(lapic.nearestRegion, 'ram-above-4g', '0xfee00000 is nearer 4 GiB than 2 GiB');
  t.true(lapic.message.includes('0xfee00000'), lapic.message);
  t.true(lapic.message.includes('is not guest RAM'), lapic.message);

  const above = translationError(() => mem.translate([{ gpa: 0x1000, length: 0x1000 }, { gpa: 0x1000, length: 0x1000 }, { gpa: 0x2_0000_0000, length: 0x1000 }]));
  t.is(above.iovecIndex, 2);
  t.is(above.gpa, 0x2_0000_0000n);
  t.is(above.nearestRegion, 'ram-above-4g');

  const past = translationError(() => mem.translate([{ gpa: 0x1_ffff_f000, length: 0x2000 }]));
  t.is(past.iovecIndex, 0);
  t.is(past.gpa, 0x2_0000_0000n);
  t.true(past.message.includes('runs out of guest RAM'), past.message);
});

test('pc 4 GiB (gigabyte-aligned split at 3 GiB)', (t) => {
  const mem = pc();
  t.is(mem.size, 4n * 2n ** 30n);
  t.deepEqual(mem.translate([{ gpa: 0xbfff_e000, length: 0x2000 }, { gpa: 4 * GiB, length: GiB }]), [item(20, 0xbfff_e000, GiB + 0x2000)]);
  t.deepEqual(mem.translate([{ gpa: 4 * GiB + 0x3000, length: 0x1000 }]), [item(20, 3 * GiB + 0x3000, 0x1000)]);
  for (const gpa of [0xc000_0000, 0xe000_0000]) {
    const err = translationError(() => mem.translate([{ gpa, length: 0x1000 }]));
    t.is(err.gpa, BigInt(gpa));
    t.is(err.iovecIndex, 0);
  }
  t.is(translationError(() => mem.translate([{ gpa: 0xc000_0000, length: 0x1000 }])).nearestRegion, 'pc.ram-low');
});

test('aarch64 virt: RAM at 1 GiB; below it is MMIO; reversed iovecs keep their order', (t) => {
  const mem = virt();
  t.deepEqual(mem.translate([{ gpa: 0x4000_0000, length: 0x1000 }]), [item(30, 0, 0x1000)]);
  const uart = translationError(() => mem.translate([{ gpa: 0x0900_0000, length: 0x1000 }]));
  t.is(uart.iovecIndex, 0);
  t.is(uart.nearestRegion, 'mach-virt.ram');
  const before = translationError(() => mem.translate([{ gpa: 0x3fff_f000, length: 0x2000 }]));
  t.is(before.gpa, 0x3fff_f000n, 'the range starts outside RAM');
  t.deepEqual(
    mem.translate([
      { gpa: 0x4010_0000, length: 0x1000 },
      { gpa: 0x4000_0000, length: 0x1000 },
    ]),
    [item(30, 0x10_0000, 0x1000), item(30, 0, 0x1000)],
  );
  t.deepEqual(
    mem.translate([
      { gpa: 0x4000_1000, length: 0x1000 },
      { gpa: 0x4000_0000, length: 0x1000 },
    ]),
    [item(30, 0x1000, 0x1000), item(30, 0, 0x1000)],
    'pages in reverse order are not merged',
  );
});

test('two NUMA backends plus hot-plugged DIMMs: different memfds are never merged', (t) => {
  const mem = numa();
  t.is(mem.size, 5n * 2n ** 30n);
  t.deepEqual(
    mem.translate([
      { gpa: 0x7fff_f000, length: 0x1000 },
      { gpa: 4 * GiB, length: 0x1000 },
    ]),
    [item(40, 0x7fff_f000, 0x1000), item(41, 0, 0x1000)],
  );
  t.deepEqual(mem.translate([{ gpa: 0x1_7fff_f000, length: 0x2000 }]), [item(41, 0x7fff_f000, 0x1000), item(42, 0, 0x1000)], 'one range over mem1 into dimm1');
  t.deepEqual(mem.translate([{ gpa: 0x1_c000_2000, length: 0x1000 }]), [item(43, 0x2000, 0x1000)]);
  const between = translationError(() => mem.translate([{ gpa: 0x1_0000_0000, length: 0x1000 }, { gpa: 0x1_9fff_f000, length: 0x2000 }]));
  t.is(between.iovecIndex, 1);
  t.is(between.gpa, 0x1_a000_0000n);
  t.is(between.nearestRegion, 'dimm1');
  t.true(between.message.includes('dimm1'), between.message);
  t.is(translationError(() => mem.translate([{ gpa: 0x1_b000_0000, length: 0x1000 }])).nearestRegion, 'dimm2', 'nearer the next DIMM');
  t.is(translationError(() => mem.translate([{ gpa: 0x1_e000_0000, length: 0x1000 }])).nearestRegion, 'dimm2');
  t.is(mem.regionAt(0x1_a000_0000), undefined);
});

test('merging needs the same memfd (identity) and contiguous offsets', (t) => {
  const numbers = new GuestMemory([
    { gpa: 0, size: 0x1000, memfd: 1, offset: 0 },
    { gpa: 0x1000, size: 0x1000, memfd: 2, offset: 0x1000 },
    { gpa: 0x2000, size: 0x1000, memfd: 2, offset: 0x3000 },
  ]);
  t.deepEqual(numbers.translate([{ gpa: 0, length: 0x3000 }]), [item(1, 0, 0x1000), item(2, 0x1000, 0x1000), item(2, 0x3000, 0x1000)]);

  using a = Memfd.create('gm-a', 0x4000);
  using b = Memfd.create('gm-b', 0x4000);
  const objects = new GuestMemory([
    { gpa: 0, size: 0x2000, memfd: a, offset: 0 },
    { gpa: 0x2000, size: 0x2000, memfd: a, offset: 0x2000 },
    { gpa: 0x4000, size: 0x2000, memfd: b, offset: 0x2000 }, // b's offsets continue a's, but it is another memfd
  ]);
  const items = objects.translate([{ gpa: 0, length: 0x6000 }]);
  t.is(items.length, 2);
  t.is(items[0]!.memfd, a);
  t.is(items[0]!.size, 0x4000n);
  t.is(items[1]!.memfd, b);
  t.is(items[1]!.offset, 0x2000n);
});

test('page alignment: unaligned pieces that join are fine, a new unaligned start or end is refused', (t) => {
  const mem = q35();
  t.deepEqual(
    mem.translate([
      { gpa: 0x1000, length: 0x800 },
      { gpa: 0x1800, length: 0x800 },
    ]),
    [item(10, 0x1000, 0x1000)],
  );
  const start = translationError(() =>
    mem.translate([
      { gpa: 0x1000, length: 0x1000 },
      { gpa: 0x5800, length: 0x800 },
    ]),
  );
  t.is(start.code, 'ERR_INVALID_RANGE');
  t.is(start.iovecIndex, 1);
  t.is(start.gpa, 0x5800n);
  t.true(start.message.includes('iovec 1 starts at gpa 0x5800'), start.message);
  t.true(start.message.includes('does not continue the previous iovec'), start.message);
  t.is(start.nearestRegion, 'ram-below-4g', 'the region the unaligned GPA is in');

  const end = translationError(() =>
    mem.translate([
      { gpa: 0x1000, length: 0x800 },
      { gpa: 0x5000, length: 0x1000 },
    ]),
  );
  t.is(end.iovecIndex, 0);
  t.is(end.gpa, 0x1800n);
  t.true(end.message.includes('iovec 0 ends at gpa 0x1800'), end.message);
  t.is(end.nearestRegion, 'ram-below-4g');

  t.deepEqual(
    mem.translate(
      [
        { gpa: 0x1234, length: 0x10 },
        { gpa: 0x5000, length: 0x3 },
        { gpa: 0x5003, length: 0x5 },
      ],
      { pageAligned: false },
    ),
    [item(10, 0x1234, 0x10), item(10, 0x5000, 0x8)],
  );
});

test('empty lists, zero lengths and bigints', (t) => {
  const mem = q35();
  const empty = translationError(() => mem.translate([]));
  t.is(empty.code, 'ERR_INVALID_RANGE');
  t.regex(empty.message, /empty/);
  const zero = translationError(() =>
    mem.translate([
      { gpa: 0x1000, length: 0x1000 },
      { gpa: 0x2000, length: 0 },
    ]),
  );
  t.is(zero.iovecIndex, 1);
  t.is(zero.gpa, 0x2000n);
  t.true(zero.message.includes('iovec 1 (gpa 0x2000) has length 0'), zero.message);

  const big = new GuestMemory([{ gpa: 0x1_0000_0000n, size: 0x1000_0000n, memfd: 7, offset: 0x2000n }]);
  t.deepEqual(big.translate([{ gpa: 0x1_0000_1000n, length: 0x2000n }]), [item(7, 0x3000, 0x2000)]);
  t.deepEqual(mem.translate([{ gpa: 0x1_0000_0000n, length: 0x1000n }]), [item(10, 2 * GiB, 0x1000)]);
  const huge = t.throws(() => mem.translate([{ gpa: 2n ** 60n, length: 0x1000n }]), { instanceOf: GuestDmabufError });
  t.regex(huge?.message ?? '', /^iovec 0 .*2\^53/);
});

test('driver limits: list_limit and size_limit_mb, after merging', (t) => {
  const mem = q35();
  const scattered: GuestRange[] = [
    { gpa: 0x1000, length: 0x1000 },
    { gpa: 0x3000, length: 0x1000 },
    { gpa: 0x5000, length: 0x1000 },
  ];
  const path = '/sys/module/guest_udmabuf/parameters';
  const list = translationError(() => mem.translate(scattered, { limits: { listLimit: 2, sizeLimitBytes: 64n << 20n, parametersPath: path } }));
  t.is(list.code, 'ERR_DRIVER_LIMIT');
  t.is(list.iovecIndex, undefined);
  t.true(list.message.includes('needs 3 memfd items'), list.message);
  t.true(list.message.includes('list_limit of 2'), list.message);
  t.true(list.message.includes(`${path}/list_limit`), list.message);
  const noPath = translationError(() => mem.translate(scattered, { limits: { listLimit: 1, sizeLimitBytes: 64n << 20n } }));
  t.true(noPath.message.includes('the module parameter list_limit'), noPath.message);
  t.is(mem.translate(scattered, { limits: { listLimit: 3, sizeLimitBytes: 64n << 20n } }).length, 3, 'exactly at the limit');
  const contiguous = [0, 1, 2, 3].map((i) => ({ gpa: 0x1000 * (i + 1), length: 0x1000 }));
  t.deepEqual(mem.translate(contiguous, { limits: { listLimit: 1, sizeLimitBytes: 1n << 20n } }), [item(10, 0x1000, 0x4000)], 'merged items count');

  const size = translationError(() => mem.translate([{ gpa: 0, length: MiB + P }], { limits: { listLimit: 1024, sizeLimitBytes: 1n << 20n, parametersPath: path } }));
  t.is(size.code, 'ERR_DRIVER_LIMIT');
  t.true(size.message.includes('size_limit_mb 1'), size.message);
  t.true(size.message.includes(`${MiB + P} bytes`), size.message);
  t.true(size.message.includes(`${path}/size_limit_mb to at least 2`), size.message);
  t.is(mem.translate([{ gpa: 0, length: MiB }], { limits: { listLimit: 1, sizeLimitBytes: 1n << 20n } })[0]!.size, BigInt(MiB));
  const pcSize = translationError(() => pc().translate([{ gpa: 4 * GiB, length: GiB }], { limits: { listLimit: 1, sizeLimitBytes: 64n << 20n } }));
  t.true(pcSize.message.includes('size_limit_mb 64'), pcSize.message);
  t.true(pcSize.message.includes('at least 1024'), pcSize.message);
});

test('constructor errors: empty, overlapping, unaligned, zero size, past the memfd end', (t) => {
  t.regex(translationError(() => new GuestMemory([])).message, /at least one RAM region/);
  const overlap = translationError(
    () =>
      new GuestMemory([
        { gpa: 0, size: 0x4000, memfd: 1, offset: 0, name: 'big' },
        { gpa: 0x8000, size: 0x1000, memfd: 1, offset: 0x8000, name: 'far' },
        { gpa: 0x2000, size: 0x1000, memfd: 2, offset: 0, name: 'inside' },
      ]),
  );
  t.true(overlap.message.includes('overlap'), overlap.message);
  t.true(overlap.message.includes('big') && overlap.message.includes('inside'), overlap.message);
  t.true(overlap.message.includes('0x0-0x3fff'), overlap.message);
  t.notThrows(() => new GuestMemory([{ gpa: 0, size: 0x1000, memfd: 1, offset: 0 }, { gpa: 0x1000, size: 0x1000, memfd: 1, offset: 0x1000 }]), 'touching is not overlapping');

  for (const [field, region] of [
    ['gpa', { gpa: 0x800, size: 0x1000, memfd: 1, offset: 0 }],
    ['size', { gpa: 0, size: 0x1800, memfd: 1, offset: 0 }],
    ['offset', { gpa: 0, size: 0x1000, memfd: 1, offset: 0x10 }],
  ] as const) {
    const err = translationError(() => new GuestMemory([region]));
    t.true(err.message.includes(`RAM region 0 (region 0) ${field}`), err.message);
    t.true(err.message.includes('not page-aligned'), err.message);
  }
  for (const size of [0, 0n]) {
    t.regex(translationError(() => new GuestMemory([{ gpa: 0, size, memfd: 1, offset: 0, name: 'empty' }])).message, /RAM region 0 \(empty\) size is 0/);
  }

  using memfd = Memfd.create('gm-end', 0x2000);
  t.notThrows(() => new GuestMemory([{ gpa: 0, size: 0x2000, memfd, offset: 0 }]));
  for (const region of [
    { gpa: 0, size: 0x3000, memfd, offset: 0, name: 'long' },
    { gpa: 0, size: 0x2000, memfd, offset: 0x1000, name: 'long' },
  ] satisfies RamRegion[]) {
    const err = translationError(() => new GuestMemory([region]));
    t.true(err.message.includes('long'), err.message);
    t.true(err.message.includes("past the memfd's end (0x2000)"), err.message);
    t.true(err.message.includes('0x3000'), err.message);
  }
});

// ---- Randomized: translation against a page-by-page (or byte-range) reference ----

const BASE_SEED = Number(process.env.GUEST_MEMORY_SEED ?? 0x5eed);

interface TestRegion {
  gpa: number;
  size: number;
  memfd: number;
  offset: number;
  name: string;
}

interface RefItem {
  memfd: number;
  offset: number;
  size: number;
  firstIovec: number;
  firstGpa: number;
  lastIovec: number;
  lastGpaEnd: number;
}

type RefResult = { items: RefItem[] } | { outside: { index: number; gpa: number } };

/** 1-4 regions with random gaps (often none), on 1-2 memfds with offsets often contiguous, sometimes in shuffled order. */
function randomLayout(rand: () => number): TestRegion[] {
  const int = (n: number): number => Math.floor(rand() * n);
  const count = 1 + int(4);
  const memfds = rand() < 0.5 ? [100] : [100, 101];
  const regions: TestRegion[] = [];
  let gpa = int(4) * P;
  for (let i = 0; i < count; i++) {
    if (i > 0 && rand() >= 0.4) gpa += (1 + int(3)) * P;
    const size = (1 + int(8)) * P;
    regions.push({ gpa, size, memfd: memfds[int(memfds.length)]!, offset: 0, name: `r${i}` });
    gpa += size;
  }
  for (const memfd of memfds) {
    const mine = regions.filter((r) => r.memfd === memfd);
    if (rand() < 0.3) shuffle(mine, rand); // else in GPA order, as QEMU lays out one backend
    let cursor = int(3) * P;
    for (const r of mine) {
      r.offset = cursor;
      cursor += r.size + (rand() < 0.6 ? 0 : (1 + int(2)) * P);
    }
  }
  return regions;
}

function shuffle<T>(list: T[], rand: () => number): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
}

/** Iovecs mostly in RAM: random pages, runs continuing the previous iovec, runs just before it (reversed), jumps to the next region. */
function randomIovecs(rand: () => number, regions: readonly TestRegion[], unit: number): { gpa: number; length: number }[] {
  const int = (n: number): number => Math.floor(rand() * n);
  const count = 1 + int(8);
  const out: { gpa: number; length: number }[] = [];
  const top = regions[regions.length - 1]!.gpa + regions[regions.length - 1]!.size;
  for (let k = 0; k < count; k++) {
    let length = unit === P ? (rand() < 0.7 ? 1 + int(2) : 1 + int(6)) * P : 1 + int(2 * P);
    const prev = out[k - 1];
    const mode = rand();
    let gpa: number;
    if (prev && mode < 0.35) {
      gpa = prev.gpa + prev.length;
      // At a region's end: mostly go on at the next region (across the hole) rather than into the hole.
      if (!regions.some((x) => gpa >= x.gpa && gpa < x.gpa + x.size) && rand() < 0.8) gpa = regions.find((x) => x.gpa >= gpa)?.gpa ?? gpa;
    } else if (prev && mode < 0.5) gpa = Math.max(0, prev.gpa - length);
    else if (prev && mode < 0.6) {
      // Jump to the next region's start, as a list walking RAM across a hole (or to another memfd) does.
      const end = prev.gpa + prev.length;
      gpa = regions.find((x) => x.gpa >= end)?.gpa ?? end;
    } else if (mode < 0.63) gpa = int(top / unit + 2) * unit; // anywhere, holes included
    else {
      const r = regions[int(regions.length)]!;
      gpa = r.gpa + int(r.size / unit) * unit;
    }
    // Mostly stay inside the region; otherwise run on past its end (into the next region or a hole).
    const r = regions.find((x) => gpa >= x.gpa && gpa < x.gpa + x.size);
    if (r && rand() < 0.88) length = Math.min(length, r.gpa + r.size - gpa);
    if (!inRam(regions, gpa, length) && rand() < 0.85) {
      // Keep most lists valid: replace a range that leaves RAM with one inside a random region.
      const inside = regions[int(regions.length)]!;
      gpa = inside.gpa + int(inside.size / unit) * unit;
      length = Math.min(length, inside.gpa + inside.size - gpa);
    }
    out.push({ gpa, length });
  }
  return out;
}

/** Whether every byte of [gpa, gpa + length) is in some region. */
function inRam(regions: readonly TestRegion[], gpa: number, length: number): boolean {
  let at = gpa;
  while (at < gpa + length) {
    const r = regions.find((x) => at >= x.gpa && at < x.gpa + x.size);
    if (!r) return false;
    at = r.gpa + r.size;
  }
  return true;
}

/** The reference: walk each iovec in steps no larger than `step`, look each step's region up by linear scan, merge greedily. */
function reference(regions: readonly TestRegion[], iovecs: readonly { gpa: number; length: number }[]): RefResult {
  const items: RefItem[] = [];
  for (let i = 0; i < iovecs.length; i++) {
    const { gpa, length } = iovecs[i]!;
    let at = gpa;
    while (at < gpa + length) {
      const r = regions.find((x) => at >= x.gpa && at < x.gpa + x.size);
      if (!r) return { outside: { index: i, gpa: at } };
      const take = Math.min(gpa + length, r.gpa + r.size) - at;
      const offset = r.offset + (at - r.gpa);
      const last = items[items.length - 1];
      if (last && last.memfd === r.memfd && last.offset + last.size === offset) {
        last.size += take;
        last.lastIovec = i;
        last.lastGpaEnd = at + take;
      } else items.push({ memfd: r.memfd, offset, size: take, firstIovec: i, firstGpa: at, lastIovec: i, lastGpaEnd: at + take });
      at += take;
    }
  }
  return { items };
}

/** Page by page, the way the issue states it: each page's memfd location, consecutive pages merged when contiguous. */
function referencePages(regions: readonly TestRegion[], iovecs: readonly { gpa: number; length: number }[], withinRegionsOnly = false): RefResult {
  const items: RefItem[] = [];
  let lastRegion: TestRegion | undefined;
  for (let i = 0; i < iovecs.length; i++) {
    const { gpa, length } = iovecs[i]!;
    for (let page = gpa; page < gpa + length; page += P) {
      const r = regions.find((x) => page >= x.gpa && page < x.gpa + x.size);
      if (!r) return { outside: { index: i, gpa: page } };
      const offset = r.offset + (page - r.gpa);
      const last = items[items.length - 1];
      if (last && last.memfd === r.memfd && last.offset + last.size === offset && (!withinRegionsOnly || r === lastRegion)) last.size += P;
      else items.push({ memfd: r.memfd, offset, size: P, firstIovec: i, firstGpa: page, lastIovec: i, lastGpaEnd: page + P });
      lastRegion = r;
    }
  }
  return { items };
}

function attempt(fn: () => MemfdItem[]): MemfdItem[] | TranslationError {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TranslationError) return err;
    throw err;
  }
}

const asItems = (items: readonly RefItem[]): MemfdItem[] => items.map((i) => item(i.memfd, i.offset, i.size));
const describeCase = (seed: number, regions: readonly TestRegion[], iovecs: readonly GuestRange[]): string =>
  `seed ${seed} (rerun with GUEST_MEMORY_SEED=${seed} and case 0): regions ${JSON.stringify(regions)} iovecs ${JSON.stringify(iovecs)}`;

test('randomized: page-aligned lists translate to the minimum items, in order, length preserved', (t) => {
  const cases = 5000;
  let valid = 0;
  let outside = 0;
  let crossRegionMerges = 0;
  let limitChecks = 0;
  for (let c = 0; c < cases; c++) {
    const seed = BASE_SEED + c;
    const rand = mulberry32(seed);
    const regions = randomLayout(rand);
    const given = regions.map((r) => ({ ...r }));
    shuffle(given, rand);
    const mem = new GuestMemory(given);
    const iovecs = randomIovecs(rand, regions, P);
    const expected = referencePages(regions, iovecs);
    const actual = attempt(() => mem.translate(iovecs));
    const where = (): string => describeCase(seed, regions, iovecs);

    if ('outside' in expected) {
      outside++;
      if (!(actual instanceof TranslationError) || actual.iovecIndex !== expected.outside.index || actual.gpa !== BigInt(expected.outside.gpa) || actual.code !== 'ERR_NOT_GUEST_RAM') {
        t.fail(`expected iovec ${expected.outside.index} outside RAM at ${expected.outside.gpa}, got ${actual instanceof Error ? actual.message : JSON.stringify(actual, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}: ${where()}`);
        return;
      }
      continue;
    }
    valid++;
    const want = asItems(expected.items);
    if (!isDeepStrictEqual(actual, want)) {
      t.deepEqual(actual, want, where());
      return;
    }
    const total = iovecs.reduce((sum, iov) => sum + iov.length, 0);
    const got = want.reduce((sum, i) => sum + i.size, 0n);
    const aligned = want.every((i) => i.offset % BigInt(P) === 0n && i.size % BigInt(P) === 0n && i.size > 0n);
    if (got !== BigInt(total) || !aligned) {
      t.fail(`total ${got} vs ${total}, aligned ${aligned}: ${where()}`);
      return;
    }
    // Fewer items than merging only inside each region gives: the list merged across a region boundary.
    const withinRegions = referencePages(regions, iovecs, true);
    if ('items' in withinRegions && want.length < withinRegions.items.length) crossRegionMerges++;
    if (c % 5 === 0) {
      limitChecks++;
      const exact = attempt(() => mem.translate(iovecs, { limits: { listLimit: want.length, sizeLimitBytes: BigInt(total) } }));
      const over = attempt(() => mem.translate(iovecs, { limits: { listLimit: want.length - 1, sizeLimitBytes: BigInt(total) } }));
      const tooBig = attempt(() => mem.translate(iovecs, { limits: { listLimit: want.length, sizeLimitBytes: BigInt(total - 1) } }));
      if (!isDeepStrictEqual(exact, want) || !(over instanceof TranslationError && over.code === 'ERR_DRIVER_LIMIT') || !(tooBig instanceof TranslationError && tooBig.code === 'ERR_DRIVER_LIMIT')) {
        t.fail(`limits at ${want.length} items / ${total} bytes misjudged: ${where()}`);
        return;
      }
    }
  }
  t.is(valid + outside, cases);
  t.true(valid > cases * 0.6, `${valid} of ${cases} cases in RAM: too few valid lists to mean much`);
  t.true(outside > cases * 0.05, `${outside} cases outside RAM`);
  t.true(crossRegionMerges > 250, `${crossRegionMerges} cases merged across regions`);
  t.true(limitChecks > 300);
  t.log(`${valid} valid, ${outside} outside RAM, ${crossRegionMerges} merged across regions`);
});

test('randomized: unaligned byte ranges with pageAligned:false keep bytes and order; the default refuses the right iovec', (t) => {
  const cases = 3000;
  let valid = 0;
  let refusedUnaligned = 0;
  for (let c = 0; c < cases; c++) {
    const seed = BASE_SEED + 1_000_000 + c;
    const rand = mulberry32(seed);
    const regions = randomLayout(rand);
    const mem = new GuestMemory(regions);
    const iovecs = randomIovecs(rand, regions, 1);
    const expected = reference(regions, iovecs);
    const actual = attempt(() => mem.translate(iovecs, { pageAligned: false }));
    const where = (): string => describeCase(seed, regions, iovecs);
    if ('outside' in expected) {
      if (!(actual instanceof TranslationError) || actual.iovecIndex !== expected.outside.index || actual.gpa !== BigInt(expected.outside.gpa)) {
        t.fail(`expected iovec ${expected.outside.index} outside RAM at ${expected.outside.gpa}: ${where()}`);
        return;
      }
      continue;
    }
    valid++;
    const want = asItems(expected.items);
    const total = iovecs.reduce((sum, iov) => sum + iov.length, 0);
    if (!isDeepStrictEqual(actual, want) || want.reduce((sum, i) => sum + i.size, 0n) !== BigInt(total)) {
      t.deepEqual(actual, want, where());
      return;
    }
    // With alignment required: the first item with an unaligned start (its first iovec) or end (its last iovec).
    const strict = attempt(() => mem.translate(iovecs));
    const bad = expected.items.find((i) => i.offset % P !== 0 || (i.offset + i.size) % P !== 0);
    if (!bad) {
      if (!isDeepStrictEqual(strict, want)) {
        t.deepEqual(strict, want, where());
        return;
      }
      continue;
    }
    refusedUnaligned++;
    const [index, gpa] = bad.offset % P !== 0 ? [bad.firstIovec, bad.firstGpa] : [bad.lastIovec, bad.lastGpaEnd];
    if (!(strict instanceof TranslationError) || strict.iovecIndex !== index || strict.gpa !== BigInt(gpa) || !strict.message.includes(`iovec ${index} `)) {
      t.fail(`expected an alignment error at iovec ${index} gpa ${gpa}, got ${strict instanceof Error ? strict.message : 'items'}: ${where()}`);
      return;
    }
  }
  t.true(valid > cases * 0.3, `${valid} of ${cases} valid`);
  t.true(refusedUnaligned > cases * 0.2, `${refusedUnaligned} refused as unaligned`);
  t.log(`${valid} valid, ${refusedUnaligned} refused as unaligned by default`);
});
