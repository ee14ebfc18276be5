// The addon's fd-waiting, eventfd, socket, fstat and async ioctl calls, straight from the
// binding: results, error shapes, and argument checks.
import test from 'ava';
import { InvalidArgumentError } from '../../lib/core/errors.js';
import { openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { EPOLLHUP, EPOLLIN, EPOLLOUT } from '../../lib/fd/readiness.js';
import { native } from '../../lib/core/native.js';
import { MAX_FDS_PER_MESSAGE } from '../../lib/ipc/unix-socket.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

interface SystemError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

// Untyped access, to pass what the types forbid.
const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;

// Watch and wait ids for direct poller calls: unique, and far from the library's own.
let nextId = 1e12;
const id = (): number => nextId++;
const waitFd = (watch: number, fd: number, events: number): Promise<number> => native.waitFd(watch, fd, events, id());

const FIONREAD = 0x541b;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

test.before(warmUp);

test('fstat of a memfd: its size, a regular file', (t) => {
  const fd = native.memfdCreate('fstat', 1);
  native.ftruncate(fd, 12345);
  const st = native.fstat(fd);
  t.is(st.size, 12345n);
  t.is(st.mode & S_IFMT, S_IFREG);
  t.is(typeof st.ino, 'bigint');
  t.is(typeof st.dev, 'bigint');
  t.is(st.uid, process.getuid!());
  native.close(fd);
  t.is((t.throws(() => native.fstat(987654)) as SystemError).code, 'EBADF');
});

test('ioctlAsync resolves with the result and fills the buffer', async (t) => {
  const [a, b] = native.socketpair();
  native.sendmsg(a, new Uint8Array(5), []);
  const count = new Uint8Array(4);
  t.is(await native.ioctlAsync(b, FIONREAD, count), 0);
  t.is(new DataView(count.buffer).getInt32(0, true), 5);
  native.close(a);
  native.close(b);
});

test('ioctlAsync rejects with code, errno and syscall', async (t) => {
  const fd = openSync('/dev/null', 'r');
  const err = (await t.throwsAsync(native.ioctlAsync(fd, FIONREAD, new Uint8Array(4)))) as SystemError;
  t.is(err.code, 'ENOTTY');
  t.is(err.errno, 25);
  t.is(err.syscall, 'ioctl');
  native.close(fd);
});

test('waitFd: readable and writable waits on one fd settle independently', async (t) => {
  const [a, b] = native.socketpair();
  let readable = 0;
  const watch = id();
  const reading = waitFd(watch, a, EPOLLIN).then((revents) => (readable = revents));
  const writable = await waitFd(watch, a, EPOLLOUT);
  t.true((writable & EPOLLOUT) !== 0);
  await sleep(20);
  t.is(readable, 0, 'not readable before the peer writes');
  native.sendmsg(b, new Uint8Array([1]), []);
  await reading;
  t.true((readable & EPOLLIN) !== 0);
  native.cancelWatch(watch); // before close, as for every watch ever waited on: a woken one lingers
  native.close(a);
  native.close(b);
});

test('waitFd resolves on hang-up', async (t) => {
  const [a, b] = native.socketpair();
  const watch = id();
  const waiting = waitFd(watch, a, EPOLLIN);
  native.close(b);
  t.true(((await waiting) & EPOLLHUP) !== 0);
  native.cancelWatch(watch);
  native.close(a);
});

test('cancelWatch rejects every wait of the watch with ECANCELED, and only that watch', async (t) => {
  const [a, b] = native.socketpair();
  const watch = id();
  const waits = [waitFd(watch, a, EPOLLIN), waitFd(watch, a, EPOLLIN)];
  const otherWatch = id();
  const other = waitFd(otherWatch, b, EPOLLIN);
  native.cancelWatch(watch);
  for (const wait of waits) t.is(((await t.throwsAsync(wait)) as SystemError).code, 'ECANCELED');
  native.cancelWatch(watch); // nothing pending: a no-op
  native.sendmsg(a, new Uint8Array([1]), []);
  t.true(((await other) & EPOLLIN) !== 0);
  native.cancelWatch(otherWatch);
  native.close(a);
  native.close(b);
});

test('waitFd on a bad fd rejects with EBADF, on a regular file with EPERM', async (t) => {
  const bad = (await t.throwsAsync(waitFd(id(), 987654, EPOLLIN))) as SystemError;
  t.is(bad.code, 'EBADF');
  t.is(bad.syscall, 'epoll_ctl');
  const fd = openSync('/proc/self/stat', 'r');
  t.is(((await t.throwsAsync(waitFd(id(), fd, EPOLLIN))) as SystemError).code, 'EPERM');
  native.close(fd);
});

test('eventfd: counts, semaphore reads, null at zero', (t) => {
  const fd = native.eventfd(2, false);
  t.is(native.eventfdRead(fd), 2n);
  t.is(native.eventfdRead(fd), null);
  native.eventfdWrite(fd, 2n ** 40n);
  t.is(native.eventfdRead(fd), 2n ** 40n);
  native.close(fd);
  const sem = native.eventfd(2, true);
  t.deepEqual([native.eventfdRead(sem), native.eventfdRead(sem), native.eventfdRead(sem)], [1n, 1n, null]);
  native.close(sem);
});

test('sendmsg/recvmsg: bytes, fds, end of stream', (t) => {
  const [a, b] = native.socketpair();
  const passed = native.eventfd(0, false);
  t.is(native.sendmsg(a, new Uint8Array([1, 2, 3]), [passed]), 3);
  const buffer = new Uint8Array(8);
  const message = native.recvmsg(b, buffer, 4)!;
  t.is(message.bytes, 3);
  t.false(message.fdsTruncated);
  t.is(message.fds.length, 1);
  native.eventfdWrite(message.fds[0]!, 4);
  t.is(native.eventfdRead(passed), 4n, 'the received fd is the same eventfd');
  t.is(native.recvmsg(b, buffer, 4), null, 'nothing waiting: null, not a block');
  native.close(a);
  t.deepEqual(native.recvmsg(b, buffer, 4), { bytes: 0, fds: [], fdsTruncated: false });
  for (const fd of [b, passed, message.fds[0]!]) native.close(fd);
});

test('sendmsg returns null when the socket buffer is full', (t) => {
  const [a, b] = native.socketpair();
  const chunk = new Uint8Array(65536);
  let sent: number | null = 0;
  for (let i = 0; i < 1000 && sent !== null; i++) sent = native.sendmsg(a, chunk, []);
  t.is(sent, null);
  native.close(a);
  native.close(b);
});

test('peerCred of a socketpair is this process', (t) => {
  const [a, b] = native.socketpair();
  t.deepEqual(native.peerCred(a), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  native.close(a);
  native.close(b);
});

test('sendmsg with 300 fds is an ERR_OUT_OF_RANGE naming the limit', (t) => {
  const [a, b] = native.socketpair();
  const err = t.throws(() => native.sendmsg(a, new Uint8Array(1), Array(300).fill(a)), { instanceOf: InvalidArgumentError, code: 'ERR_OUT_OF_RANGE' });
  t.regex(err!.message, new RegExp(`"fds" has 300 fds; one message carries at most ${MAX_FDS_PER_MESSAGE}`));
  t.throws(() => native.sendmsg(a, new Uint8Array(0), [a]), { instanceOf: InvalidArgumentError, code: 'ERR_OUT_OF_RANGE', message: /at least one byte/ });
  native.close(a);
  native.close(b);
});

test('every new function names its bad argument', (t) => {
  const bytes = new Uint8Array(4);
  const cases: [string, unknown[], ErrorConstructor, string][] = [
    ['fstat', ['3'], TypeError, 'fd'],
    ['setNonBlocking', [0, 1], TypeError, 'nonBlocking'],
    ['setCloseOnExec', [0, 'yes'], TypeError, 'closeOnExec'],
    ['ioctlAsync', [-1, 1, bytes], TypeError, 'fd'],
    ['ioctlAsync', [0, '1', bytes], TypeError, 'request'],
    ['ioctlAsync', [0, 1, [0, 0]], TypeError, 'arg'],
    ['ioctlAsync', [0, 1, new Uint32Array(1)], TypeError, 'arg'],
    ['waitFd', [1, 1.5, 1, 1], TypeError, 'fd'],
    ['waitFd', [1, 0, 0, 1], RangeError, 'events'],
    ['waitFd', [1, 0, 0x8, 1], RangeError, 'events'],
    ['waitFd', [1, 0, 'in', 1], TypeError, 'events'],
    ['waitFd', [-1, 0, 1, 1], RangeError, 'watch'],
    ['waitFd', [1, 0, 1, 'x'], TypeError, 'wait'],
    ['cancelWait', [1, NaN], RangeError, 'wait'],
    ['cancelWatch', [null], TypeError, 'watch'],
    ['eventfd', [-1, false], RangeError, 'initial'],
    ['eventfd', [2 ** 32, false], RangeError, 'initial'],
    ['eventfd', [0, 'no'], TypeError, 'semaphore'],
    ['eventfdRead', [], TypeError, 'fd'],
    ['eventfdWrite', [0, 'one'], TypeError, 'value'],
    ['eventfdWrite', [0, -1], RangeError, 'value'],
    ['eventfdWrite', [0, 2n ** 64n - 1n], RangeError, 'value'],
    ['unixConnect', [42], TypeError, 'path'],
    ['unixConnect', [''], RangeError, 'path'],
    ['unixConnect', ['/tmp/' + 'x'.repeat(200)], RangeError, 'path'],
    ['unixListen', ['/tmp/a\0b', 1], RangeError, 'path'],
    ['unixListen', ['/tmp/never-created.sock', -1], RangeError, 'backlog'],
    ['accept', ['0'], TypeError, 'fd'],
    ['sendmsg', [0, 'text', []], TypeError, 'data'],
    ['sendmsg', [0, bytes, 5], TypeError, 'fds'],
    ['sendmsg', [0, bytes, [1, -2]], TypeError, 'fds"[1'],
    ['recvmsg', [0, new Uint8Array(0), 1], RangeError, 'buffer'],
    ['recvmsg', [0, new ArrayBuffer(4), 1], TypeError, 'buffer'],
    ['recvmsg', [0, bytes, 254], RangeError, 'maxFds'],
    ['peerCred', [{}], TypeError, 'fd'],
  ];
  for (const [name, args, type, argument] of cases) {
    const err = t.throws(() => loose[name]!(...args), undefined, `${name}(${args.map(String).join(', ')})`);
    const code = type === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE';
    t.true(err instanceof InvalidArgumentError && err.code === code, `${name}: ${err?.name} ${(err as { code?: string }).code} is not ${code}`);
    t.true(err!.message.includes(`"${argument}`), `${name}: "${err?.message}" does not name ${argument}`);
  }
});

test.serial('socket and eventfd calls leak no fds', async (t) => {
  const before = openFdCount();
  for (let i = 0; i < 10; i++) {
    const [a, b] = native.socketpair();
    const watch = id();
    const waiting = waitFd(watch, a, EPOLLIN);
    native.sendmsg(b, new Uint8Array([1]), [a, b]);
    await waiting;
    native.cancelWatch(watch);
    const message = native.recvmsg(a, new Uint8Array(4), 1)!;
    t.true(message.fdsTruncated);
    for (const fd of [a, b, ...message.fds]) native.close(fd);
  }
  t.is(openFdCount(), before);
});

test.serial('a worker thread polls on its own loop, and its handles are closed when the worker ends', async (t) => {
  const addon = fileURLToPath(new URL('../../../build/Release/guest_dmabuf_addon.node', import.meta.url));
  // Signals itself, waits, and reports its eventfd. With 'hang' it then waits again forever.
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const native = require(workerData.addon);
    const fd = native.eventfd(0, false);
    setTimeout(() => native.eventfdWrite(fd, 1), 10);
    const { EPOLLIN } = workerData;
    native.waitFd(1, fd, EPOLLIN, 1).then((revents) => {
      parentPort.postMessage({ revents, fd });
      native.eventfdRead(fd);
      if (process.argv.includes('hang')) native.waitFd(1, fd, EPOLLIN, 2);
      else (native.cancelWatch(1), native.close(fd));
    });
  `;
  const message = (worker: Worker) => new Promise<{ revents: number; fd: number }>((resolve) => worker.once('message', resolve));
  const exit = (worker: Worker) => new Promise<number>((resolve) => worker.once('exit', resolve));
  await exit(new Worker('0', { eval: true })); // a first worker's fds that outlive it

  const before = openFdCount();
  const finished = new Worker(source, { eval: true, workerData: { addon, EPOLLIN } });
  // Both listeners first: a worker that ends at once has its last message and its exit
  // emitted in one go, and a listener added after the message would miss the exit.
  const finishedExit = exit(finished);
  t.is((await message(finished)).revents, EPOLLIN);
  t.is(await finishedExit, 0, 'no pending wait: the worker ends by itself');
  t.is(openFdCount(), before, 'the worker left no fd behind');

  const hanging = new Worker(source, { eval: true, workerData: { addon, EPOLLIN }, argv: ['hang'] });
  const { fd } = await message(hanging);
  await sleep(50);
  t.is(await hanging.terminate(), 1, 'a pending wait keeps the worker alive until terminated');
  native.close(fd); // the worker's own eventfd: fds belong to the process, not the worker
  t.is(openFdCount(), before, 'terminating the worker with a wait pending closed its handles and left no fd behind');
});
