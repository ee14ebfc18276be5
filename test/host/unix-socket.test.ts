// UnixSocket and UnixListener on the host: fds across processes (SCM_RIGHTS), peer
// credentials, truncation, end of stream, closed sockets, and back-pressure without blocking.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClosedError, FdsTruncatedError, MAX_FDS_PER_MESSAGE, Memfd, UnixListener, UnixSocket, unmap } from '../../lib/index.js';
import { errnoCode } from '../../lib/core/errors.js';
import * as L from '../../lib/core/linux.js';
import { mapShared } from '../../lib/fd/mapping.js';
import { native } from '../../lib/core/native.js';
import { collect, decode, encode, exited, mismatch, openFdCount, pattern, sleep, warmUp } from './fixtures/support.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-sock-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test.before(warmUp);

test.serial('a memfd goes to a child process and another comes back (SCM_RIGHTS)', async (t) => {
  const before = openFdCount();
  const size = 3 * 4096;
  const [parentEnd, childEnd] = UnixSocket.pair();
  const child = spawn(process.execPath, [fixture('memfd-peer.js')], { stdio: ['ignore', 'inherit', 'pipe', childEnd.fd] });
  const stderr = collect(child.stderr);
  const done = exited(child);
  childEnd.close();

  const memfd = Memfd.create('round-trip', size);
  const view = memfd.map();
  view.set(pattern(1, size));
  await parentEnd.send(encode(JSON.stringify({ seed: 1, replySeed: 2, ownSeed: 3, size })), [memfd]);

  const reply = await parentEnd.receive({ maxBytes: 4096, maxFds: 4 });
  const exit = await done;
  t.deepEqual(exit, { code: 0, signal: null }, stderr());
  t.is(decode(reply.data), 'done');
  t.is(reply.fds.length, 1);
  t.is(mismatch(view, 2), -1, 'our memfd holds what the child wrote into it');

  const [theirs] = reply.fds as [number];
  t.is(native.fstat(theirs).size, BigInt(size));
  const theirView = mapShared(theirs, size, L.PROT_READ, L.MAP_SHARED);
  t.is(mismatch(theirView, 3), -1, "the child's memfd holds its pattern");
  unmap(theirView);
  native.close(theirs);
  unmap(view);
  memfd.close();
  parentEnd.close();
  t.is(openFdCount(), before, 'no fd leaked');
});

test.serial('too many fds for maxFds: FdsTruncatedError, and no fd leaks', async (t) => {
  const before = openFdCount();
  const [a, b] = UnixSocket.pair();
  using memfd = Memfd.create('truncate', 4096);
  // maxFds 1 leaves room for 2 in the aligned control buffer; 0 leaves none.
  for (const [sent, maxFds] of [
    [4, 2],
    [2, 1],
    [3, 1],
    [1, 0],
  ] as const) {
    await a.send(encode(`${sent}`), Array(sent).fill(memfd));
    const err = await t.throwsAsync(b.receive({ maxBytes: 16, maxFds }), { instanceOf: FdsTruncatedError });
    t.is(err?.code, 'ERR_FDS_TRUNCATED');
    t.is(decode(err!.data), `${sent}`, 'the bytes are kept on the error');
  }
  // Exactly maxFds is fine.
  await a.send(encode('x'), [memfd, memfd]);
  const ok = await b.receive({ maxBytes: 16, maxFds: 2 });
  t.is(ok.fds.length, 2);
  for (const fd of ok.fds) native.close(fd);
  a.close();
  b.close();
  memfd.close();
  t.is(openFdCount(), before, 'no fd leaked');
});

test('SO_PEERCRED names the connecting child process', async (t) => {
  const path = join(dir, 'cred.sock');
  using listener = UnixListener.listen(path);
  const child = spawn(process.execPath, [fixture('peer-cred-client.js'), path], { stdio: ['ignore', 'inherit', 'pipe'] });
  const stderr = collect(child.stderr);
  const done = exited(child);
  const connection = await listener.accept();
  const credentials = connection.peerCredentials();
  const reported = JSON.parse(decode((await connection.receive()).data)) as { pid: number; uid: number; gid: number };
  t.deepEqual(credentials, { pid: child.pid!, uid: process.getuid!(), gid: process.getgid!() });
  t.deepEqual(reported, credentials, 'the child reports the same pid, uid and gid');
  connection.close();
  t.deepEqual(await done, { code: 0, signal: null }, stderr());
  listener.close();
  t.false(existsSync(path), 'close() removes the socket file');
});

