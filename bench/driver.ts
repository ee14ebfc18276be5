// npm run bench:driver, inside one 6.12 VM: guest_udmabuf against the in-tree udmabuf in the
// same process, over the same memfds, alternating which driver goes first each round. Prints
// medians, the ratio ours/in-tree per row, the cost of one memcpy of a 4K frame, and a summary.
import { existsSync, openSync } from 'node:fs';
import { release } from 'node:os';
import * as L from '../lib/core/linux.js';
import { mapShared, unmap } from '../lib/fd/mapping.js';
import { native } from '../lib/core/native.js';
import * as abi from '../lib/kernel/udmabuf-abi.js';
import { captureFormat, captureInto, gemClose, openVgem, openVividCapture, primeImport, stopCapture } from '../test/vm/helpers/importers.js';
import { reserveHugePages } from '../test/vm/helpers/memory.js';
import { formatNs, median, printTable, timeNs } from './stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21);
const WARMUP = 3;
const PAGE = L.PAGE_SIZE;
const FRAME_4K = 3840 * 2160 * 4; // 33,177,600 B
const MEMFD_SIZE = 66 << 20; // room for the 64 MiB row; a multiple of 2 MiB
const HUGE_PAGES = MEMFD_SIZE / (2 << 20);

interface Driver {
  label: 'ours' | 'in-tree';
  dev: number;
}

interface Row {
  name: string;
  /** True for the rows the issue targets at <= 0.5. */
  strict?: boolean;
  /** One timed operation with `dev`, in ns; setup and teardown stay outside the timing. */
  run(dev: number): number;
}

interface Result {
  name: string;
  strict: boolean;
  ours: number;
  inTree: number;
}

function openDrivers(): Driver[] {
  const ours = process.env.GUEST_DMABUF_DEVICE;
  if (!ours || ours === '/dev/udmabuf' || !existsSync('/dev/udmabuf')) {
    throw new Error('bench:driver compares against the in-tree udmabuf: run it in the 6.12 guest (`npm run bench:driver` does)');
  }
  return [
    { label: 'ours', dev: openSync(ours, 'r+') },
    { label: 'in-tree', dev: openSync('/dev/udmabuf', 'r+') },
  ];
}

/** A sealed memfd with every page written (so both drivers pin existing pages). */
function populatedMemfd(hugetlb: boolean): number {
  const flags = L.MFD_CLOEXEC | L.MFD_ALLOW_SEALING | (hugetlb ? L.MFD_HUGETLB | L.MFD_HUGE_2MB : 0);
  const fd = native.memfdCreate(hugetlb ? 'bench-hugetlb' : 'bench-shmem', flags);
  native.ftruncate(fd, MEMFD_SIZE);
  native.addSeals(fd, L.F_SEAL_SHRINK);
  const view = mapShared(fd, MEMFD_SIZE, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED);
  for (let i = 0; i < MEMFD_SIZE; i += PAGE) view[i] = i / PAGE;
  unmap(view);
  return fd;
}

function create(dev: number, memfd: number, size: number): number {
  return native.ioctl(dev, abi.UDMABUF_CREATE, abi.encodeCreate(abi.UDMABUF_FLAGS_CLOEXEC, { memfd, offset: 0n, size: BigInt(size) }));
}

/** 1024 distinct, non-adjacent 4 KiB pages of the memfd in a seeded shuffled order. */
function scatteredList(memfd: number): Uint8Array {
  const pages = Array.from({ length: MEMFD_SIZE / PAGE / 2 }, (_, i) => i * 2);
  let seed = 0x9e3779b9;
  for (let i = pages.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const j = seed % (i + 1);
    [pages[i], pages[j]] = [pages[j]!, pages[i]!];
  }
  const items = pages.slice(0, 1024).map((p) => ({ memfd, offset: BigInt(p * PAGE), size: BigInt(PAGE) }));
  return abi.encodeCreateList(abi.UDMABUF_FLAGS_CLOEXEC, items);
}

