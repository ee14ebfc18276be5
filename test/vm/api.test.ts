// The public API (Memfd, Udmabuf, DmaBuf) against the real drivers: every DmaBuf method, the
// typed error for each bad input, and no leaks over many cycles.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ClosedError, CreateError, GuestDmabufError, Memfd, NotSupportedError, Udmabuf, unmap, type MemfdRange } from '../../lib/index.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import { InvalidArgumentError } from '../../lib/core/errors.js';
import { watchEventLoop } from '../event-loop-watch.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, readParam } from './helpers/devices.js';
import { isLive, liveDmaBufs, ourBuffers } from './helpers/dmabuf-debugfs.js';
import { fillPattern, native, PAGE, syncBuffer } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const SIZE = 1 << 20;

/** Every open fd of this process (openFdCount counts only memfds and dma-bufs). */
const fdCount = (): number => readdirSync('/proc/self/fd').length;
/** Mappings of dma-bufs and memfds (V8's own heap mappings come and go with the heap). */
const mapCount = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => /dmabuf|memfd:/.test(line)).length;

/** A sealed memfd holding a pattern. */
function patterned(size = SIZE, seed = 1): Memfd {
  const memfd = Memfd.create('api-test', size, { seals: ['shrink'] });
  const view = memfd.map();
  fillPattern(view, seed);
  unmap(view);
  return memfd;
}

const ms = (n: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, n));

