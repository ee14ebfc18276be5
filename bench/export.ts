// npm run bench:export, inside one 6.12 VM with guest_udmabuf: the cost of handing a guest
// frame (XRGB8888, 1920x1080 and 3840x2160) to an importer, against what the alternatives pay
// in the same run:
//   - a copying proxy: one memcpy of the frame into a fresh shm buffer (memfd, size, map,
//     copy, unmap, close), and, for reference, into a buffer it reuses;
//   - our first export (a cache miss: translate, create, and the release once it is dropped),
//     and our cached re-export (a dup);
//   - a virtio-gpu resource whose backing arrives one 4 KiB page per entry: ours merges the
//     pages, QEMU's udmabuf path creates one item per page, in as many creates as list_limit
//     forces (its item lists are built before timing, so only the kernel's work is timed).
// Guest RAM is a shmem memfd, then shmem with transparent huge pages, then a 2 MiB hugetlb memfd
// (QEMU with hugepages). Last, a 3840x2160 frame of a real nested QEMU's RAM: QEMU's pmemsave
// copy path against our export (bench/export-qemu.ts). Each figure is the median of the rounds
// after warm-up.
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import {
  exportFramebuffer,
  exportVirtioGpuResource,
  Memfd,
  SurfaceCache,
  Udmabuf,
  unmap,
  type FramebufferDescriptor,
  type Size,
  type VirtioGpuResource,
} from '../lib/index.js';
import * as L from '../lib/core/linux.js';
import { mapShared } from '../lib/fd/mapping.js';
import { native } from '../lib/core/native.js';
import * as abi from '../lib/kernel/udmabuf-abi.js';
import { GuestRam, MiB } from '../test/vm/helpers/guest-ram.js';
import { reserveHugePages } from '../test/vm/helpers/memory.js';
import { qemuCopyPathRows } from './export-qemu.js';
import { formatNs, median, printTable, timeNs } from './stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 21);
const WARMUP = 30; // V8 optimizes the translation loop only after some calls; a VMM exports every frame
const PAGE = 4096;
const RE_EXPORTS = 20;
const FRAMES: [number, number][] = [[1920, 1080], [3840, 2160]];
const FRAME_GPA = 4 * 2 ** 30 + 2 * MiB; // in the RAM above 4 GiB

interface Row {
  name: string;
  run(): number;
}

type Figures = Map<string, number>;

/**
 * Each row's rounds run back to back: under TCG, one row's mapping churn (the fresh copy maps
 * and unmaps 33 MB) flushes the emulated TLB and would be billed to the next row.
 */
function measure(rows: readonly Row[]): Figures {
  const figures: Figures = new Map();
  for (const row of rows) {
    const samples: number[] = [];
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      const ns = row.run();
      if (round >= WARMUP) samples.push(ns);
    }
    figures.set(row.name, median(samples));
  }
  return figures;
}

/**
 * What QEMU's virtio-gpu-udmabuf does for a resource: one udmabuf item per backing entry (its
 * memfd offset looked up per entry), no merging, here split into creates of at most
 * `listLimit` items since one create cannot take more. Returns the dma-buf fds.
 */
function qemuStyleExport(devFd: number, ram: GuestRam, entries: readonly { addr: Size; length: Size }[], listLimit: number): number[] {
  const blocks = ram.memory.regions.map((r) => ({ gpa: Number(r.gpa), end: Number(r.gpa) + Number(r.size), offset: Number(r.offset), fd: (r.memfd as Memfd).fd }));
  const fds: number[] = [];
  let block = blocks[0]!;
  for (let first = 0; first < entries.length; first += listLimit) {
    const count = Math.min(listLimit, entries.length - first);
    const list = new Uint8Array(8 + 24 * count);
    const view = new DataView(list.buffer);
    view.setUint32(0, abi.UDMABUF_FLAGS_CLOEXEC, true);
    view.setUint32(4, count, true);
    for (let i = 0; i < count; i++) {
      const entry = entries[first + i]!;
      const addr = entry.addr as number;
      // As cheap as the lookup can be: the last block first (entries mostly walk forwards).
      if (addr < block.gpa || addr >= block.end) block = blocks.find((b) => addr >= b.gpa && addr < b.end)!;
      const offset = block.offset + addr - block.gpa;
      const at = 8 + 24 * i;
      view.setUint32(at, block.fd, true);
      view.setUint32(at + 8, offset % 2 ** 32, true);
      view.setUint32(at + 12, Math.floor(offset / 2 ** 32), true);
      view.setUint32(at + 16, entry.length as number, true);
    }
    fds.push(native.ioctl(devFd, abi.UDMABUF_CREATE_LIST, list));
  }
  return fds;
}

