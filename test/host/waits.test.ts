// Waits on fds (EventFd, SyncFile, UnixSocket, UnixListener): closing rejects them with
// ClosedError, an AbortSignal rejects them with AbortError, and neither leaves a registration in
// the poller (its table, and the event loop's epoll set). A pending wait keeps its object alive; an
// object collected with no wait pending leaves nothing behind; fd-number reuse never confuses
// registrations.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AbortError, ClosedError, EventFd, SyncFile, UnixListener, UnixSocket } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { EPOLLIN } from '../../lib/fd/readiness.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectGarbage } from './fixtures/gc.js';
import { epollTargets, findPollerEpoll, pollerStats, within } from './fixtures/poller.js';
import { collect, encode, exited, openFdCount, sleep } from './fixtures/support.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-waits-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let epoll = -1;
let baseline = 0;
test.before(async () => {
  ({ epoll, baseline } = await findPollerEpoll());
});

/** The poller holds nothing: no watch, no wait, and no fd of ours in the loop's epoll set. */
function assertIdle(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, when: string): void {
  t.deepEqual(pollerStats(), { watches: 0, waits: 0 }, `${when}: the poller's table`);
  t.is(epollTargets(epoll), baseline, `${when}: fds in the loop's epoll set (the loop's own only)`);
}

/** A SyncFile stand-in on the host (no dma-buf here): a sync_file is any fd that turns readable. */
function syncFileOver(eventfd: number): SyncFile {
  return new SyncFile(eventfd);
}

/** Objects with a wait that stays pending until something happens, one per waiting class. */
interface Case {
  name: string;
  /** Starts a wait that will not settle by itself, with `signal`. */
  start(signal?: AbortSignal): { pending: Promise<unknown>; close(): void; cleanup(): void };
}

const cases: Case[] = [
  {
    name: 'EventFd.wait',
    start(signal) {
      const eventfd = EventFd.create();
      return { pending: eventfd.wait({ signal }), close: () => eventfd.close(), cleanup: () => eventfd.close() };
    },
  },
  {
    name: 'SyncFile.wait',
    start(signal) {
      const file = syncFileOver(native.eventfd(0, false));
      return { pending: file.wait({ signal }), close: () => file.close(), cleanup: () => file.close() };
    },
  },
  {
    name: 'UnixSocket.receive',
    start(signal) {
      const [a, b] = UnixSocket.pair();
      return { pending: a.receive({ signal }), close: () => a.close(), cleanup: () => (a.close(), b.close()) };
    },
  },
  {
    name: 'UnixSocket.send (socket buffer full)',
    start(signal) {
      const [a, b] = UnixSocket.pair();
      return { pending: a.send(new Uint8Array(16 << 20), [], { signal }), close: () => a.close(), cleanup: () => (a.close(), b.close()) };
    },
  },
  {
    name: 'UnixListener.accept',
    start(signal) {
      const listener = UnixListener.listen(join(dir, `accept-${Math.random()}.sock`));
      return { pending: listener.accept({ signal }), close: () => listener.close(), cleanup: () => listener.close() };
    },
  },
];

for (const c of cases) {
  test.serial(`${c.name}: close() rejects the pending wait with ClosedError and leaves no registration`, async (t) => {
    const before = openFdCount();
    const wait = c.start();
    await sleep(10);
    wait.close();
    const err = await t.throwsAsync(within(wait.pending, 2000, c.name), { instanceOf: ClosedError });
    t.is(err?.code, 'ERR_CLOSED');
    wait.cleanup();
    assertIdle(t, 'after close');
    t.is(openFdCount(), before, 'fds');
  });

  test.serial(`${c.name}: an AbortSignal rejects it with AbortError and leaves no registration`, async (t) => {
    const controller = new AbortController();
    const wait = c.start(controller.signal);
    await sleep(10);
    t.is(pollerStats().waits, 1, 'the wait is registered while pending');
    const reason = new Error('enough');
    controller.abort(reason);
    const err = await t.throwsAsync(within(wait.pending, 2000, c.name), { instanceOf: AbortError });
    t.is(err?.code, 'ABORT_ERR');
    t.is(err?.cause, reason);
    assertIdle(t, 'after abort, before close');
    wait.cleanup();
  });

  test.serial(`${c.name}: an already aborted signal rejects at once`, async (t) => {
    const wait = c.start(AbortSignal.abort());
    await t.throwsAsync(within(wait.pending, 2000, c.name), { instanceOf: AbortError });
    assertIdle(t, 'after the refused wait');
    wait.cleanup();
  });
}

test.serial('aborting one wait leaves the other waits on the same object pending, and they still wake', async (t) => {
  using eventfd = EventFd.create(0, { semaphore: true });
  const controller = new AbortController();
  const aborted = eventfd.wait({ signal: controller.signal });
  const kept = eventfd.wait();
  await sleep(10);
  controller.abort();
  await t.throwsAsync(aborted, { instanceOf: AbortError });
  t.deepEqual(pollerStats(), { watches: 1, waits: 1 });
  eventfd.signal();
  t.is(await within(kept, 2000, 'the remaining wait'), 1n);
  t.deepEqual(pollerStats(), { watches: 0, waits: 0 }, 'no wait left the moment the last one woke');
  // The woken watch's handle lingers until the check phase of the loop iteration that woke it
  // (a new wait from the promise reactions would reuse it), which runs before setImmediate's.
  await new Promise((resolve) => setImmediate(resolve));
  assertIdle(t, 'after the remaining wait woke');
});

