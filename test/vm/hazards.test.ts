// The bad input upstream udmabuf shipped bugs for, one case each, against our driver.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as L from '../../lib/core/linux.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import type { RaceReport } from './fixtures/seal-race-worker.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice, withParam } from './helpers/devices.js';
import { addSeals, attempt, create, createList, mapShared, memfd, native, openDevice, outcome, PAGE, syncBuffer, unmapView } from './helpers/raw.js';

const dut = ourDevice();
const checkBaseline = baselineGuard(test);
const dev = openDevice(dut.path);
test.after.always(() => native.close(dev));

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** 'OK' if a new writable shared mapping of `fd` can be made, else the errno. */
function attemptMap(fd: number): string {
  return attempt(() => unmapView(mapShared(fd, PAGE, true)));
}

/** True when no page of `fd` is pinned any more: F_SEAL_WRITE waits for pins and fails EBUSY. */
function unpinned(fd: number): boolean {
  return addSeals(fd, L.F_SEAL_WRITE) === 'OK';
}

test.serial('size_limit_mb whose MiB value overflows 32 bits still limits correctly (CVE-2025-37803)', async (t) => {
  // Sparse: nothing is allocated unless a create pins it, and refused creates pin nothing.
  const fd = memfd(4 * GiB + PAGE);
  const attemptSize = (size: number): string => outcome(() => create(dev, { memfd: fd, offset: 0, size }));
  // 4096 MiB is 2^32 bytes: in 32 bits it wraps to 0 and would refuse everything.
  await withParam(dut, 'size_limit_mb', '4096', () => {
    t.is(attemptSize(PAGE), 'OK', 'size_limit_mb=4096: a page');
    t.is(attemptSize(4 * GiB + PAGE), 'EINVAL', 'size_limit_mb=4096: one page over 4 GiB is refused');
  });
  // 4097 MiB wraps to 1 MiB in 32 bits: a 2 MiB buffer is within the real limit.
  await withParam(dut, 'size_limit_mb', '4097', () => {
    t.is(attemptSize(2 * MiB), 'OK', 'size_limit_mb=4097: 2 MiB');
  });
  await withParam(dut, 'size_limit_mb', '4294967295', () => {
    t.is(attemptSize(PAGE), 'OK', 'size_limit_mb=4294967295: a page');
  });
  await withParam(dut, 'size_limit_mb', '1', () => {
    t.is(attemptSize(8 * PAGE), 'OK');
    t.is(attemptSize(MiB), 'OK', 'exactly the limit');
    t.is(attemptSize(MiB + PAGE), 'EINVAL', 'one page over the limit');
  });
  t.true(unpinned(fd), 'no refused create left a pin');
  native.close(fd);
});

