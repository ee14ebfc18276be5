// guest_udmabuf keeps a buffer as folio extents: a huge page is pinned once and backs one
// extent, however many 4 KiB pages of it the buffer uses, and the bytes stay in order.
import test from 'ava';
import { Memfd, Udmabuf, unmap } from '../../lib/index.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { reserveHugePages } from './helpers/memory.js';
import { fillPattern, native } from './helpers/raw.js';

reserveHugePages(16); // before the baseline is taken
const checkBaseline = baselineGuard(test);
const HUGE = 2 << 20;

test.serial('a hugetlb buffer is one extent per huge page, and reads back in order', (t) => {
  using dev = Udmabuf.open(ourDevice().path);
  using memfd = Memfd.create('extents', 8 * HUGE, { hugetlb: '2M', seals: ['shrink'] });
  const source = memfd.map();
  fillPattern(source, 9);
  const cases: [string, { offset: number; size: number }[], number][] = [
    ['8 whole huge pages', [{ offset: 0, size: 8 * HUGE }], 8],
    ['1 MiB into the first to 1 MiB into the fourth', [{ offset: HUGE / 2, size: 3 * HUGE }], 4],
    ['two adjacent ranges in one huge page merge', [{ offset: 0, size: HUGE / 2 }, { offset: HUGE / 2, size: HUGE / 2 }], 1],
    ['out of order', [{ offset: 4 * HUGE, size: HUGE }, { offset: 0, size: HUGE }], 2],
  ];
  for (const [what, ranges, extents] of cases) {
    using buf = dev.create(ranges.map((r) => ({ memfd, ...r })));
    const ino = Number(native.fstat(buf.fd).ino);
    t.is(ourBuffers().find((b) => b.ino === ino)?.extents, extents, what);
    const view = buf.map();
    const expected = Buffer.concat(ranges.map((r) => source.subarray(r.offset, r.offset + r.size)));
    t.true(Buffer.from(view).equals(expected), `${what}: bytes in order`);
    unmap(view);
  }
  unmap(source);
});

checkBaseline();
