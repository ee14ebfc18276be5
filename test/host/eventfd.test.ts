// EventFd on the host: waits settled by the event loop's poller, across processes, on close, and
// keeping a process alive.
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EventFd } from '../../lib/index.js';
import { ClosedError, errnoCode } from '../../lib/core/errors.js';
import { collect, exited, openFdCount, sleep, warmUp } from './fixtures/support.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

test.before(warmUp);

test.serial('creating, waiting on, cancelling and closing eventfds leaks no fd', async (t) => {
  const before = openFdCount();
  for (let i = 0; i < 20; i++) {
    const eventfd = EventFd.create();
    const pending = eventfd.wait();
    eventfd.close();
    await t.throwsAsync(pending);
  }
  t.is(openFdCount(), before);
});

test('wait resolves with the count a timer signalled', async (t) => {
  using eventfd = EventFd.create();
  setTimeout(() => eventfd.signal(3), 30);
  t.is(await eventfd.wait(), 3n);
  t.is(eventfd.read(), null, 'wait took the whole count');
});

test('read() is null at zero and takes the whole count otherwise', (t) => {
  using eventfd = EventFd.create(5);
  t.is(eventfd.read(), 5n);
  t.is(eventfd.read(), null);
  eventfd.signal(2n);
  eventfd.signal();
  t.is(eventfd.read(), 3n);
});

test('semaphore mode takes 1 at a time', async (t) => {
  using eventfd = EventFd.create(3, { semaphore: true });
  t.true(eventfd.semaphore);
  t.deepEqual([eventfd.read(), eventfd.read(), eventfd.read(), eventfd.read()], [1n, 1n, 1n, null]);
  setTimeout(() => eventfd.signal(2), 10);
  t.deepEqual([await eventfd.wait(), await eventfd.wait()], [1n, 1n]);
});

test('timers keep firing while a wait is pending', async (t) => {
  using eventfd = EventFd.create();
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  setTimeout(() => eventfd.signal(), 200);
  await eventfd.wait();
  clearInterval(ticker);
  // A wait that blocked the thread would never see the signal (a timer on this thread sends it);
  // one that polls with microtasks alone would starve timers. Ticks are not counted against the
  // clock: a loaded machine may run the ticker only once in 200 ms.
  t.true(ticks >= 1, `${ticks} ticks while the wait was pending`);
});

test('several waiters on one eventfd all wake', async (t) => {
  using eventfd = EventFd.create(0, { semaphore: true });
  const waits = [eventfd.wait(), eventfd.wait(), eventfd.wait()];
  await sleep(10);
  eventfd.signal(3);
  t.deepEqual(await Promise.all(waits), [1n, 1n, 1n]);
});

test('a signal from another process resolves the wait', async (t) => {
  using eventfd = EventFd.create();
  const child = spawn(process.execPath, [fixture('eventfd-signal.js'), '50', '9'], { stdio: ['ignore', 'inherit', 'pipe', eventfd.fd] });
  const stderr = collect(child.stderr);
  t.is(await eventfd.wait(), 9n);
  t.deepEqual(await exited(child), { code: 0, signal: null }, stderr());
});

test('close() rejects a pending wait with ClosedError (ERR_CLOSED)', async (t) => {
  const eventfd = EventFd.create();
  const pending = eventfd.wait();
  await sleep(10);
  eventfd.close();
  const err = await t.throwsAsync(pending, { instanceOf: ClosedError });
  t.is(errnoCode(err), 'ERR_CLOSED');
  t.true(eventfd.closed);
  t.throws(() => eventfd.signal(), { code: 'ERR_CLOSED' });
});

test('bad counts are refused with ERR_OUT_OF_RANGE', (t) => {
  t.is(errnoCode(t.throws(() => EventFd.create(-1))), 'ERR_OUT_OF_RANGE');
  t.is(errnoCode(t.throws(() => EventFd.create(2 ** 32))), 'ERR_OUT_OF_RANGE');
  using eventfd = EventFd.create();
  t.is(errnoCode(t.throws(() => eventfd.signal(0))), 'ERR_OUT_OF_RANGE');
  t.is(errnoCode(t.throws(() => eventfd.signal(1.5))), 'ERR_OUT_OF_RANGE');
  t.is(errnoCode(t.throws(() => eventfd.signal(2n ** 64n - 1n))), 'ERR_OUT_OF_RANGE');
  eventfd.signal(2n ** 64n - 2n);
  t.is(errnoCode(t.throws(() => eventfd.signal())), 'EAGAIN', 'the counter is full');
});

test('a pending wait alone keeps a process alive until a child signals it', async (t) => {
  const child = spawn(process.execPath, [fixture('eventfd-keepalive.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  t.deepEqual(await exited(child), { code: 0, signal: null }, stderr());
  const result = JSON.parse(stdout()) as { count: string; waitedMs: number };
  t.is(result.count, '7');
  t.true(result.waitedMs >= 250, `waited ${result.waitedMs} ms for the 300 ms signal`);
});
