// Lifetimes: the dma-buf keeps its pages whatever happens to the memfd, the fd, or the process
// that created it, and gives them back when its last holder lets go.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest } from './helpers/devices.js';
import { inodeOf, isLive } from './helpers/dmabuf-debugfs.js';
import { create, fillPattern, mapShared, memfd, native, openDevice, unmapView } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const SIZE = 4 << 20;

for (const dut of devicesUnderTest()) {
  const name = (what: string): string => `${dut.label}: ${what}`;
  const dev = openDevice(dut.path);
  test.after.always(() => native.close(dev));

  test.serial(name('the memfd closed while the dma-buf lives: its memory stays, readable and writable'), (t) => {
    const fd = memfd(SIZE);
    const source = mapShared(fd, SIZE);
    fillPattern(source, 3);
    const expected = Buffer.from(source);
    const buf = create(dev, { memfd: fd, offset: 0, size: SIZE });
    native.close(fd);
    const view = mapShared(buf, SIZE);
    t.true(Buffer.from(view).equals(expected));
    // Both ways across the two mappings: the memfd's (made before its fd was closed) and the
    // dma-buf's are the same pages.
    view[100] = expected[100]! ^ 0xff;
    t.is(source[100], expected[100]! ^ 0xff, 'a write through the dma-buf shows in the memfd');
    source[SIZE - 7] = expected[SIZE - 7]! ^ 0x5a;
    t.is(view[SIZE - 7], expected[SIZE - 7]! ^ 0x5a, 'a write through the memfd shows in the dma-buf');
    unmapView(source);
    const ino = inodeOf(buf);
    unmapView(view);
    t.true(isLive(ino), 'the buffer lives while the fd is open');
    native.close(buf);
    t.false(isLive(ino), 'and is released (its pages unpinned) with the last reference');
  });

  test.serial(name('punching a hole in the memfd while pinned neither crashes nor leaks'), (t) => {
    const fd = memfd(SIZE);
    const source = mapShared(fd, SIZE);
    source.fill(0xcd);
    const buf = create(dev, { memfd: fd, offset: 0, size: SIZE });
    native.fallocate(fd, 0x2 | 0x1, 0, SIZE); // PUNCH_HOLE | KEEP_SIZE
    t.is(source[10], 0, 'the memfd reads the hole as zeros');
    const view = mapShared(buf, SIZE, false);
    t.is(view[10], 0xcd, 'the dma-buf keeps the pages it pinned');
    const ino = inodeOf(buf);
    unmapView(view);
    native.close(buf);
    t.false(isLive(ino), 'the dma-buf is released with its detached pages');
    unmapView(source);
    native.close(fd);
  });

  test.serial(name('the creating process exits while another holds the fd'), async (t) => {
    const script = `
      import { openSync } from 'node:fs';
      import { create, mapShared, memfd, native } from '${new URL('./helpers/raw.js', import.meta.url).pathname}';
      const dev = openSync(process.env.DEV, 'r+');
      const fd = memfd(${SIZE});
      const v = mapShared(fd, ${SIZE});
      v.fill(0x42);
      const buf = create(dev, { memfd: fd, offset: 0, size: ${SIZE} });
      console.log(buf);
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, DEV: dut.path }, stdio: ['pipe', 'pipe', 'inherit'] });
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const pidfd = native.pidfdOpen(child.pid!);
    const buf = native.pidfdGetfd(pidfd, Number(line.toString().trim()));
    native.close(pidfd);
    child.stdin!.end();
    const [code] = (await once(child, 'close')) as [number];
    t.is(code, 0);
    const view = mapShared(buf, SIZE, false);
    t.true(view.every((b) => b === 0x42), 'the buffer outlives its creator');
    const ino = inodeOf(buf);
    unmapView(view);
    t.true(isLive(ino));
    native.close(buf);
    t.false(isLive(ino), 'and is released with the last holder');
  });

  test.serial(name('an mmap outlives the dma-buf fd'), (t) => {
    const fd = memfd(SIZE);
    const backing = mapShared(fd, SIZE);
    const buf = create(dev, { memfd: fd, offset: 0, size: SIZE });
    const view = mapShared(buf, SIZE);
    const ino = inodeOf(buf);
    native.close(buf);
    native.close(fd);
    view.fill(0x99, SIZE / 2);
    t.deepEqual([backing[SIZE / 2], backing[SIZE - 1]], [0x99, 0x99], 'writes through the orphaned dma-buf mapping land in the memfd');
    backing.fill(0x66, 0, SIZE / 2);
    t.deepEqual([view[0], view[SIZE / 2 - 1]], [0x66, 0x66], 'and the memfd\'s writes show through it');
    t.true(isLive(ino), 'the mapping keeps the buffer alive');
    unmapView(backing);
    unmapView(view);
    t.false(isLive(ino), 'unmapping the last view releases it');
  });
}

checkBaseline();
