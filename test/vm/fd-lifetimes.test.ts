// What a dma-buf costs in fds after close(): nothing, unless the caller asked for its release
// (then one eventfd, until the release). Closing, failing to close, and collection all count a
// holder down; sync files closed while waited on settle and leave nothing behind.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AbortError, ClosedError, EventFd, Memfd, Udmabuf, unmap, type DmaBuf } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { collectGarbage } from '../host/fixtures/gc.js';
import { collect, exited } from '../host/fixtures/support.js';
import { inodeOf, isLive } from './helpers/dmabuf-debugfs.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** The fds a dma-buf can cost this process: dma-bufs, eventfds, sync files, memfds. */
function libraryFds(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return /memfd:|dmabuf|eventfd|sync_file/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false; // closed while listing
    }
  }).length;
}

const dev = Udmabuf.open();
const memfd = Memfd.create('fd-lifetimes', 1 << 20, { seals: ['shrink'] });
test.before(async () => {
  // Whatever the first wait sets up (the poller keeps no fd of its own now) goes into the baselines.
  using eventfd = EventFd.create();
  setTimeout(() => eventfd.signal(), 10);
  await eventfd.wait();
});
test.after.always(() => {
  memfd.close();
  dev.close();
});

const createOne = (): DmaBuf => dev.create([{ memfd, offset: 0, size: 4096 }]);

test.serial('the driver offers release notification (the subject of this file)', (t) => {
  t.true(dev.extensions.releaseNotification, `${dev.path} is ${dev.module}`);
});

test.serial('10,000 create -> map -> close cycles, mappings released only at the end, leave the fd count at baseline', (t) => {
  const baseline = libraryFds();
  const views: Uint8Array[] = [];
  for (let i = 0; i < 10_000; i++) {
    const buf = createOne();
    views.push(buf.map());
    buf.close();
  }
  const whileMapped = libraryFds();
  for (const view of views) unmap(view);
  t.is(whileMapped, baseline, `fds after 10,000 closes with every mapping alive (baseline ${baseline})`);
  t.is(libraryFds(), baseline, 'fds after unmapping');
});

test.serial('whenReleased asked before close costs one fd until the release, then none', async (t) => {
  const baseline = libraryFds();
  const buf = createOne();
  const view = buf.map();
  const ino = inodeOf(buf.fd);
  let released = false;
  const waiting = buf.whenReleased().then(() => (released = true));
  buf.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.false(released, 'the mapping still holds the buffer');
  t.true(isLive(ino));
  t.is(libraryFds(), baseline + 1, 'one eventfd while the release is awaited');
  unmap(view);
  await waiting;
  t.false(isLive(ino));
  t.is(libraryFds(), baseline, 'the eventfd is closed once the release came');
});

test.serial('whenReleased asked only after the last close: resolves when the release already happened, ClosedError (ask before closing) when another holder remained', async (t) => {
  const gone = createOne();
  gone.close();
  await t.notThrowsAsync(gone.whenReleased(), 'released at close: the close took the notice');

  const baseline = libraryFds();
  const held = createOne();
  const view = held.map();
  held.close();
  const err = await t.throwsAsync(held.whenReleased(), { instanceOf: ClosedError });
  t.regex(err!.message, /before closing/);
  t.is(libraryFds(), baseline);
  unmap(view);
});

test.serial('an aborted whenReleased rejects with AbortError and, after the last close, gives its eventfd back', async (t) => {
  const baseline = libraryFds();
  const buf = createOne();
  const view = buf.map();
  const controller = new AbortController();
  const waiting = buf.whenReleased({ signal: controller.signal });
  const other = buf.dup();
  const kept = other.whenReleased(); // a second caller keeps the shared wait alive
  buf.close();
  other.close();
  controller.abort();
  await t.throwsAsync(waiting, { instanceOf: AbortError });
  t.is(libraryFds(), baseline + 1, 'the other caller still waits on the eventfd');
  unmap(view);
  await kept;
  t.is(libraryFds(), baseline);

  const alone = createOne();
  const aloneView = alone.map();
  const lone = new AbortController();
  const loneWait = alone.whenReleased({ signal: lone.signal });
  alone.close();
  lone.abort();
  await t.throwsAsync(loneWait, { instanceOf: AbortError });
  t.deepEqual(native.pollerStats(), { watches: 0, waits: 0 }, 'no wait left in the poller');
  t.is(libraryFds(), baseline, 'nobody waits any more: the eventfd is closed');
  unmap(aloneView);
});

test.serial('a close() that throws still counts its holder down', (t) => {
  const baseline = libraryFds();
  const buf = createOne();
  const dup = buf.dup();
  native.close(buf.fd); // behind its back: close(2) will fail with EBADF
  t.throws(() => buf.close(), { code: 'EBADF' });
  t.true(buf.closed);
  dup.close();
  t.is(libraryFds(), baseline, 'the eventfd is closed with the last holder');
});

test.serial('a dup collected without close() counts its holder down', async (t) => {
  const baseline = libraryFds();
  const buf = createOne();
  (() => {
    buf.dup(); // dropped at once
  })();
  await collectGarbage();
  t.is(libraryFds(), baseline + 2, 'the dup was collected (its fd closed): the buffer and its eventfd remain');
  buf.close();
  t.is(libraryFds(), baseline, 'the last close closed the eventfd');
});

test.serial('10,000 exportSyncFile -> wait -> close-while-waiting cycles: fd count at baseline, and the process exits by itself', async (t) => {
  const child = spawn(process.execPath, [fixture('sync-file-cycles.js'), '10000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  const exit = await exited(child);
  clearTimeout(timer);
  t.deepEqual(exit, { code: 0, signal: null }, `the child must exit on its own within 180 s; stderr: ${stderr()}`);
  const report = JSON.parse(stdout()) as { cycles: number; baseline: number; after: number; rejected: number; resolved: number; watches: number; waits: number };
  t.log(report);
  t.is(report.cycles, 10_000);
  t.is(report.rejected + report.resolved, 10_000, 'every wait settled');
  t.is(report.rejected, 10_000, 'closing rejected every pending wait with ClosedError');
  t.is(report.after, report.baseline, 'open fds');
  t.deepEqual([report.watches, report.waits], [0, 0], 'poller registrations');
});