/** The bytes of dma-bufs `fds`, one after the other. */
function readAll(fds: readonly number[]): Buffer {
  return Buffer.concat(
    fds.map((fd) => {
      const view = mapShared(fd, Number(native.fstat(fd).size), L.PROT_READ, L.MAP_SHARED);
      const copy = Buffer.from(view);
      unmap(view);
      return copy;
    }),
  );
}

/** The rows for one frame size, and what to release after measuring them. */
function frameRows(dev: Udmabuf, inTree: number | undefined, ram: GuestRam, width: number, height: number): { rows: Row[]; dispose(): void } {
  const bytes = width * height * 4;
  const fb: FramebufferDescriptor = { gpa: FRAME_GPA, width, height, stride: width * 4, format: 'XR24' };
  const source = ram.view(FRAME_GPA, bytes);
  const pages = Math.ceil(bytes / PAGE);
  const resource: VirtioGpuResource = {
    resourceId: 1,
    format: 2, // B8G8R8X8: XRGB8888
    width,
    height,
    entries: Array.from({ length: pages }, (_, i) => ({ addr: FRAME_GPA + i * PAGE, length: PAGE })),
  };
  const listLimit = dev.limits.listLimit;
  const creates = Math.ceil(pages / listLimit);
  const qemuStyle = (devFd: number) => (): number => timeNs(() => qemuStyleExport(devFd, ram, resource.entries, listLimit).forEach((fd) => native.close(fd)));
  // Like with like: every path hands out exactly the frame's bytes.
  const frame = Buffer.from(source);
  using ours = exportVirtioGpuResource(dev, ram.memory, resource);
  if (!readAll([ours.dmabuf.fd]).subarray(0, bytes).equals(frame)) throw new Error('bench bug: our export does not hold the frame');
  for (const devFd of inTree === undefined ? [dev.fd] : [dev.fd, inTree]) {
    const fds = qemuStyleExport(devFd, ram, resource.entries, listLimit);
    const same = readAll(fds).subarray(0, bytes).equals(frame);
    fds.forEach((fd) => native.close(fd));
    if (!same) throw new Error('bench bug: the QEMU-style export does not hold the frame');
  }
  const warm = Memfd.create('copy-target', bytes);
  const warmView = warm.map();
  warmView.fill(1);
  const cold = new SurfaceCache();
  const hot = new SurfaceCache();
  exportFramebuffer(dev, ram.memory, fb, { cache: hot })[Symbol.dispose]();

  const rows: Row[] = [
    {
      name: 'copy into a fresh shm buffer',
      run: () =>
        timeNs(() => {
          using target = Memfd.create('copy-target', bytes);
          const view = target.map();
          view.set(source);
          unmap(view);
        }),
    },
    { name: 'copy into a reused shm buffer', run: () => timeNs(() => warmView.set(source)) },
    {
      name: 'ours: first export (cache miss)',
      run: () =>
        timeNs(() => {
          exportFramebuffer(dev, ram.memory, fb, { cache: cold })[Symbol.dispose]();
          cold.invalidateAll(); // the last reference: the buffer is released and unpinned here
        }),
    },
    {
      // Per re-export, from a burst of RE_EXPORTS (one is shorter than the timer's resolution under TCG).
      name: 'ours: cached re-export',
      run: () => timeNs(() => {
        for (let i = 0; i < RE_EXPORTS; i++) exportFramebuffer(dev, ram.memory, fb, { cache: hot })[Symbol.dispose]();
      }) / RE_EXPORTS,
    },
    { name: `ours: ${pages} page entries merged`, run: () => timeNs(() => exportVirtioGpuResource(dev, ram.memory, resource)[Symbol.dispose]()) },
    { name: `QEMU-style on ours: ${pages} items, ${creates} creates`, run: qemuStyle(dev.fd) },
    ...(inTree === undefined ? [] : [{ name: `QEMU-style on in-tree: ${pages} items, ${creates} creates`, run: qemuStyle(inTree) }]),
  ];
  const dispose = (): void => {
    hot.close();
    cold.close();
    unmap(warmView);
    warm.close();
  };
  return { rows, dispose };
}

