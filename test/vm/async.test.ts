// The async paths of the dma-buf API: createAsync pins the files it was given (not whatever
// reuses their numbers by the time the worker runs), syncAsync brackets async work with START and
// END (and sync refuses it), and the async surface exports match the synchronous ones.
import test from 'ava';
import { read, readdirSync, readlinkSync, writeSync } from 'node:fs';
import {
  AbortError,
  drmFormat,
  exportFramebuffer,
  exportFramebufferAsync,
  exportVirtioGpuResource,
  exportVirtioGpuResourceAsync,
  GuestMemory,
  InvalidArgumentError,
  Memfd,
  SurfaceCache,
  Udmabuf,
  unmap,
  type DmaBuf,
} from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import { baselineGuard } from './helpers/baseline.js';
import { fillPattern, PAGE, syncBuffer } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
/** What each open fd of this process refers to, by number. */
function openFiles(): Map<number, string> {
  const files = new Map<number, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      files.set(Number(fd), readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed while listing
    }
  }
  return files;
}
/** How many fds of this process refer to `target` (a path such as /dev/udmabuf or a memfd's). */
const fdsTo = (target: string): number => [...openFiles().values()].filter((file) => file === target).length;
const SIZE = 64 * PAGE;

/**
 * Blocks every libuv pool thread in a read(2) on a blocking socket until the returned release
 * is called, so work queued meanwhile waits its turn: deterministic, unlike work that merely
 * takes a while (under TCG a busy thread can finish before the main thread gets to its next
 * line).
 */
function occupyThreadPool(): { release(): Promise<void> } {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const [reader, writer] = native.socketpair();
  native.setNonBlocking(reader, false);
  const reads = Array.from({ length: threads }, () => new Promise<void>((resolve, reject) => read(reader, Buffer.alloc(1), 0, 1, null, (err) => (err ? reject(err) : resolve()))));
  return {
    async release() {
      writeSync(writer, Buffer.alloc(threads));
      await Promise.all(reads);
      native.close(reader);
      native.close(writer);
    },
  };
}

function sealedMemfd(name: string, seed: number): Memfd {
  const memfd = Memfd.create(name, SIZE, { seals: ['shrink'] });
  const view = memfd.map();
  fillPattern(view, seed);
  unmap(view);
  return memfd;
}

/** 'OK' or the errno of a bare DMA_BUF_IOCTL_SYNC END: EINVAL (from guest_udmabuf) when no START is open. */
const bareEnd = (buf: DmaBuf): string => syncBuffer(buf.fd, dmaBufAbi.DMA_BUF_SYNC_RW | dmaBufAbi.DMA_BUF_SYNC_END);

test.serial('createAsync pins the memfd given at the call, even when it is closed and its number reused before the worker runs', async (t) => {
  const dev = Udmabuf.open();
  const given = sealedMemfd('the-one-given', 1);
  const expected = Buffer.from(given.map()); // unmapped below
  const pool = occupyThreadPool();
  const pending = dev.createAsync([{ memfd: given, offset: 0, size: SIZE }]);
  const number = given.fd;
  given.close();
  const impostor = sealedMemfd('an-impostor', 2);
  dev.close(); // the device too: createAsync holds its own reference
  t.is(impostor.fd, number, `the number was reused (the case under test); fd ${number} is now ${openFiles().get(number) ?? 'closed'}`);
  await pool.release();
  const buf = await pending;
  const view = buf.map();
  t.true(Buffer.from(view).equals(expected), 'the dma-buf holds the pages of the memfd given, not of the impostor');
  unmap(view);
  buf.close();
  impostor.close();
});

test.serial('createAsync closes its dups whether the create succeeds or fails', async (t) => {
  using dev = Udmabuf.open();
  using memfd = sealedMemfd('dups', 3);
  // Counted by what they refer to, so that fds other code opens or closes meanwhile do not count.
  const memfdPath = readlinkSync(`/proc/self/fd/${memfd.fd}`);
  const holders = (): [number, number] => [fdsTo(memfdPath), fdsTo(dev.path)];
  (await dev.createAsync([{ memfd, offset: 0, size: SIZE }])).close();
  t.deepEqual(holders(), [1, 1], 'after a create: the memfd and the device once each');
  // Past the memfd's end: refused by the library's checks, before the dups.
  await t.throwsAsync(dev.createAsync([{ memfd, offset: 0, size: SIZE * 2 }]));
  // A memfd without the shrink seal: refused by the kernel, after the dups.
  using unsealed = Memfd.create('unsealed', SIZE);
  unsealed.addSeals(['grow']);
  await t.throwsAsync(dev.createAsync([{ memfd: unsealed, offset: 0, size: SIZE }]));
  t.deepEqual(holders(), [1, 1], 'after failed creates');
  t.is(fdsTo(readlinkSync(`/proc/self/fd/${unsealed.fd}`)), 1, 'the unsealed memfd once');
});

