// UDMABUF_CREATE_LIST edges, against every device under test.
import test from 'ava';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, readParam } from './helpers/devices.js';
import { createList, fillPattern, mapShared, memfd, native, openDevice, outcome, PAGE, unmapView } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);

for (const dut of devicesUnderTest()) {
  const name = (what: string): string => `${dut.label}: ${what}`;
  const dev = openDevice(dut.path);
  test.after.always(() => native.close(dev));

  test.serial(name('count 0 fails with EINVAL'), (t) => {
    t.is(outcome(() => createList(dev, [], 0x1, 0)), 'EINVAL');
  });

  test.serial(name('a count over list_limit fails with EINVAL before reading the items'), (t) => {
    const limit = Number(readParam(dut, 'list_limit'));
    const fd = memfd(PAGE);
    // The header claims more items than the buffer holds: the limit is checked first.
    t.is(outcome(() => createList(dev, [{ memfd: fd, offset: 0, size: PAGE }], 0x1, limit + 1)), 'EINVAL');
    t.is(outcome(() => createList(dev, [{ memfd: fd, offset: 0, size: PAGE }], 0x1, 0xffffffff)), 'EINVAL');
    native.close(fd);
  });

  test.serial(name('several memfds in one list appear in list order'), (t) => {
    const fds = [memfd(8 * PAGE), memfd(8 * PAGE), memfd(8 * PAGE)];
    const views = fds.map((fd, i) => {
      const v = mapShared(fd, 8 * PAGE);
      fillPattern(v, i + 1);
      return v;
    });
    const items = [
      { memfd: fds[2]!, offset: 4 * PAGE, size: 2 * PAGE },
      { memfd: fds[0]!, offset: 0, size: PAGE },
      { memfd: fds[1]!, offset: 7 * PAGE, size: PAGE },
    ];
    const buf = createList(dev, items);
    const out = mapShared(buf, 4 * PAGE, false);
    t.true(Buffer.from(out.subarray(0, 2 * PAGE)).equals(views[2]!.subarray(4 * PAGE, 6 * PAGE)));
    t.true(Buffer.from(out.subarray(2 * PAGE, 3 * PAGE)).equals(views[0]!.subarray(0, PAGE)));
    t.true(Buffer.from(out.subarray(3 * PAGE, 4 * PAGE)).equals(views[1]!.subarray(7 * PAGE, 8 * PAGE)));
    unmapView(out);
    native.close(buf);
    for (const v of views) unmapView(v);
    for (const fd of fds) native.close(fd);
  });

  test.serial(name('overlapping and repeated ranges map the same pages more than once'), (t) => {
    const fd = memfd(8 * PAGE);
    const items = [
      { memfd: fd, offset: 0, size: 4 * PAGE },
      { memfd: fd, offset: 2 * PAGE, size: 4 * PAGE }, // overlaps the first
      { memfd: fd, offset: 0, size: PAGE }, // repeats page 0
    ];
    const buf = createList(dev, items);
    const out = mapShared(buf, 9 * PAGE);
    out[0] = 0x5a; // page 0 through the first range
    t.is(out[8 * PAGE], 0x5a, 'the repeated page 0 shows the write');
    out[2 * PAGE + 9] = 0x77; // page 2 through the first range ...
    t.is(out[4 * PAGE + 9], 0x77, '... is page 2 of the overlapping range too');
    const source = mapShared(fd, 8 * PAGE, false);
    t.is(source[0], 0x5a);
    t.is(source[2 * PAGE + 9], 0x77);
    unmapView(source);
    unmapView(out);
    native.close(buf);
    native.close(fd);
  });
}

checkBaseline();
