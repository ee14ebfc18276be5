// QmpClient against scripted peers on a socketpair: framing (split, coalesced, multi-megabyte
// and over-long lines), reply matching under interleaved events and many calls in flight,
// events (emitter and bounded iterator), fd passing, and hostile or vanishing peers: every
// pending call rejects with an error naming what happened and no fd is left open.
import test from 'ava';
import {
  AbortError,
  GuestDmabufError,
  Memfd,
  QmpClient,
  QmpConnectionError,
  QmpError,
  QmpEventOverflowError,
  UnixListener,
  UnixSocket,
  type QmpEvent,
} from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { LineDecoder } from '../../qemu-glue/qmp/framing.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';
import { scriptedPair, type ScriptedPeer } from './fixtures/qmp-peer.js';

test.before(warmUp);

async function connected(options: { capabilities?: string[] } = {}): Promise<{ qmp: QmpClient; peer: ScriptedPeer }> {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd, { timeoutMs: 5000 });
  await peer.greet(options.capabilities);
  await peer.negotiate();
  return { qmp: await connecting, peer };
}

const event = (name: string, data: object = {}): object => ({ event: name, data, timestamp: { seconds: 1700000000, microseconds: 5 } });

test.serial('connect reads the greeting and enables oob where offered', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd);
  await peer.greet(['oob']);
  const negotiation = await peer.negotiate();
  const qmp = await connecting;
  t.deepEqual(negotiation.arguments, { enable: ['oob'] });
  t.is(negotiation.execute, 'qmp_capabilities');
  t.deepEqual(qmp.version, { major: 10, minor: 0, micro: 2, package: 'Debian test' });
  t.deepEqual(qmp.greeting.capabilities, ['oob']);
  t.true(qmp.oobEnabled);
  t.is(qmp.peer.pid, process.pid); // SO_PEERCRED of a socketpair: its creator
  qmp.close();
  peer.close();
});

test.serial('connect without oob in the greeting negotiates no capabilities', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd);
  await peer.greet([]);
  const negotiation = await peer.negotiate();
  const qmp = await connecting;
  t.is(negotiation.arguments, undefined);
  t.false(qmp.oobEnabled);
  await t.throwsAsync(qmp.execute('query-status', undefined, { oob: true }), { instanceOf: GuestDmabufError, message: /oob/ });
  qmp.close();
  peer.close();
});

test.serial('a greeting and reply split into single bytes are reassembled', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd);
  const greeting = `${JSON.stringify({ QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: '' }, capabilities: [] } })}\r\n`;
  for (const ch of greeting) {
    await peer.write(ch);
    await sleep(0);
  }
  const negotiation = await peer.command();
  const reply = `{"return": {}, "id": ${JSON.stringify(negotiation.id)}}\r\n`;
  for (let i = 0; i < reply.length; i += 3) await peer.write(reply.slice(i, i + 3));
  const qmp = await connecting;
  t.is(qmp.version.major, 7);
  qmp.close();
  peer.close();
});

test.serial('coalesced replies and events in one read, answered out of order, go to the right calls', async (t) => {
  const { qmp, peer } = await connected();
  const seen: string[] = [];
  qmp.on('event', (ev) => seen.push(ev.event));
  const a = qmp.execute('query-a');
  const b = qmp.execute('query-b');
  const c = qmp.execute('query-c');
  const [ca, cb, cc] = [await peer.command(), await peer.command(), await peer.command()];
  const lines = [
    event('STOP'),
    { return: 'c', id: cc.id },
    event('RESUME'),
    { error: { class: 'CommandNotFound', desc: 'The command query-b has not been found' }, id: cb.id },
    { return: { value: 'a' }, id: ca.id },
    event('RESET', { guest: true, reason: 'guest-reset' }),
  ];
  await peer.write(lines.map((l) => `${JSON.stringify(l)}\r\n`).join(''));
  t.deepEqual(await a, { value: 'a' });
  t.is(await c, 'c');
  const err = await t.throwsAsync(b, { instanceOf: QmpError });
  t.is(err.class, 'CommandNotFound');
  t.is(err.desc, 'The command query-b has not been found');
  t.is(err.command, 'query-b');
  t.is(err.code, 'ERR_QMP_COMMAND');
  t.true(err instanceof GuestDmabufError);
  t.deepEqual(seen, ['STOP', 'RESUME', 'RESET']);
  qmp.close();
  peer.close();
});