test.serial('syncAsync: START before the async work, END after it (even when it fails), and the value comes back', async (t) => {
  using dev = Udmabuf.open();
  using memfd = sealedMemfd('sync-async', 4);
  using buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
  const view = buf.map();
  const value = await buf.syncAsync('read', async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    // A START is open now: a bare END succeeds; re-open it for syncAsync's own END.
    const inside = bareEnd(buf);
    syncBuffer(buf.fd, dmaBufAbi.DMA_BUF_SYNC_RW | dmaBufAbi.DMA_BUF_SYNC_START);
    return [inside, view[0]] as const;
  });
  t.deepEqual(value, ['OK', view[0]]);
  t.is(bareEnd(buf), 'EINVAL', 'syncAsync ran its END: nothing is left open');
  await t.throwsAsync(
    buf.syncAsync('write', async () => {
      await Promise.resolve();
      throw new Error('boom');
    }),
    { message: 'boom' },
  );
  t.is(bareEnd(buf), 'EINVAL', 'END ran after the failed work');
  unmap(view);
});

test.serial('syncAsync with an aborted signal rejects with AbortError before START, without running the work', async (t) => {
  using dev = Udmabuf.open();
  using memfd = sealedMemfd('sync-abort', 5);
  using buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
  let ran = false;
  await t.throwsAsync(
    buf.syncAsync('rw', () => (ran = true), { signal: AbortSignal.abort() }),
    { instanceOf: AbortError },
  );
  t.false(ran);
  t.is(bareEnd(buf), 'EINVAL', 'no START was left open');
});

test.serial('sync refuses a callback that returns a promise: END runs, InvalidArgumentError names syncAsync, no unhandled rejection', async (t) => {
  using dev = Udmabuf.open();
  using memfd = sealedMemfd('sync-refuse', 6);
  using buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const err = t.throws(() =>
    buf.sync('read', async () => {
      await Promise.resolve();
      throw new Error('late failure');
    }),
  );
  t.true(err instanceof InvalidArgumentError, `${err?.name}: ${err?.message}`);
  t.regex(err!.message, /syncAsync/);
  t.is(bareEnd(buf), 'EINVAL', 'END ran before the throw');
  await new Promise((resolve) => setTimeout(resolve, 50));
  process.off('unhandledRejection', onUnhandled);
  t.deepEqual(unhandled, [], "the callback's rejection was not left unhandled");
  t.is(buf.sync('read', () => 7), 7, 'a synchronous callback still works');
});

test.serial('exportFramebufferAsync and exportVirtioGpuResourceAsync give what the synchronous exports give; cached re-exports are hits', async (t) => {
  using dev = Udmabuf.open();
  using ram = Memfd.create('pc.ram', 8 << 20, { seals: ['shrink'] });
  const memory = new GuestMemory([{ gpa: 0, size: 8 << 20, memfd: ram, offset: 0 }]);
  const fb = { gpa: 0x100100, width: 320, height: 200, stride: 1280, format: drmFormat('XR24').fourcc };
  using sync = exportFramebuffer(dev, memory, fb);
  using async = await exportFramebufferAsync(dev, memory, fb);
  t.deepEqual([async.planes, async.width, async.height, async.fourcc, async.modifier], [sync.planes, sync.width, sync.height, sync.fourcc, sync.modifier]);
  t.is(async.dmabuf.size, sync.dmabuf.size);

  const resource = { resourceId: 9, format: 2, width: 64, height: 64, entries: [{ addr: 0x400000, length: 0x4000 }] };
  using cache = new SurfaceCache();
  using first = await exportVirtioGpuResourceAsync(dev, memory, resource, { cache });
  using again = await exportVirtioGpuResourceAsync(dev, memory, resource, { cache });
  using plain = exportVirtioGpuResource(dev, memory, resource);
  t.deepEqual(first.planes, plain.planes);
  t.is(first.dmabuf.size, plain.dmabuf.size);
  t.like(cache.stats, { entries: 1, hits: 1, misses: 1 });
  t.not(again.dmabuf.fd, first.dmabuf.fd, 'the hit is a dup');
});

checkBaseline();
