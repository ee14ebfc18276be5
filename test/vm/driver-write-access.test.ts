// A dma-buf is writable (its mmap, importers' DMA, vmap), so a memfd range becomes one only
// through an fd that grants write access: a memfd reopened read-only through /proc/self/fd
// is refused with EACCES (upstream checks nothing), and a refused list leaves nothing pinned.
import test from 'ava';
import { openSync } from 'node:fs';
import * as L from '../../lib/core/linux.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, ourDevice } from './helpers/devices.js';
import { addSeals, attempt, create, createList, mapShared, memfd, native, openDevice, outcome, PAGE, unmapView } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const SIZE = 4 * PAGE;

/** Creates from `fd` and, if that works, writes 0x99 through the dma-buf's writable mmap. */
function createAndWrite(dev: number, fd: number): string {
  return attempt(() => {
    const buf = create(dev, { memfd: fd, offset: 0, size: SIZE });
    try {
      const view = mapShared(buf, SIZE, true);
      view.fill(0x99);
      unmapView(view);
    } finally {
      native.close(buf);
    }
  });
}

test.serial('a memfd opened read-only is refused with EACCES and its pages stay unwritten', (t) => {
  const dev = openDevice(ourDevice().path);
  const rw = memfd(SIZE);
  const guest = mapShared(rw, SIZE, false);
  const ro = openSync(`/proc/self/fd/${rw}`, 'r');
  t.is(createAndWrite(dev, ro), 'EACCES');
  t.is(guest[0], 0, 'nothing reached the memfd through the read-only fd');
  t.is(createAndWrite(dev, rw), 'OK', 'the same memfd through its read-write fd works');
  t.is(guest[0], 0x99);
  unmapView(guest);
  native.close(ro);
  native.close(rw);
  native.close(dev);
});

test.serial('a read-only item after a good one fails the list and unpins the good one', (t) => {
  const dev = openDevice(ourDevice().path);
  const good = memfd(SIZE);
  const other = memfd(SIZE);
  const ro = openSync(`/proc/self/fd/${other}`, 'r');
  t.is(outcome(() => createList(dev, [{ memfd: good, offset: 0, size: SIZE }, { memfd: ro, offset: 0, size: PAGE }])), 'EACCES');
  t.is(addSeals(good, L.F_SEAL_WRITE), 'OK', 'F_SEAL_WRITE succeeds: nothing of the first item is still pinned');
  for (const fd of [ro, other, good, dev]) native.close(fd);
});

test.serial('for the record: what the in-tree driver does with a read-only memfd fd', (t) => {
  const intree = devicesUnderTest().find((d) => d.label === 'in-tree');
  if (!intree) return t.pass('no in-tree udmabuf on this kernel');
  const dev = openDevice(intree.path);
  const rw = memfd(SIZE);
  const guest = mapShared(rw, SIZE, false);
  const ro = openSync(`/proc/self/fd/${rw}`, 'r');
  const result = createAndWrite(dev, ro);
  t.log(`in-tree udmabuf: create from an O_RDONLY memfd fd: ${result}; memfd byte 0 afterwards 0x${guest[0]!.toString(16)}`);
  t.pass();
  unmapView(guest);
  native.close(ro);
  native.close(rw);
  native.close(dev);
});

checkBaseline();