test.serial('a pending wait keeps its object reachable; a stale wait never wakes on the fd that reuses its number', async (t) => {
  let file: SyncFile | undefined = syncFileOver(native.eventfd(0, false));
  const number = file.fd;
  const ref = new WeakRef(file);
  let settled = false;
  const pending = file.wait().finally(() => (settled = true));
  pending.catch(() => {});
  file = undefined;
  await collectGarbage();
  t.truthy(ref.deref(), 'the SyncFile was collected (and its fd closed) while a wait on it was pending');
  // Whatever happened to the first fd, a new one that may reuse its number must not wake its wait.
  using other = EventFd.create();
  const otherWait = other.wait();
  other.signal();
  await within(otherWait, 2000, 'the other eventfd');
  await sleep(20);
  t.false(settled, `the wait on fd ${number} woke when fd ${other.fd} became readable`);
  ref.deref()?.close();
  await t.throwsAsync(pending, { instanceOf: ClosedError });
  assertIdle(t, 'after close');
});

test.serial('an object collected with no wait pending leaves no registration and no fd', async (t) => {
  const before = openFdCount();
  (() => {
    for (let i = 0; i < 20; i++) {
      const eventfd = EventFd.create(1);
      void eventfd.wait(); // settles at once (the count is 1): nothing stays pending
    }
  })();
  await sleep(20);
  await collectGarbage();
  assertIdle(t, 'after collection');
  t.is(openFdCount(), before, 'the collector closed every eventfd');
});

test.serial('closing an object right after its wait woke (its handle still lingering) leaves nothing, and the fd reusing its number wakes', async (t) => {
  const first = EventFd.create();
  const woke = first.wait();
  first.signal();
  await within(woke, 2000, 'the first wait');
  const number = first.fd;
  first.close(); // before the loop's check phase: the watch is cancelled with no wait pending
  t.deepEqual(pollerStats(), { watches: 0, waits: 0 });
  using second = EventFd.create();
  t.is(second.fd, number, 'the kernel reused the number (the case under test)');
  const waiting = second.wait();
  await sleep(10);
  second.signal();
  t.is(await within(waiting, 2000, 'the wait on the fd that reused the number'), 1n);
  await new Promise((resolve) => setImmediate(resolve));
  assertIdle(t, 'after both');
});

test.serial('the poller never merges registrations across fd-number reuse (raw addon calls)', async (t) => {
  // A caller that closes an fd without cancelling its watch (the library never does): the
  // forgotten watch must not become the new fd's, and the new fd's wait must not wake it.
  const first = native.eventfd(0, false);
  const forgotten = native.waitFd(1e13, first, EPOLLIN, 1e13 + 1);
  let forgottenSettled = false;
  void forgotten.then(
    () => (forgottenSettled = true),
    () => (forgottenSettled = true),
  );
  native.close(first);
  const second = native.eventfd(0, false);
  t.is(second, first, 'the kernel reused the number (the case under test)');
  const fresh = native.waitFd(1e13 + 2, second, EPOLLIN, 1e13 + 3);
  native.eventfdWrite(second, 1);
  t.true(((await within(fresh, 2000, 'the new fd')) & EPOLLIN) !== 0);
  await sleep(20);
  t.false(forgottenSettled, "the new fd's readiness woke the forgotten wait");
  native.cancelWatch(1e13);
  await t.throwsAsync(forgotten, { code: 'ECANCELED' });
  native.cancelWatch(1e13 + 2); // its woken handle lingers until the loop's check phase
  native.close(second);
  assertIdle(t, 'after cancelling the forgotten watch');
});

test.serial('10,000 wait-then-close cycles leave the fd count at baseline, and the process exits by itself', async (t) => {
  const child = spawn(process.execPath, [fixture('close-while-waiting.js'), '10000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exit = await exited(child);
  clearTimeout(timer);
  t.deepEqual(exit, { code: 0, signal: null }, `the child must exit on its own within 60 s; stderr: ${stderr()}`);
  const report = JSON.parse(stdout()) as { cycles: number; baseline: number; after: number; rejected: number; watches: number; waits: number };
  t.is(report.cycles, 10_000);
  t.is(report.rejected, 10_000, 'every wait rejected with ClosedError');
  t.is(report.after, report.baseline, 'open fds');
  t.deepEqual([report.watches, report.waits], [0, 0], 'poller registrations');
});

test.serial('receive: a receive queued behind another rejects as soon as its signal aborts; the positional form still works', async (t) => {
  const [a, b] = UnixSocket.pair();
  const first = a.receive();
  const controller = new AbortController();
  const queued = a.receive({ signal: controller.signal });
  controller.abort();
  await t.throwsAsync(within(queued, 2000, 'the queued receive'), { instanceOf: AbortError });
  await b.send(encode('hello'));
  t.is((await first).data.length, 5, 'the first receive got the bytes, the aborted one was skipped');
  await b.send(encode('abc'));
  t.is((await a.receive(2, 0)).data.length, 2, 'receive(maxBytes, maxFds)');
  a.close();
  b.close();
  assertIdle(t, 'after the receives');
});