test.serial('a multi-megabyte reply split across many reads arrives whole', async (t) => {
  const { qmp, peer } = await connected();
  const pending = qmp.execute<string>('human-monitor-command', { 'command-line': 'info mtree -f' });
  const { id } = await peer.command();
  const big = 'x'.repeat(12 * 1024 * 1024 - 7) + 'é\\n';
  const line = `{"return": ${JSON.stringify(big)}, "id": ${JSON.stringify(id)}}\r\n`;
  const bytes = new TextEncoder().encode(line);
  // Uneven pieces, with an event in front of the reply.
  await peer.send(event('STOP'));
  for (let offset = 0, size = 1; offset < bytes.length; offset += size, size = (size * 7 + 13) % 300000 + 1) {
    await peer.write(bytes.subarray(offset, offset + size));
  }
  t.is(await pending, big);
  qmp.close();
  peer.close();
});

test.serial('a thousand commands in flight, answered in reverse order, each get their reply', async (t) => {
  const { qmp, peer } = await connected();
  const calls = Array.from({ length: 1000 }, (_, i) => qmp.execute<number>('echo', { i }));
  t.is(qmp.pendingCount, 1000);
  const commands = [];
  for (let i = 0; i < 1000; i++) commands.push(await peer.command());
  const replies = commands.reverse().map((c) => `${JSON.stringify({ return: (c.arguments as { i: number }).i, id: c.id })}\n`);
  await peer.write(replies.join(''));
  t.deepEqual(await Promise.all(calls), Array.from({ length: 1000 }, (_, i) => i));
  t.is(qmp.pendingCount, 0);
  t.is(new Set(commands.map((c) => c.id)).size, 1000, 'ids are unique');
  qmp.close();
  peer.close();
});

