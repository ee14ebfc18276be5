// A create that fails gives back the huge pages it allocated: hugetlb pages of a range nobody
// had written yet (fallocated by the driver on 6.1, allocated by memfd_pin_folios on 6.12) are
// freed again when a later item fails, while pages that were there before stay.
import test from 'ava';
import { openSync } from 'node:fs';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { freeHugePages, reserveHugePages } from './helpers/memory.js';
import { createList, mapShared, memfd, native, openDevice, outcome, unmapView } from './helpers/raw.js';

const HUGE = 2 << 20;
reserveHugePages(8);
const checkBaseline = baselineGuard(test);

test.serial('a list failing on a later item frees the huge pages the create allocated, and only those', (t) => {
  const dev = openDevice(ourDevice().path);
  const fd = memfd(4 * HUGE, undefined, true);
  const written = mapShared(fd, HUGE);
  written[0] = 0x42; // huge page 0 exists before the create
  const devnull = openSync('/dev/null', 'r');
  const free = freeHugePages();
  t.is(outcome(() => createList(dev, [{ memfd: fd, offset: 0, size: 3 * HUGE }, { memfd: devnull, offset: 0, size: 4096 }])), 'EBADFD');
  t.is(freeHugePages(), free, 'huge pages 1 and 2, allocated by the create, are free again');
  t.is(written[0], 0x42, 'the page that was there before keeps its data');
  t.is(outcome(() => createList(dev, [{ memfd: fd, offset: HUGE, size: HUGE }])), 'OK', 'a create that succeeds keeps what it allocated until release');
  unmapView(written);
  for (const f of [devnull, fd, dev]) native.close(f);
});

checkBaseline();