function report(title: string, figures: Figures): string[] {
  const get = (prefix: string): number | undefined => [...figures].find(([name]) => name.startsWith(prefix))?.[1];
  const copy = get('copy into a fresh')!;
  const reused = get('copy into a reused')!;
  const first = get('ours: first')!;
  const cached = get('ours: cached')!;
  const merged = [...figures].find(([name]) => name.endsWith('entries merged'))![1];
  console.log(`\n${title}`);
  printTable(
    ['row', 'median', 'vs fresh copy'],
    [...figures].map(([name, ns]) => [name, formatNs(ns), (ns / copy).toFixed(4)]),
  );
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const lines = [
    `${title}: cached re-export is ${(copy / cached).toFixed(0)}x cheaper than the fresh copy (target >= 1000: ${verdict(copy / cached >= 1000)}); ${(reused / cached).toFixed(0)}x cheaper than a copy into a reused buffer`,
    `${title}: first export costs ${(first / copy).toFixed(3)}x the fresh copy (target <= 0.25: ${verdict(first / copy <= 0.25)}); ${(first / reused).toFixed(3)}x a copy into a reused buffer`,
  ];
  for (const driver of ['ours', 'in-tree']) {
    const perPage = get(`QEMU-style on ${driver}`);
    if (perPage === undefined) continue;
    lines.push(`${title}: merging page entries is ${(perPage / merged).toFixed(1)}x cheaper than QEMU-style one item per page on ${driver} (target >= 5: ${verdict(perPage / merged >= 5)})`);
  }
  return lines;
}

const dev = Udmabuf.open();
if (dev.module !== 'guest_udmabuf') throw new Error('bench:export measures guest_udmabuf: run it through `npm run bench:export`');
console.log(`bench:export on Linux ${release()}, ${dev.module}, list_limit ${dev.limits.listLimit}: median of ${ROUNDS} rounds after ${WARMUP} warm-up`);
const inTree = existsSync('/dev/udmabuf') && dev.path !== '/dev/udmabuf' ? openSync('/dev/udmabuf', 'r+') : undefined;
const summary: string[] = [];
{
  // One unreported pass first, so the first table is measured with the code as optimized as
  // the later ones (V8 tiers functions up over the first few hundred calls).
  process.stderr.write('  warming up...\n');
  using ram = new GuestRam(8 * MiB, 40 * MiB, 2 * MiB);
  const { rows, dispose } = frameRows(dev, inTree, ram, 1920, 1080);
  measure(rows);
  dispose();
}
/** How guest RAM is backed: the page size the kernel pins it in is what the driver pays per page. */
interface Backing {
  label: string;
  hugetlb: boolean;
  /** /sys/kernel/mm/transparent_hugepage/shmem_enabled while the RAM is allocated. */
  shmemThp?: string;
}

const THP_SHMEM = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';
const backings: Backing[] = [
  { label: 'shmem', hugetlb: false },
  // What a host with shmem THP gets (QEMU madvises guest RAM MADV_HUGEPAGE; 'advise' then
  // gives 2 MiB folios). 'always' here, since the bench maps the memfds itself.
  ...(existsSync(THP_SHMEM) ? [{ label: 'shmem with transparent huge pages', hugetlb: false, shmemThp: 'always' }] : []),
  { label: 'hugetlb (2 MiB pages)', hugetlb: true },
];
for (const backing of backings) {
  if (backing.hugetlb) reserveHugePages(48);
  const thpBefore = backing.shmemThp ? /\[(\w+)\]/.exec(readFileSync(THP_SHMEM, 'utf8'))![1]! : undefined;
  if (backing.shmemThp) writeFileSync(THP_SHMEM, backing.shmemThp);
  try {
    // 40 MiB above 4 GiB holds the 4K frame (31.6 MiB) from FRAME_GPA.
    using ram = new GuestRam(8 * MiB, 40 * MiB, 2 * MiB, { hugetlb: backing.hugetlb });
    for (const [width, height] of FRAMES) {
      const title = `${width}x${height} XRGB8888, guest RAM in ${backing.label}`;
      process.stderr.write(`  measuring ${title}...\n`);
      const { rows, dispose } = frameRows(dev, inTree, ram, width, height);
      summary.push(...report(title, measure(rows)));
      dispose();
    }
  } finally {
    if (thpBefore) writeFileSync(THP_SHMEM, thpBefore);
  }
}
process.stderr.write('  measuring pmemsave against our export on a nested QEMU...\n');
summary.push(await qemuCopyPathRows(dev, '7.2', ROUNDS, 5));
console.log(`\nsummary:\n${summary.map((line) => `  ${line}`).join('\n')}`);
dev.close();
if (inTree !== undefined) native.close(inTree);