test('receive reports end of stream once the peer closes, also while waiting', async (t) => {
  const [a, b] = UnixSocket.pair();
  const pending = b.receive();
  await sleep(20);
  await a.send(encode('last words'));
  a.close();
  t.is(decode((await pending).data), 'last words');
  t.deepEqual(await b.receive(), { data: new Uint8Array(0), fds: [] });
  t.deepEqual(await b.receive(), { data: new Uint8Array(0), fds: [] }, 'end of stream stays end of stream');
  b.close();
});

test('a closed socket refuses to send; closing rejects a pending receive with ClosedError', async (t) => {
  const [a, b] = UnixSocket.pair();
  const pending = a.receive();
  a.close();
  t.is(errnoCode(await t.throwsAsync(pending, { instanceOf: ClosedError })), 'ERR_CLOSED');
  await t.throwsAsync(a.send(encode('x')), { instanceOf: ClosedError });
  t.throws(() => a.peerCredentials(), { instanceOf: ClosedError });
  a.close(); // idempotent
  const peerGone = await t.throwsAsync(b.send(encode('x')));
  t.is(errnoCode(peerGone), 'EPIPE', 'sending to a closed peer fails with EPIPE, not SIGPIPE');
  b.close();
});

test('sending fds that are closed, too many, or without data fails clearly', async (t) => {
  const [pair0, pair1] = UnixSocket.pair();
  using _a = pair0;
  using _b = pair1;
  const memfd = Memfd.create('closed', 4096);
  memfd.close();
  await t.throwsAsync(pair0.send(encode('x'), [memfd]), { instanceOf: ClosedError });
  t.regex((await t.throwsAsync(pair0.send(new Uint8Array(0), [0])))!.message, /at least one byte/);
  t.regex((await t.throwsAsync(pair0.send(encode('x'), Array(MAX_FDS_PER_MESSAGE + 1).fill(0))))!.message, new RegExp(`limit is ${MAX_FDS_PER_MESSAGE}`));
});

test('connecting to a missing path fails with ENOENT and names the path', async (t) => {
  const path = join(dir, 'nobody-here.sock');
  const err = await t.throwsAsync(UnixSocket.connect(path));
  t.is(errnoCode(err), 'ENOENT');
  t.true(err!.message.includes(path));
});

test('listening on an existing path fails with EADDRINUSE; a stale socket refuses connections', async (t) => {
  const path = join(dir, 'stale.sock');
  writeFileSync(path, '');
  t.is(errnoCode(t.throws(() => UnixListener.listen(path))), 'EADDRINUSE');
  rmSync(path);
  // Close the listening socket but keep its file, as a crashed server would.
  native.close(native.unixListen(path, 1));
  t.is(errnoCode(await t.throwsAsync(UnixSocket.connect(path))), 'ECONNREFUSED');
  rmSync(path);
});

test('adopt refuses an fd that is not a socket', (t) => {
  using memfd = Memfd.create('not-a-socket', 4096);
  t.is(errnoCode(t.throws(() => UnixSocket.adopt(memfd.fd))), 'ERR_NOT_A_SOCKET');
});

test('an 8 MiB send to a slow reader completes without blocking the event loop', async (t) => {
  const size = 8 * 1024 * 1024;
  const [writer, reader] = UnixSocket.pair();
  const payload = pattern(5, size);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  const sent = writer.send(payload);
  const received = new Uint8Array(size);
  let offset = 0;
  let reads = 0;
  while (offset < size) {
    const { data } = await reader.receive({ maxBytes: 256 * 1024 });
    t.not(data.length, 0, 'no early end of stream');
    received.set(data, offset);
    offset += data.length;
    if (++reads % 8 === 0) await sleep(10); // a slow reader: the writer must wait for room
  }
  await sent;
  clearInterval(ticker);
  t.is(mismatch(received, 5), -1, 'every byte arrived in order');
  // A send that blocked the thread would deadlock against this reader; one that spun on
  // microtasks would starve the ticker. Not counted against the clock (a loaded machine).
  t.true(ticks >= 1, `the event loop kept running (${ticks} ticks)`);
  writer.close();
  reader.close();
});

test('concurrent sends do not interleave', async (t) => {
  const [a, b] = UnixSocket.pair();
  const chunk = 1024 * 1024;
  const sends = [1, 2, 3].map((seed) => a.send(pattern(seed, chunk)));
  const received = new Uint8Array(3 * chunk);
  let offset = 0;
  while (offset < received.length) {
    const { data } = await b.receive({ maxBytes: received.length - offset });
    received.set(data, offset);
    offset += data.length;
  }
  await Promise.all(sends);
  for (const seed of [1, 2, 3]) t.is(mismatch(received.subarray((seed - 1) * chunk, seed * chunk), seed), -1);
  a.close();
  b.close();
});