test.serial('a 2 GiB buffer (a page array over 4 MB) is created and holds the memfd\'s bytes (CVE-2024-56544)', async (t) => {
  const size = 2 ** 31 + PAGE;
  const fd = memfd(size);
  const source = mapShared(fd, size);
  // One marked byte per MiB, at a different offset in each, plus the very last byte.
  const places: [number, number][] = [];
  for (let mib = 0; mib * MiB < size; mib++) places.push([mib * MiB + ((mib * 4099) % Math.min(MiB, size - mib * MiB)), (mib * 7 + 1) & 0xff || 0x5a]);
  places.push([size - 1, 0x22]);
  for (const [at, value] of places) source[at] = value;
  await withParam(dut, 'size_limit_mb', '4096', () => {
    const buf = create(dev, { memfd: fd, offset: 0, size });
    const view = mapShared(buf, size, false);
    const wrong = places.filter(([at, value]) => view[at] !== value).map(([at, value]) => `0x${at.toString(16)}: ${view[at]} not ${value}`);
    t.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of ${places.length} places differ`);
    t.is(places.length, 2050);
    unmapView(view);
    native.close(buf);
  });
  unmapView(source);
  native.close(fd);
});

test.serial('the seal check does not race with F_SEAL_WRITE: never both succeed', async (t) => {
  const flag = new SharedArrayBuffer(4);
  const gate = new Int32Array(flag);
  const url = new URL('./fixtures/seal-race-worker.js', import.meta.url);
  const sealer = new Worker(url, { workerData: { role: 'seal', flag } });
  const creator = new Worker(url, { workerData: { role: 'create', flag } });
  const next = (w: Worker): Promise<RaceReport> => new Promise((resolve) => w.once('message', resolve));
  const seen = new Map<string, number>();
  try {
    for (let round = 1; round <= 40; round++) {
      const fd = memfd(64 * PAGE);
      const job = { round, memfd: fd, dev, size: 64 * PAGE };
      const results = Promise.all([next(sealer), next(creator)]);
      sealer.postMessage(job);
      creator.postMessage(job);
      Atomics.store(gate, 0, round);
      const [sealReport, createReport] = await results;
      const [sealed, created] = [sealReport.result, createReport.result];
      const key = `seal ${sealed}, create ${created}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      // The driver's guarantee (udmabuf/pin.c): the seal check and the pin happen under the
      // inode lock F_SEAL_WRITE takes, so exactly one of the two orders happened.
      if (created === 'OK') {
        t.is(sealed, 'EBUSY', `round ${round}: the create won, so the seal must have met the pin`);
        t.is(native.getSeals(fd) & L.F_SEAL_WRITE, 0, `round ${round}: a buffer exists, so the write seal was not set before it`);
        t.is(addSeals(fd, L.F_SEAL_WRITE), 'EBUSY', `round ${round}: F_SEAL_WRITE after the pin fails while the buffer lives`);
      } else {
        t.is(sealed, 'OK', `round ${round}: ${key}`);
        t.is(created, 'EINVAL', `round ${round}: the seal won, so create is refused for the seal`);
        t.is(native.getSeals(fd) & L.F_SEAL_WRITE, L.F_SEAL_WRITE);
      }
      if (createReport.fd >= 0) native.close(createReport.fd);
      if (created === 'OK') t.is(addSeals(fd, L.F_SEAL_WRITE), 'OK', `round ${round}: once the buffer is closed the seal goes on`);
      native.close(fd);
    }
  } finally {
    await sealer.terminate();
    await creator.terminate();
  }
  t.log([...seen].map(([k, n]) => `${k}: ${n}`).join('; '));
});

test.serial('F_SEAL_FUTURE_WRITE: a memfd sealed before create is refused', (t) => {
  const fd = memfd(4 * PAGE, L.F_SEAL_SHRINK | L.F_SEAL_FUTURE_WRITE);
  t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'EINVAL');
  t.true(unpinned(fd), 'the refused create pinned nothing');
  native.close(fd);
});

test.serial('F_SEAL_FUTURE_WRITE after create: the seal goes on, the buffer keeps working, later creates are refused', (t) => {
  // F_SEAL_FUTURE_WRITE only stops new writers (write(2), new writable mappings); it does not
  // wait for pins. A buffer created before it stays what it was: the same pages, writable
  // through its own mapping and through mappings of the memfd made before the seal.
  const fd = memfd(4 * PAGE);
  const memfdView = mapShared(fd, 4 * PAGE);
  memfdView[0] = 7;
  const buf = create(dev, { memfd: fd, offset: 0, size: 4 * PAGE });
  t.is(addSeals(fd, L.F_SEAL_FUTURE_WRITE), 'OK');
  t.is(native.getSeals(fd) & L.F_SEAL_FUTURE_WRITE, L.F_SEAL_FUTURE_WRITE);
  const bufView = mapShared(buf, 4 * PAGE, true);
  memfdView[PAGE + 1] = 9;
  t.deepEqual([bufView[0], bufView[PAGE + 1]], [7, 9], 'the dma-buf shows the memfd, also writes after the seal');
  bufView[3 * PAGE + 2] = 5;
  t.is(memfdView[3 * PAGE + 2], 5, 'a write through the dma-buf lands in the memfd');
  t.is(attemptMap(fd), 'EPERM', 'the seal works: no new writable mapping of the memfd');
  t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'EINVAL', 'a new create sees the seal');
  t.is(addSeals(fd, L.F_SEAL_WRITE), 'EBUSY', 'the buffer still pins the pages');
  unmapView(bufView);
  native.close(buf);
  unmapView(memfdView);
  t.true(unpinned(fd), 'closing the buffer released its pins');
  native.close(fd);
});