function rows(shmem: number, hugetlb: number): Row[] {
  const list: Row[] = [];
  const sizes: [string, number][] = [['4 KiB', 4096], ['1 MiB', 1 << 20], ['8 MiB', 8 << 20], ['3840x2160x4', FRAME_4K], ['64 MiB', 64 << 20]];
  for (const [memfd, kind] of [[shmem, 'shmem'], [hugetlb, 'hugetlb 2M']] as const) {
    for (const [label, size] of sizes) {
      list.push({ name: `create+close ${label} (${kind})`, strict: kind !== 'shmem', run: (dev) => timeNs(() => native.close(create(dev, memfd, size))) });
    }
  }
  const scattered = scatteredList(shmem);
  list.push({ name: 'CREATE_LIST 1024 scattered 4 KiB', run: (dev) => timeNs(() => native.close(native.ioctl(dev, abi.UDMABUF_CREATE_LIST, scattered))) });
  list.push({
    name: 'mmap + first touch of 3840x2160x4',
    strict: true,
    run: (dev) => {
      const buf = create(dev, shmem, FRAME_4K);
      let view: Uint8Array = new Uint8Array(0);
      let sum = 0;
      const ns = timeNs(() => {
        view = mapShared(buf, FRAME_4K, L.PROT_READ, L.MAP_SHARED);
        for (let i = 0; i < FRAME_4K; i += PAGE) sum += view[i]!;
      });
      if (sum !== expectedSum) throw new Error(`mmap read ${sum}, expected ${expectedSum}: wrong pages`);
      unmap(view);
      native.close(buf);
      return ns;
    },
  });
  const drm = openVgem();
  list.push({
    name: 'vgem PRIME import (attach + map) 3840x2160x4',
    run: (dev) => {
      const buf = create(dev, shmem, FRAME_4K);
      let handle = 0;
      const ns = timeNs(() => void (handle = primeImport(drm, buf)));
      gemClose(drm, handle);
      native.close(buf);
      return ns;
    },
  });
  const video = openVividCapture();
  const frame = captureFormat(video);
  const frameBytes = Math.ceil(frame.sizeImage / PAGE) * PAGE;
  list.push({
    name: `vivid capture ${frame.width}x${frame.height} ${frame.fourcc}`,
    run: (dev) => {
      const buf = create(dev, shmem, frameBytes);
      const ns = timeNs(() => {
        captureInto(video, buf, frameBytes);
        stopCapture(video);
      });
      native.close(buf);
      return ns;
    },
  });
  return list;
}

// Page i of the shmem memfd starts with the byte i & 0xff (populatedMemfd).
let expectedSum = 0;
for (let i = 0; i < FRAME_4K / PAGE; i++) expectedSum += i & 0xff;

function measure(row: Row, drivers: Driver[]): Result {
  const samples: Record<Driver['label'], number[]> = { ours: [], 'in-tree': [] };
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const order = round % 2 ? [...drivers].reverse() : drivers;
    for (const driver of order) {
      const ns = row.run(driver.dev);
      if (round >= WARMUP) samples[driver.label].push(ns);
    }
  }
  return { name: row.name, strict: row.strict ?? false, ours: median(samples.ours), inTree: median(samples['in-tree']) };
}

/** One memcpy of a 4K frame out of guest memory into an already-faulted buffer. */
function memcpyFrame(shmem: number): number {
  const source = mapShared(shmem, FRAME_4K, L.PROT_READ, L.MAP_SHARED);
  const target = new Uint8Array(FRAME_4K);
  target.fill(1);
  const samples: number[] = [];
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const ns = timeNs(() => target.set(source));
    if (round >= WARMUP) samples.push(ns);
  }
  unmap(source);
  return median(samples);
}

const drivers = openDrivers();
reserveHugePages(HUGE_PAGES);
const shmem = populatedMemfd(false);
const hugetlb = populatedMemfd(true);
console.log(`bench:driver on Linux ${release()}: guest_udmabuf vs in-tree udmabuf, median of ${ROUNDS} rounds after ${WARMUP} warm-up, alternating order`);

const results: Result[] = [];
for (const row of rows(shmem, hugetlb)) {
  process.stderr.write(`  measuring ${row.name}...\n`);
  results.push(measure(row, drivers));
}
const copy = memcpyFrame(shmem);

printTable(
  ['row', 'ours', 'in-tree', 'ours/in-tree'],
  results.map((r) => [r.name, formatNs(r.ours), formatNs(r.inTree), (r.ours / r.inTree).toFixed(2)]),
);
const frameRow = results.find((r) => r.name === 'create+close 3840x2160x4 (shmem)')!;
console.log(`\none memcpy of the 3840x2160x4 frame (what a copying proxy pays per frame): ${formatNs(copy)}; our create+close of it costs ${(frameRow.ours / copy).toFixed(2)}x that, once per surface`);

const slower = results.filter((r) => r.ours > r.inTree);
const strictMissed = results.filter((r) => r.strict && r.ours > 0.5 * r.inTree);
console.log(`\nsummary: ours is at least as fast as in-tree on ${results.length - slower.length} of ${results.length} rows` +
  (slower.length ? `; slower on: ${slower.map((r) => `${r.name} (${(r.ours / r.inTree).toFixed(2)})`).join(', ')}` : '') + '.');
console.log(`hugetlb create and mmap first touch (target <= 0.50): ${strictMissed.length ? `missed on ${strictMissed.map((r) => `${r.name} (${(r.ours / r.inTree).toFixed(2)})`).join(', ')}` : 'met on every row'}.`);
for (const driver of drivers) native.close(driver.dev);
native.close(shmem);
native.close(hugetlb);
