// Writes that reach a buffer's pages only through the dma-buf (its mmap here; importers' DMA
// and vmap alike) leave no dirty bit on the shmem folio. The driver marks every folio dirty
// when it unpins it, so reclaim writes the data to swap instead of dropping the folio as
// clean. Reclaim is forced: swap on zram, the test in its own memory cgroup, memory.reclaim.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { create, fillPattern, mapShared, memfd, native, openDevice, unmapView } from './helpers/raw.js';

const CGROOT = '/sys/fs/cgroup';
const CG = `${CGROOT}/gud-dirty`;
const SIZE = 8 << 20;

function setUpSwapAndCgroup(): void {
  execFileSync('modprobe', ['zram']);
  writeFileSync('/sys/block/zram0/disksize', String(256 << 20));
  execFileSync('mkswap', ['/dev/zram0'], { stdio: 'ignore' });
  execFileSync('swapon', ['/dev/zram0']);
  if (!existsSync(`${CGROOT}/cgroup.procs`)) execFileSync('mount', ['-t', 'cgroup2', 'none', CGROOT]);
  writeFileSync(`${CGROOT}/cgroup.subtree_control`, '+memory');
  mkdirSync(CG, { recursive: true });
}

function tearDown(): void {
  writeFileSync(`${CGROOT}/cgroup.procs`, String(process.pid));
  if (existsSync(CG)) rmdirSync(CG);
  spawnSync('swapoff', ['/dev/zram0']);
  if (existsSync('/sys/block/zram0/reset')) writeFileSync('/sys/block/zram0/reset', '1');
}

const memcgStat = (field: string): number => Number(new RegExp(`^${field} (\\d+)$`, 'm').exec(readFileSync(`${CG}/memory.stat`, 'utf8'))![1]);

/** Asks the cgroup to reclaim everything it can; memory.reclaim fails EAGAIN when it falls short. */
function reclaimAll(): void {
  for (let i = 0; i < 4; i++) {
    try {
      writeFileSync(`${CG}/memory.reclaim`, String(256 << 20));
    } catch (err) {
      if ((err as { code?: string }).code !== 'EAGAIN') throw err;
    }
  }
}

setUpSwapAndCgroup();
const checkBaseline = baselineGuard(test);
test.after.always(tearDown);

test.serial('data written only through the dma-buf survives release and forced reclaim', (t) => {
  t.regex(readFileSync('/proc/swaps', 'utf8'), /zram0/);
  writeFileSync(`${CG}/cgroup.procs`, String(process.pid)); // the memfd's pages are charged here
  const dev = openDevice(ourDevice().path);
  const fd = memfd(SIZE);
  const buf = create(dev, { memfd: fd, offset: 0, size: SIZE }); // allocates the (clean) pages
  const expected = new Uint8Array(SIZE);
  fillPattern(expected, 0xd1e7);
  const view = mapShared(buf, SIZE, true);
  view.set(expected); // the only write: through the dma-buf's PFN mapping
  unmapView(view);
  native.close(buf); // released: unpinned
  native.close(dev);

  const before = memcgStat('shmem');
  reclaimAll();
  const after = memcgStat('shmem');
  t.log(`memcg shmem ${before} -> ${after} bytes after memory.reclaim; swap: ${readFileSync('/proc/swaps', 'utf8').trim().split('\n')[1]}`);
  t.true(before - after >= SIZE / 2, 'reclaim took most of the memfd out of memory');

  const back = mapShared(fd, SIZE, false);
  let wrong = 0;
  for (let at = 0; at < SIZE; at += 4096) if (Buffer.compare(back.subarray(at, at + 4096), expected.subarray(at, at + 4096)) !== 0) wrong++;
  unmapView(back);
  native.close(fd);
  t.is(wrong, 0, `${wrong} of ${SIZE / 4096} pages lost their data`);
});

checkBaseline();
