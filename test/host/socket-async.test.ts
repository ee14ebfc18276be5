// UnixSocket and UnixListener across async boundaries: send holds the fds it was given (not
// their numbers), connect never blocks the event loop, adopt leaves a shared description's
// flags alone, and a listener removes only its own socket file.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortError, Memfd, UnixListener, UnixSocket } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { encode, openFdCount, sleep, warmUp } from './fixtures/support.js';
import { within } from './fixtures/poller.js';

const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-sock-async-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
test.before(warmUp);

const O_NONBLOCK = 0o4000;
/** The file status flags of fd's open file description, as /proc reports them. */
const statusFlags = (fd: number): number => parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);

test.serial('send: closing a memfd after the call (and reusing its number) still sends the memfd given', async (t) => {
  const before = openFdCount();
  const [a, b] = UnixSocket.pair();
  // A big send first, so the one carrying the fd waits its turn in the queue.
  const big = a.send(new Uint8Array(8 << 20));
  const given = Memfd.create('the-one-given', 4096);
  const number = given.fd;
  const withFd = a.send(encode('x'), [given]);
  given.close();
  const impostor = Memfd.create('an-impostor', 4096);
  t.is(impostor.fd, number, 'the number was reused (the case under test)');
  let received: number[] = [];
  let bytes = 0;
  while (received.length === 0) {
    const message = await b.receive(1 << 20); // positional: the form the starting commit had too
    bytes += message.data.length;
    received = message.fds;
  }
  await Promise.all([big, withFd]);
  t.is(bytes, (8 << 20) + 1, 'the fd came with the last byte');
  t.is(received.length, 1);
  t.regex(readlinkSync(`/proc/self/fd/${received[0]}`), /^\/memfd:the-one-given/, 'the memfd sent is the one given at the call');
  native.close(received[0]!);
  impostor.close();
  a.close();
  b.close();
  t.is(openFdCount(), before, 'send closed its dups');
});

test.serial('connect: waits without blocking while the backlog is full, honours timeoutMs and signal, and connects once there is room', async (t) => {
  const path = join(dir, 'full.sock');
  using listener = UnixListener.listen(path, 0);
  // Fill the backlog: a non-blocking connect answers EAGAIN (null) once it is full.
  const queued: number[] = [];
  for (let fd = native.unixConnect(path); fd !== null; fd = native.unixConnect(path)) queued.push(fd);
  t.true(queued.length >= 1, 'the backlog took some connections before refusing');

  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  const started = performance.now();
  const timedOut = await t.throwsAsync(within(UnixSocket.connect(path, { timeoutMs: 150 }), 5000, 'connect with timeoutMs'));
  t.is((timedOut as { code?: string } | undefined)?.code, 'ETIMEDOUT');
  t.true(performance.now() - started >= 140, 'it kept trying until the timeout');
  // A connect that retried in a busy loop, or with microtasks alone, would starve the ticker.
  // Not counted against the clock: a loaded machine may run it only once in 150 ms.
  t.true(ticks >= 1, `the event loop ran meanwhile (${ticks} ticks)`);

  const controller = new AbortController();
  const aborted = UnixSocket.connect(path, { signal: controller.signal });
  setTimeout(() => controller.abort(), 30);
  await t.throwsAsync(within(aborted, 5000, 'aborted connect'), { instanceOf: AbortError });

  const before = openFdCount();
  const connecting = UnixSocket.connect(path);
  await sleep(30);
  // Accepting makes room in the backlog: the pending connect gets in.
  const accepted = await listener.accept();
  const socket = await within(connecting, 5000, 'connect after room was made');
  await socket.send(encode('hi'));
  accepted.close();
  socket.close();
  clearInterval(ticker);
  for (const fd of queued) native.close(fd);
  t.true(openFdCount() <= before, 'no socket leaked by the retries');
});

test.serial('adopt leaves O_NONBLOCK alone on a description shared with another process, and still never blocks', async (t) => {
  const [a, b] = native.socketpair();
  native.setNonBlocking(a, false);
  t.is(statusFlags(a) & O_NONBLOCK, 0);
  const socket = UnixSocket.adopt(a);
  t.is(statusFlags(a) & O_NONBLOCK, 0, 'adopt set O_NONBLOCK on the shared description');
  const peer = new UnixSocket(b);
  const receiving = socket.receive();
  await sleep(20); // a blocking recvmsg here would have frozen the event loop (and this test)
  await peer.send(encode('ping'));
  t.is((await within(receiving, 2000, 'receive on the adopted socket')).data.length, 4);
  t.is(statusFlags(a) & O_NONBLOCK, 0, 'waiting (libuv polling the fd) left O_NONBLOCK set on the shared description');
  socket.close();
  peer.close();
});

test.serial('close() removes the socket file only while it is still this listener\'s', (t) => {
  const path = join(dir, 'replaced.sock');
  const first = UnixListener.listen(path);
  rmSync(path); // e.g. a second server cleaning up a "stale" file
  const second = UnixListener.listen(path);
  const inode = statSync(path).ino;
  first.close();
  t.true(existsSync(path), "closing the first listener removed the second listener's socket file");
  t.is(statSync(path).ino, inode);
  second.close();
  t.false(existsSync(path), 'the second listener removed its own file');
});