test.serial('events reach the emitter by name and async iterators, filtered by name', async (t) => {
  const { qmp, peer } = await connected();
  const shutdowns: QmpEvent[] = [];
  qmp.on('SHUTDOWN', (ev) => shutdowns.push(ev));
  const all = qmp.events();
  const resets = qmp.events({ names: ['RESET'] });
  await peer.send(event('STOP'));
  await peer.send(event('RESET', { guest: false }));
  await peer.send(event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' }));
  const first = await resets.next();
  t.false(first.done);
  t.deepEqual(first.value, { event: 'RESET', data: { guest: false }, timestampMicros: 1700000000 * 1e6 + 5 });
  const names: string[] = [];
  for await (const ev of all) {
    names.push(ev.event);
    if (names.length === 3) break;
  }
  t.deepEqual(names, ['STOP', 'RESET', 'SHUTDOWN']);
  t.is(shutdowns.length, 1);
  t.is(shutdowns[0]!.data.reason, 'guest-shutdown');
  // The peer hanging up ends the remaining stream cleanly.
  peer.close();
  t.deepEqual(await resets.next(), { value: undefined, done: true });
  qmp.close();
});

test.serial('a slow event consumer gets the buffered events, then an overflow error, not unbounded memory', async (t) => {
  const { qmp, peer } = await connected();
  const stream = qmp.events({ maxBuffered: 4 });
  for (let i = 0; i < 50; i++) await peer.send(event('BALLOON_CHANGE', { actual: i }));
  const marker = qmp.execute('marker');
  await peer.send({ return: {}, id: (await peer.command()).id });
  await marker; // every event has been dispatched
  const got: number[] = [];
  const err = await t.throwsAsync(
    (async () => {
      for await (const ev of stream) got.push(ev.data.actual as number);
    })(),
    { instanceOf: QmpEventOverflowError },
  );
  t.is(err.code, 'ERR_QMP_EVENTS_OVERFLOW');
  t.deepEqual(got, [0, 1, 2, 3]);
  qmp.close();
  peer.close();
});

test.serial('an event iterator ends with AbortError when its signal aborts', async (t) => {
  const { qmp, peer } = await connected();
  const controller = new AbortController();
  const waiting = qmp.events({ signal: controller.signal }).next();
  controller.abort(new Error('done waiting'));
  await t.throwsAsync(waiting, { instanceOf: AbortError });
  qmp.close();
  peer.close();
});

test.serial('fds travel with the command bytes in one message (getfd)', async (t) => {
  const { qmp, peer } = await connected();
  using memfd = Memfd.create('qmp-getfd', 4096);
  const pending = qmp.execute('getfd', { fdname: 'fb' }, { fds: [memfd] });
  const command = await peer.command();
  t.is(command.execute, 'getfd');
  t.is(peer.fds.length, 1);
  const [{ fds, text }] = peer.fds;
  t.true(text.startsWith('{"execute":"getfd"'), 'the fd arrived with the command bytes');
  t.is(fds.length, 1);
  t.is(native.fstat(fds[0]!).ino, native.fstat(memfd.fd).ino);
  native.close(fds[0]!);
  await peer.send({ return: {}, id: command.id });
  t.deepEqual(await pending, {});
  qmp.close();
  peer.close();
});

test.serial('hmp runs human-monitor-command and returns its text', async (t) => {
  const { qmp, peer } = await connected();
  const pending = qmp.hmp('info status');
  const command = await peer.command();
  t.deepEqual(command.arguments, { 'command-line': 'info status' });
  await peer.send({ return: 'VM status: paused (prelaunch)\r\n', id: command.id });
  t.is(await pending, 'VM status: paused (prelaunch)\r\n');
  qmp.close();
  peer.close();
});

test.serial('a reply with an id nobody asked for is dropped and counted; other calls go on', async (t) => {
  const { qmp, peer } = await connected();
  const pending = qmp.execute('query-status');
  const command = await peer.command();
  await peer.send({ return: { bogus: true }, id: 'not-ours' });
  await peer.send({ return: { bogus: true }, id: 42 });
  await peer.send({ return: { status: 'prelaunch' }, id: command.id });
  t.deepEqual(await pending, { status: 'prelaunch' });
  t.is(qmp.unexpectedReplies, 2);
  t.false(qmp.closed);
  qmp.close();
  peer.close();
});

test.serial('a command that times out rejects with ERR_QMP_TIMEOUT; its late reply is dropped quietly', async (t) => {
  const { qmp, peer } = await connected();
  const err = await t.throwsAsync(qmp.execute('slow', undefined, { timeoutMs: 50 }), { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_TIMEOUT');
  const slow = await peer.command();
  const controller = new AbortController();
  const aborted = qmp.execute('aborted', undefined, { signal: controller.signal });
  controller.abort();
  await t.throwsAsync(aborted, { instanceOf: AbortError });
  const late = await peer.command();
  const next = qmp.execute('next');
  const nextCommand = await peer.command();
  await peer.send({ return: {}, id: slow.id });
  await peer.send({ return: {}, id: late.id });
  await peer.send({ return: 'ok', id: nextCommand.id });
  t.is(await next, 'ok');
  t.is(qmp.unexpectedReplies, 0);
  qmp.close();
  peer.close();
});

test.serial('garbage from the peer rejects every pending call with ERR_QMP_PROTOCOL and closes everything', async (t) => {
  const before = openFdCount();
  const { qmp, peer } = await connected();
  const closed = new Promise<QmpConnectionError | undefined>((resolve) => qmp.once('close', resolve));
  const calls = [qmp.execute('query-a'), qmp.execute('query-b')];
  await peer.command();
  await peer.command();
  await peer.write('this is not json\n');
  for (const [i, call] of calls.entries()) {
    const err = await t.throwsAsync(call, { instanceOf: QmpConnectionError });
    t.is(err.code, 'ERR_QMP_PROTOCOL');
    t.regex(err.message, new RegExp(`query-${'ab'[i]} did not complete: the QMP peer sent a line that is not JSON: this is not json`));
  }
  t.is((await closed)?.code, 'ERR_QMP_PROTOCOL');
  t.true(qmp.closed);
  const after = await t.throwsAsync(qmp.execute('query-c'), { instanceOf: QmpConnectionError });
  t.is(after.code, 'ERR_QMP_PROTOCOL');
  peer.close();
  t.is(openFdCount(), before);
});

for (const [what, bytes, code] of [
  ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d, 0x0a]), 'ERR_QMP_PROTOCOL'],
  ['a JSON array', new TextEncoder().encode('[1,2]\n'), 'ERR_QMP_PROTOCOL'],
  ['an object of no known shape', new TextEncoder().encode('{"hello": 1}\n'), 'ERR_QMP_PROTOCOL'],
  ['an error without an id', new TextEncoder().encode('{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n'), 'ERR_QMP_PROTOCOL'],
  ['an error without a desc', new TextEncoder().encode('{"error": {"class": "GenericError"}, "id": "x"}\n'), 'ERR_QMP_PROTOCOL'],
  ['a second greeting', new TextEncoder().encode('{"QMP": {"version": {"qemu": {}}, "capabilities": []}}\n'), 'ERR_QMP_PROTOCOL'],
] as const) {
  test.serial(`${what} from the peer fails the connection (${code})`, async (t) => {
    const { qmp, peer } = await connected();
    const call = qmp.execute('query-x');
    await peer.command();
    await peer.write(bytes);
    const err = await t.throwsAsync(call, { instanceOf: QmpConnectionError });
    t.is(err.code, code);
    t.true(qmp.closed);
    peer.close();
  });
}