for (const dut of devicesUnderTest()) {
  const name = (what: string): string => `${dut.label}: ${what}`;
  const ours = dut.label === 'ours';

  test.serial(name('extensions are probed, not assumed'), (t) => {
    using dev = Udmabuf.open(dut.path);
    t.deepEqual(dev.extensions, { releaseNotification: ours, accounting: ours });
    t.is(dev.module, ours ? 'guest_udmabuf' : 'udmabuf');
    t.deepEqual(dev.limits, { listLimit: Number(readParam(dut, 'list_limit')), sizeLimitBytes: BigInt(readParam(dut, 'size_limit_mb')) << 20n, parametersPath: dut.parameters });
  });

  test.serial(name('DmaBuf: fd, size, map, info, setName, dup, close and using'), (t) => {
    using dev = Udmabuf.open(dut.path);
    using memfd = patterned();
    const source = memfd.map();
    const expected = Buffer.from(source.slice());
    unmap(source);
    let dupFd = -1;
    {
      using buf = dev.create([{ memfd, offset: 0n, size: SIZE }]);
      t.is(buf.size, BigInt(SIZE));
      t.true(buf.fd >= 0);
      const view = buf.map();
      t.true(Buffer.from(view).equals(expected), 'the dma-buf shows the memfd bytes');
      unmap(view);

      const writable = buf.map({ write: true });
      writable[5] = 0xab;
      const backing = memfd.map();
      t.is(backing[5], 0xab, 'a write through the dma-buf lands in the memfd');
      unmap(backing);
      unmap(writable);

      buf.setName('api-test-buffer');
      const info = buf.info();
      t.deepEqual(info, { size: BigInt(SIZE), count: 1, exporter: ours ? 'guest_udmabuf' : 'udmabuf', name: 'api-test-buffer' });
      t.throws(() => buf.setName('x'.repeat(40)), { instanceOf: GuestDmabufError, code: 'ERR_OUT_OF_RANGE', message: /at most 31/ });

      const copy = buf.dup();
      dupFd = copy.fd;
      t.not(copy.fd, buf.fd);
      t.is(buf.info().count, 2, 'the dup is a second reference to the same file');
      buf.close();
      buf.close(); // idempotent
      t.true(buf.closed);
      t.throws(() => buf.fd, { instanceOf: ClosedError, message: /dma-buf is closed/ });
      const again = copy.map();
      t.is(again[5], 0xab, 'the dup outlives the original');
      unmap(again);
      copy.close();
    }
    t.throws(() => native.fstat(dupFd), { code: 'EBADF' }, 'closed fds are really closed');
  });

  test.serial(name('DmaBuf.sync brackets START/END, also when the callback throws'), (t) => {
    using dev = Udmabuf.open(dut.path);
    using memfd = patterned();
    using buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
    const view = buf.map();
    t.is(buf.sync('read', () => view[0]), view[0]);
    t.is(buf.sync('write', () => 7), 7);
    t.is(buf.sync('rw', () => 'done'), 'done');
    t.throws(() => buf.sync('rw', () => { throw new Error('boom'); }), { message: 'boom' });
    if (ours) {
      // Had END not run, one END now would succeed; it fails because the depth is back to zero.
      // (The in-tree driver accepts any END once a START has happened, so it cannot tell.)
      t.is(syncBuffer(buf.fd, dmaBufAbi.DMA_BUF_SYNC_RW | dmaBufAbi.DMA_BUF_SYNC_END), 'EINVAL');
    }
    t.throws(() => buf.sync('bogus' as 'read', () => 0), { instanceOf: GuestDmabufError, code: 'ERR_INVALID_ARG_VALUE', message: /'read', 'write' or 'rw'/ });
    unmap(view);
  });

  test.serial(name('DmaBuf.exportSyncFile: an idle buffer gives a signalled sync_file'), async (t) => {
    using dev = Udmabuf.open(dut.path);
    using memfd = patterned();
    using buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
    for (const access of ['read', 'write', 'rw'] as const) {
      using sync = buf.exportSyncFile(access);
      await sync.wait();
      t.true(sync.fd >= 0);
    }
  });

  test.serial(name('DmaBuf.released: resolves at the final release with guest_udmabuf, rejects as unsupported otherwise'), async (t) => {
    using dev = Udmabuf.open(dut.path);
    using memfd = patterned();
    const buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
    const ino = Number(native.fstat(buf.fd).ino);
    if (!ours) {
      await t.throwsAsync(buf.released, { instanceOf: NotSupportedError, code: 'ERR_NOT_SUPPORTED', message: /not supported by this driver.*udmabuf/ });
      t.throws(() => dev.create([{ memfd, offset: 0, size: SIZE }], { releaseNotification: true }), { instanceOf: CreateError, code: 'ERR_NOT_SUPPORTED', message: /load guest_udmabuf/ });
      buf.close();
      return;
    }
    const view = buf.map();
    let settled = false;
    const released = buf.released.then(() => { settled = true; });
    buf.close();
    await ms(100);
    t.false(settled, 'a mapping still holds the buffer');
    t.true(isLive(ino));
    unmap(view);
    await released;
    t.false(isLive(ino));
    const plain = dev.create([{ memfd, offset: 0, size: SIZE }], { releaseNotification: false });
    await t.throwsAsync(plain.released, { instanceOf: NotSupportedError, message: /releaseNotification: false/ });
    plain.close();
  });

  test.serial(name('createAsync makes the largest allowed buffer off the main thread'), async (t) => {
    using dev = Udmabuf.open(dut.path);
    const limit = dev.limits.sizeLimitBytes;
    // Fresh memfds for both calls, so each pins pages it has to allocate first.
    using blockingRam = Memfd.create('api-largest-sync', limit, { seals: ['shrink'] });
    using memfd = Memfd.create('api-largest', limit + BigInt(PAGE), { seals: ['shrink'] });
    // The instrument first: the synchronous create blocks the loop for about as long as it takes.
    const syncWatch = watchEventLoop();
    await ms(20);
    const syncStarted = performance.now();
    dev.create([{ memfd: blockingRam, offset: 0, size: limit }]).close();
    const syncTook = performance.now() - syncStarted;
    await ms(20);
    const blocking = syncWatch.stop();

    const watch = watchEventLoop();
    await ms(20);
    const started = performance.now();
    using buf = await dev.createAsync([{ memfd, offset: 0, size: limit }]);
    const took = performance.now() - started;
    await ms(20);
    const loop = watch.stop();
    t.is(buf.size, limit);
    t.log(`${limit >> 20n} MiB: create ${syncTook.toFixed(0)} ms (longest event-loop gap ${blocking.maxGapMs.toFixed(0)} ms); createAsync ${took.toFixed(0)} ms (longest gap ${loop.maxGapMs.toFixed(0)} ms, ${loop.ticks} ticks)`);
    t.true(blocking.maxGapMs >= syncTook * 0.9, 'the watch sees a blocking call');
    t.true(syncTook >= 40, `the synchronous create took ${syncTook.toFixed(0)} ms: too short to tell blocking from not`);
    // Blocking, the longest gap would be the whole call; a gap of a third of it leaves room for a
    // TCG guest on a shared host without letting a blocking implementation through.
    t.true(loop.maxGapMs < took / 3, `while createAsync ran (${took.toFixed(0)} ms) the longest gap between ticks was ${loop.maxGapMs.toFixed(0)} ms`);
    t.true(loop.ticks >= 3, 'timers kept running');
    await t.throwsAsync(dev.createAsync([{ memfd, offset: 0, size: limit + BigInt(PAGE) }]), { instanceOf: CreateError, message: /size_limit_mb/ });
  });

  test.serial(name('each bad input gives a typed error naming the range and the fix, and leaks nothing'), (t) => {
    using dev = Udmabuf.open(dut.path);
    using good = patterned(SIZE);
    const noShrink = Memfd.create('no-shrink', SIZE);
    const writeSealed = Memfd.create('write-sealed', SIZE, { seals: ['shrink', 'write'] });
    const futureSealed = Memfd.create('future-sealed', SIZE, { seals: ['shrink', 'future-write'] });
    const closed = Memfd.create('closed', SIZE, { seals: ['shrink'] });
    closed.close();
    const devNull = openSync('/dev/null', 'r');
    const ok: MemfdRange = { memfd: good, offset: 0, size: PAGE };
    const limits = dev.limits;
    // The last column: the CreateError's rangeIndex (undefined: a CreateError for the whole
    // list), or null for an argument that is not a size at all (InvalidArgumentError).
    const cases: [string, readonly MemfdRange[], string, RegExp, number | undefined | null][] = [
      ['unaligned offset', [ok, { memfd: good, offset: 0x1800, size: PAGE }], 'ERR_INVALID_RANGE', /^range 1: offset 0x1800 is not page-aligned \(4096\)/, 1],
      ['unaligned size', [{ memfd: good, offset: 0, size: 0x1800 }], 'ERR_INVALID_RANGE', /^range 0: size 0x1800 is not a multiple of the page size/, 0],
      ['zero size', [{ memfd: good, offset: 0, size: 0 }], 'ERR_INVALID_RANGE', /^range 0: size is 0/, 0],
      ['no ranges', [], 'ERR_INVALID_RANGE', /no ranges/, undefined],
      ['past the end', [ok, ok, { memfd: good, offset: SIZE - PAGE, size: 2 * PAGE }], 'ERR_INVALID_RANGE', /^range 2: .* runs past the memfd's end \(0x100000\)/, 2],
      ['no shrink seal', [{ memfd: noShrink, offset: 0, size: PAGE }], 'ERR_MEMFD_SEALS', /^range 0: the memfd lacks the 'shrink' seal: add it with memfd.addSeals/, 0],
      ['write seal', [{ memfd: writeSealed, offset: 0, size: PAGE }], 'ERR_MEMFD_SEALS', /^range 0: .*'write' or 'future-write' seal/, 0],
      ['future-write seal', [ok, { memfd: futureSealed, offset: 0, size: PAGE }], 'ERR_MEMFD_SEALS', /^range 1: .*'write' or 'future-write' seal/, 1],
      ['closed Memfd', [{ memfd: closed, offset: 0, size: PAGE }], 'ERR_CLOSED', /^range 0: the memfd is closed/, 0],
      ['fd never opened', [ok, { memfd: 4000, offset: 0, size: PAGE }], 'EBADF', /^range 1: fd 4000 is not open/, 1],
      ['not a memfd', [ok, { memfd: devNull, offset: 0, size: PAGE }], 'ERR_NOT_A_MEMFD', /^range 1: fd \d+ is not a memfd/, 1],
      ['negative offset', [{ memfd: good, offset: -4096, size: PAGE }], 'ERR_OUT_OF_RANGE', /range 0 offset must be a non-negative/, null],
      ['fractional size', [{ memfd: good, offset: 0, size: 4096.5 }], 'ERR_OUT_OF_RANGE', /range 0 size must be a non-negative/, null],
      ['over list_limit', Array.from({ length: limits.listLimit + 1 }, () => ok), 'ERR_DRIVER_LIMIT', new RegExp(`${limits.listLimit + 1} ranges exceed the driver's list_limit of ${limits.listLimit}: .*raise .*list_limit`), undefined],
    ];
    const big = Memfd.create('big', limits.sizeLimitBytes, { seals: ['shrink'] });
    cases.push(['over size_limit_mb', [{ memfd: big, offset: 0, size: limits.sizeLimitBytes }, ok], 'ERR_DRIVER_LIMIT', /^range 1: the buffer would reach \d+ bytes, over the driver's size_limit_mb \(\d+ MiB\): raise .*size_limit_mb/, 1]);

    const fds = fdCount();
    for (const [what, ranges, code, message, rangeIndex] of cases) {
      const err = t.throws(() => dev.create(ranges), { instanceOf: GuestDmabufError, code, message }, what);
      if (rangeIndex === null) {
        t.true(err instanceof InvalidArgumentError, `${what}: an InvalidArgumentError`);
        t.false(err instanceof CreateError, `${what}: not a CreateError`);
      } else {
        t.true(err instanceof CreateError, `${what}: a CreateError`);
        t.is((err as CreateError).rangeIndex, rangeIndex, `${what}: rangeIndex`);
      }
    }
    t.is(fdCount(), fds, 'no fd leaked by a refused create');
    for (const memfd of [noShrink, writeSealed, futureSealed, big]) memfd.close();
    native.close(devNull);
    t.throws(() => Udmabuf.open('/dev/no-such-udmabuf'), { name: 'DeviceUnavailableError', code: 'ENOENT', message: /load the module: .*modprobe guest_udmabuf/ });
  });

  test.serial(name('10,000 create/map/close cycles leave fds, mappings and live buffers where they started'), (t) => {
    using dev = Udmabuf.open(dut.path);
    using memfd = patterned(64 * PAGE);
    const ranges = [{ memfd, offset: 0, size: 16 * PAGE }, { memfd, offset: 32 * PAGE, size: 16 * PAGE }];
    const source = memfd.map();
    const first = source[0];
    unmap(source);
    // Live buffers, as the kernel (dma_buf/bufinfo) and our driver (its debugfs list) see them:
    // a cycle that leaked a buffer (a reference, a pin) leaves one more behind.
    const exporter = ours ? 'guest_udmabuf' : 'udmabuf';
    const live = (): { kernel: number; driver: number | null } => ({ kernel: liveDmaBufs(exporter).length, driver: ours ? ourBuffers().length : null });
    const before = { fds: fdCount(), maps: mapCount(), live: live() };
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) {
      {
        using buf = dev.create(i % 2 ? ranges : ranges.slice(0, 1));
        const view = buf.map();
        if (view[0] !== first) throw new Error(`cycle ${i}: first byte ${view[0]}, the memfd has ${first}`);
        unmap(view);
        if (i === 0) t.deepEqual(live(), { kernel: before.live.kernel + 1, driver: ours ? before.live.driver! + 1 : null }, 'the counts see a live buffer');
      }
      if (i % 1000 === 999) t.deepEqual(live(), before.live, `live buffers after cycle ${i + 1}`);
    }
    t.log(`10,000 cycles in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const after = { fds: fdCount(), maps: mapCount(), live: live() };
    t.deepEqual(after, before);
  });
}

test.serial('objects collected by GC close their fds exactly once', (t) => {
  const worker = fileURLToPath(new URL('./fixtures/gc-worker.js', import.meta.url));
  const run = spawnSync(process.execPath, ['--expose-gc', worker], { encoding: 'utf8', timeout: 120_000 });
  t.is(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout) as { leakedBefore: number; openAfterGc: number; baseline: number; survivorIntact: boolean; reusedNumber: boolean };
  t.log(report);
  t.true(report.leakedBefore > report.baseline, 'the worker really left fds open');
  t.is(report.openAfterGc, report.baseline, 'GC closed every dropped object\'s fd');
  t.true(report.reusedNumber, 'the survivor got the closed object\'s fd number');
  t.true(report.survivorIntact, 'an fd number reused after an explicit close was not closed again by GC');
});

checkBaseline();
