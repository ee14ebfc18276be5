// mmap of a buffer maps every page at mmap time (remap_pfn_range per physically contiguous
// run): a PFN mapping (no struct-page refcounts on hugetlb subpages), shared only, at any page
// offset into the buffer, coherent with the memfd both ways, outliving the buffer's fd.
import test from 'ava';
import { readFileSync } from 'node:fs';
import * as L from '../../lib/core/linux.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { reserveHugePages } from './helpers/memory.js';
import { attempt, createList, fillPattern, mapShared, memfd, native, openDevice, PAGE, unmapView } from './helpers/raw.js';

const HUGE = 2 << 20;
reserveHugePages(8);
const checkBaseline = baselineGuard(test);

/** VmFlags of the mapping that starts at `view`'s address, from /proc/self/smaps. */
function vmFlagsOf(length: number): string[][] {
  const smaps = readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
  return smaps
    .filter((block) => {
      const [start, end] = block.split(' ')[0]!.split('-').map((h) => parseInt(h, 16)) as [number, number];
      return end - start === length && /dmabuf/.test(block.split('\n')[0]!);
    })
    .map((block) => /^VmFlags: (.*)$/m.exec(block)![1]!.trim().split(/\s+/));
}

for (const [what, hugetlb] of [['hugetlb', true], ['shmem', false]] as const) {
  test.serial(`${what}: every page offset maps the right bytes, both ways, after the fd is closed`, (t) => {
    const dev = openDevice(ourDevice().path);
    const fd = memfd(4 * HUGE, undefined, hugetlb);
    const source = mapShared(fd, 4 * HUGE);
    fillPattern(source, 11);
    // Out of order, partial huge pages, one page twice: several extents and runs.
    const ranges = [{ offset: 3 * HUGE - 5 * PAGE, size: HUGE }, { offset: PAGE, size: 3 * PAGE }, { offset: 2 * PAGE, size: PAGE }, { offset: 0, size: HUGE / 2 }];
    const total = ranges.reduce((s, r) => s + r.size, 0);
    const expected = Buffer.concat(ranges.map((r) => source.subarray(r.offset, r.offset + r.size)));
    const buf = createList(dev, ranges.map((r) => ({ memfd: fd, ...r })));
    for (const first of [0, PAGE, HUGE - 5 * PAGE, HUGE + 2 * PAGE]) {
      const length = total - first;
      const view = new Uint8Array(native.mmap(buf, length, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED, first));
      t.true(Buffer.from(view).equals(expected.subarray(first)), `mapped from page ${first / PAGE}`);
      if (first === 0) t.true(vmFlagsOf(length).some((flags) => flags.includes('pf')), 'a PFN mapping');
      unmapView(view);
    }
    const view = mapShared(buf, total);
    native.close(buf); // the mapping keeps the buffer
    view[ranges[0]!.size + PAGE] = 0xab; // buffer page of range 1 -> memfd page 2
    t.is(source[2 * PAGE], 0xab, 'a write through the dma-buf lands in the memfd');
    source[0] = 0xcd;
    t.is(view[ranges[0]!.size + 3 * PAGE + PAGE], 0xcd, 'a write to the memfd shows through the dma-buf');
    unmapView(view);
    unmapView(source);
    native.close(fd);
    native.close(dev);
  });
}

test.serial('a private mapping is refused', (t) => {
  const dev = openDevice(ourDevice().path);
  const fd = memfd(4 * PAGE);
  const buf = createList(dev, [{ memfd: fd, offset: 0, size: 4 * PAGE }]);
  t.is(attempt(() => native.mmap(buf, 4 * PAGE, L.PROT_READ, L.MAP_PRIVATE, 0)), 'EINVAL');
  for (const f of [buf, fd, dev]) native.close(f);
});

checkBaseline();