test.serial('bad fds fail with EBADFD and leave no pins behind', (t) => {
  const good = memfd(4 * PAGE);
  t.is(outcome(() => create(dev, { memfd: 0xffffffff, offset: 0, size: PAGE })), 'EBADFD');
  // The first range pins pages before the second fails: they must be released.
  t.is(outcome(() => createList(dev, [{ memfd: good, offset: 0, size: 4 * PAGE }, { memfd: 987654, offset: 0, size: PAGE }])), 'EBADFD');
  const devnull = openDevice('/dev/null');
  t.is(outcome(() => createList(dev, [{ memfd: good, offset: 0, size: 4 * PAGE }, { memfd: devnull, offset: 0, size: PAGE }])), 'EBADFD');
  native.close(devnull);
  t.true(unpinned(good), 'F_SEAL_WRITE succeeds: no page of the memfd is still pinned');
  native.close(good);
});

test.serial('a failure on a later range past the memfd end releases the earlier ranges', (t) => {
  const a = memfd(4 * PAGE);
  const b = memfd(4 * PAGE);
  t.is(outcome(() => createList(dev, [{ memfd: a, offset: 0, size: 4 * PAGE }, { memfd: b, offset: 2 * PAGE, size: 4 * PAGE }])), 'EINVAL');
  t.true(unpinned(a));
  native.close(a);
  native.close(b);
});

test.serial('unknown create flags fail with EINVAL', (t) => {
  const fd = memfd(PAGE);
  t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE }, 0x2)), 'EINVAL');
  t.is(outcome(() => createList(dev, [{ memfd: fd, offset: 0, size: PAGE }], 0x80000000)), 'EINVAL');
  native.close(fd);
});

test.serial('end_cpu_access without begin is an error, also after balanced pairs', (t) => {
  const fd = memfd(4 * PAGE);
  const buf = create(dev, { memfd: fd, offset: 0, size: 4 * PAGE });
  const sync = (flags: number): string => syncBuffer(buf, flags);
  const start = dmaBufAbi.DMA_BUF_SYNC_START | dmaBufAbi.DMA_BUF_SYNC_RW;
  const end = dmaBufAbi.DMA_BUF_SYNC_END | dmaBufAbi.DMA_BUF_SYNC_RW;
  t.deepEqual([sync(end), sync(start), sync(start), sync(end), sync(end), sync(end)], ['EINVAL', 'OK', 'OK', 'OK', 'OK', 'EINVAL']);
  native.close(buf);
  native.close(fd);
});

test.serial('when the new fd cannot be installed (EMFILE) nothing leaks', (t) => {
  // A child with a tiny fd limit fills its table, then creates: dma_buf_fd fails after export.
  const script = `
    import { openSync } from 'node:fs';
    import { native } from '${new URL('../../lib/core/native.js', import.meta.url).pathname}';
    import { addSeals, create, memfd, outcome } from '${new URL('./helpers/raw.js', import.meta.url).pathname}';
    const dev = openSync(process.env.DEV, 'r+');
    const fd = memfd(16 * 4096);
    const filler = [];
    try { for (;;) filler.push(openSync('/dev/null', 'r')); } catch {}
    const result = outcome(() => create(dev, { memfd: fd, offset: 0, size: 16 * 4096 }));
    for (const f of filler) native.close(f);
    const sealed = addSeals(fd, 8); // F_SEAL_WRITE: fails while anything pins the memfd
    console.log(JSON.stringify({ result, sealed }));`;
  const child = spawnSync('sh', ['-c', 'ulimit -n 128 && exec node --input-type=module -e "$SCRIPT"'], {
    env: { ...process.env, SCRIPT: script, DEV: dut.path },
    encoding: 'utf8',
  });
  t.is(child.status, 0, child.stderr);
  t.deepEqual(JSON.parse(child.stdout.trim().split('\n').pop()!), { result: 'EMFILE', sealed: 'OK' });
});

checkBaseline();
