// The bad input upstream udmabuf shipped bugs for, one case each, against our driver.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as L from '../../lib/core/linux.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import type { RaceReport } from './fixtures/seal-race-worker.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice, withParam } from './helpers/devices.js';
import { addSeals, create, createList, mapShared, memfd, native, openDevice, outcome, PAGE, syncBuffer, unmapView } from './helpers/raw.js';

const dut = ourDevice();
const checkBaseline = baselineGuard(test);
const dev = openDevice(dut.path);
test.after.always(() => native.close(dev));

/** True when no page of `fd` is pinned any more: F_SEAL_WRITE waits for pins and fails EBUSY. */
function unpinned(fd: number): boolean {
  return addSeals(fd, L.F_SEAL_WRITE) === 'OK';
}

test.serial('size_limit_mb whose MiB value overflows 32 bits still limits correctly (CVE-2025-37803)', async (t) => {
  const fd = memfd(8 * PAGE);
  for (const mb of ['4096', '4294967295']) {
    await withParam(dut, 'size_limit_mb', mb, () => {
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'OK', `size_limit_mb=${mb}`);
    });
  }
  await withParam(dut, 'size_limit_mb', '1', () => {
    t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: 8 * PAGE })), 'OK');
  });
  native.close(fd);
});

test.serial('a 2 GiB buffer (a page array over 4 MB) is created and holds the memfd\'s bytes (CVE-2024-56544)', async (t) => {
  const size = 2 ** 31 + PAGE;
  const fd = memfd(size);
  const source = mapShared(fd, size);
  source[0] = 0x11;
  source[size - 1] = 0x22;
  await withParam(dut, 'size_limit_mb', '4096', () => {
    const buf = create(dev, { memfd: fd, offset: 0, size });
    const view = mapShared(buf, size, false);
    t.is(view[0], 0x11);
    t.is(view[size - 1], 0x22);
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
      if (createReport.fd >= 0) native.close(createReport.fd);
      const key = `seal ${sealed}, create ${created}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      t.false(sealed === 'OK' && created === 'OK', `round ${round}: the memfd got F_SEAL_WRITE while a dma-buf pins it`);
      t.true(sealed === 'OK' || created === 'OK', `round ${round}: ${key}`);
      native.close(fd);
    }
  } finally {
    await sealer.terminate();
    await creator.terminate();
  }
  t.log([...seen].map(([k, n]) => `${k}: ${n}`).join('; '));
});

test.serial('F_SEAL_FUTURE_WRITE is refused, before or after sealing', (t) => {
  const fd = memfd(4 * PAGE, L.F_SEAL_SHRINK | L.F_SEAL_FUTURE_WRITE);
  t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'EINVAL');
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