test.serial('a 100 MB line is refused at the cap without being buffered whole', async (t) => {
  const before = openFdCount();
  const { qmp, peer } = await connected();
  const call = qmp.execute('query-huge');
  await peer.command();
  const chunk = new TextEncoder().encode('x'.repeat(1 << 20));
  let written = 0;
  let writeError: unknown;
  const writing = (async () => {
    await peer.write('{"return": "');
    try {
      while (written < 100 << 20) {
        await peer.write(chunk);
        written += chunk.length;
      }
    } catch (err) {
      writeError = err;
    }
  })();
  const err = await t.throwsAsync(call, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_LINE_TOO_LONG');
  t.regex(err.message, /longer than 67108864 bytes/);
  await writing;
  // The client stopped reading at the cap: the peer's writes failed well before 100 MB.
  t.truthy(writeError, 'the peer could not write the whole line');
  t.true(written > (60 << 20) && written < (64 << 20) + (16 << 20), `the peer wrote ${written} bytes`);
  peer.close();
  t.is(openFdCount(), before);
});

test.serial('the line cap is configurable', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd, { maxLineBytes: 100 });
  await peer.write(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": [], "padding": "${'p'.repeat(200)}"}}\n`);
  const err = await t.throwsAsync(connecting, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_LINE_TOO_LONG');
  peer.close();
});

test.serial('a greeting that never comes: timeoutMs rejects with ERR_QMP_TIMEOUT, signal with AbortError, nothing left open', async (t) => {
  const before = openFdCount();
  {
    const [clientEnd, peer] = scriptedPair();
    const started = performance.now();
    const err = await t.throwsAsync(QmpClient.connect(clientEnd, { timeoutMs: 100 }), { instanceOf: QmpConnectionError });
    t.is(err.code, 'ERR_QMP_TIMEOUT');
    t.true(performance.now() - started < 2000);
    t.true(clientEnd.closed);
    peer.close();
  }
  {
    const [clientEnd, peer] = scriptedPair();
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('user gave up')), 50);
    const err = await t.throwsAsync(QmpClient.connect(clientEnd, { signal: controller.signal }), { instanceOf: AbortError });
    t.is(err.code, 'ABORT_ERR');
    t.true(clientEnd.closed);
    peer.close();
  }
  t.is(openFdCount(), before);
});

test.serial('a peer that closes before the greeting fails connect with ERR_QMP_CLOSED', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd);
  peer.close();
  const err = await t.throwsAsync(connecting, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_CLOSED');
  t.regex(err.message, /before its greeting/);
});

test.serial('a negotiation QEMU refuses fails connect with ERR_QMP_NEGOTIATION', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd);
  await peer.greet();
  const command = await peer.command();
  await peer.send({ error: { class: 'GenericError', desc: "Capability 'oob' is not available" }, id: command.id });
  const err = await t.throwsAsync(connecting, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_NEGOTIATION');
  t.true(clientEnd.closed);
  peer.close();
});

test.serial('EOF in the middle of a reply rejects the pending call with ERR_QMP_CLOSED naming the command', async (t) => {
  const before = openFdCount();
  const { qmp, peer } = await connected();
  const events = qmp.events();
  const call = qmp.execute('query-memdev');
  const command = await peer.command();
  await peer.write(`{"return": [{"id": "mem", "size": 2147483648`);
  peer.close();
  const err = await t.throwsAsync(call, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_CLOSED');
  t.regex(err.message, /query-memdev did not complete: QEMU \(pid \d+\) closed the QMP connection/);
  t.truthy(command.id);
  t.deepEqual(await events.next(), { value: undefined, done: true });
  t.is(openFdCount(), before);
});

test.serial('close() rejects pending calls and ends event streams; await using closes', async (t) => {
  const before = openFdCount();
  const { qmp, peer } = await connected();
  const stream = qmp.events();
  const call = qmp.execute('query-status');
  await peer.command();
  {
    await using closing = qmp;
    t.false(closing.closed);
  }
  const err = await t.throwsAsync(call, { instanceOf: QmpConnectionError });
  t.is(err.code, 'ERR_QMP_CLOSED');
  t.regex(err.message, /the QMP client was closed/);
  t.deepEqual(await stream.next(), { value: undefined, done: true });
  qmp.close(); // idempotent
  peer.close();
  t.is(openFdCount(), before);
});

test.serial('connect by path: UnixListener peer, SO_PEERCRED pid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-qmp-'));
  try {
    const path = join(dir, 'qmp.sock');
    using listener = UnixListener.listen(path);
    const connecting = QmpClient.connect(path, { timeoutMs: 5000 });
    const { ScriptedPeer } = await import('./fixtures/qmp-peer.js');
    const peer = new ScriptedPeer(await listener.accept());
    await peer.greet();
    await peer.negotiate();
    await using qmp = await connecting;
    t.is(qmp.peer.pid, process.pid);
    peer.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('connect to a path nobody listens on names the problem', async (t) => {
  const err = await t.throwsAsync(QmpClient.connect('/nonexistent/qmp.sock', { timeoutMs: 1000 }));
  t.is((err as GuestDmabufError).code, 'ENOENT');
});

test.serial('connect adopts a socket fd given as a number', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  const fd = native.dup(clientEnd.fd);
  clientEnd.close();
  const connecting = QmpClient.connect(fd);
  await peer.greet([]);
  await peer.negotiate();
  const qmp = await connecting;
  t.false(qmp.closed);
  qmp.close();
  peer.close();
  t.throws(() => native.fstat(fd), { code: 'EBADF' });
});

test('LineDecoder: split and coalesced lines, CRLF, blank lines', (t) => {
  const decoder = new LineDecoder(64);
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  t.deepEqual(decoder.push(enc('{"a":')), []);
  t.is(decoder.pendingBytes, 5);
  t.deepEqual(decoder.push(enc('1}\r\n\n{"b":2}\n{"c"')), ['{"a":1}\r', '{"b":2}']);
  t.deepEqual(decoder.push(enc(':3}\n')), ['{"c":3}']);
  // A multi-byte character split across reads.
  const euro = enc('"€"\n');
  t.deepEqual(decoder.push(euro.subarray(0, 2)), []);
  t.deepEqual(decoder.push(euro.subarray(2)), ['"€"']);
  t.throws(() => decoder.push(enc('y'.repeat(65))), { instanceOf: QmpConnectionError, code: 'ERR_QMP_LINE_TOO_LONG' } as never);
});

test.serial('UnixSocket given to connect is closed when connect fails', async (t) => {
  const [clientEnd, peer] = scriptedPair();
  peer.close();
  await t.throwsAsync(QmpClient.connect(clientEnd));
  t.true(clientEnd.closed);
  t.true(clientEnd instanceof UnixSocket);
});
