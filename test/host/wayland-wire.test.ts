// The wire layer alone: every argument type round trips through encode and the reader,
// messages split over reads or coalesced in one, and malformed input gives named errors.
import test from 'ava';
import { Memfd } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { encodeMessage } from '../../lib/wayland/wire/encode.js';
import { WaylandWireError } from '../../lib/wayland/wire/errors.js';
import { MessageReader } from '../../lib/wayland/wire/message-reader.js';
import { MAX_QUEUED_FDS, type ArgSignature, type WireValue } from '../../lib/wayland/wire/signature.js';
import { header } from './fixtures/wayland-peer.js';
import { openFdCount } from './fixtures/support.js';

const ALL: ArgSignature[] = [
  { type: 'int' },
  { type: 'int' },
  { type: 'uint' },
  { type: 'fixed' },
  { type: 'fixed' },
  { type: 'string' },
  { type: 'string', nullable: true },
  { type: 'object' },
  { type: 'object', nullable: true },
  { type: 'new_id', interface: 'wl_callback' },
  { type: 'new_id' },
  { type: 'array' },
  { type: 'array' },
  { type: 'fd' },
];

function values(fd: number): WireValue[] {
  return [
    -0x8000_0000,
    0x7fff_ffff,
    0xffff_ffff,
    -1.5,
    8191.99609375,
    'héllo, wayland',
    null,
    7,
    null,
    8,
    { interface: 'zwp_linux_dmabuf_v1', version: 4, id: 9 },
    new Uint8Array([1, 2, 3, 4, 5]),
    new Uint8Array(0),
    fd,
  ];
}

test('every argument type survives encode and decode', (t) => {
  using memfd = Memfd.create('wire', 4096);
  const sent = values(memfd.fd);
  const { bytes, fds } = encodeMessage(3, 5, ALL, sent);
  t.is(bytes.length % 4, 0);
  t.deepEqual(fds, [memfd.fd]);
  const view = new DataView(bytes.buffer);
  t.is(view.getUint32(0, true), 3);
  t.is(view.getUint32(4, true), (bytes.length << 16) | 5);
  const reader = new MessageReader();
  const dup = native.dup(memfd.fd);
  reader.push(bytes, [dup]);
  const h = reader.peek()!;
  t.deepEqual(h, { objectId: 3, opcode: 5, size: bytes.length });
  const got = reader.decode(h, ALL, 'test.all');
  t.deepEqual(got.slice(0, 13), sent.slice(0, 13).map((v, i) => (ALL[i]!.type === 'object' && v === null ? 0 : v)));
  t.is(got[13], dup, 'the fd comes from the queue');
  t.is(native.fstat(got[13] as number).ino, native.fstat(memfd.fd).ino);
  native.close(got[13] as number);
  t.is(reader.bufferedBytes, 0);
});

test('fixed is signed 24.8', (t) => {
  const { bytes } = encodeMessage(1, 0, [{ type: 'fixed' }], [-0.00390625]);
  t.is(new DataView(bytes.buffer).getInt32(8, true), -1);
  t.throws(() => encodeMessage(1, 0, [{ type: 'fixed' }], [1e9]), { message: /argument 0 \(fixed\)/ });
});

test('strings and arrays are padded to 4 bytes and NUL-terminated', (t) => {
  const { bytes } = encodeMessage(1, 0, [{ type: 'string' }, { type: 'array' }], ['abc', new Uint8Array([9])]);
  // header 8 + (4 + "abc\0") + (4 + 1 padded to 4)
  t.is(bytes.length, 8 + 8 + 8);
  t.is(new DataView(bytes.buffer).getUint32(8, true), 4, 'length counts the NUL');
  t.is(bytes[15], 0);
});

test('bad values are refused before anything is encoded', (t) => {
  t.throws(() => encodeMessage(1, 0, [{ type: 'uint' }], [-1]), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => encodeMessage(1, 0, [{ type: 'int' }], [2 ** 31]), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => encodeMessage(1, 0, [{ type: 'string' }], [null]), { message: /may not be null/ });
  t.throws(() => encodeMessage(1, 0, [{ type: 'object' }], [null]), { message: /may not be null/ });
  t.throws(() => encodeMessage(1, 0, [{ type: 'string' }], ['a\0b']), { message: /NUL/ });
  t.throws(() => encodeMessage(1, 0, [{ type: 'new_id' }], [5]), { message: /interface, version, id/ });
  t.throws(() => encodeMessage(1, 0, [{ type: 'array' }], [new Uint8Array(5000)]), { instanceOf: WaylandWireError, code: 'ERR_WAYLAND_MESSAGE_TOO_LARGE' });
  t.throws(() => encodeMessage(1, 0, [{ type: 'int' }], []), { message: /1 arguments expected, 0 given/ });
});

test('a message split over many reads is decoded once complete; coalesced messages one by one', (t) => {
  const sig: ArgSignature[] = [{ type: 'string' }, { type: 'uint' }];
  const a = encodeMessage(2, 1, sig, ['first', 1]).bytes;
  const b = encodeMessage(3, 0, sig, ['second message', 2]).bytes;
  const reader = new MessageReader();
  for (let i = 0; i < a.length - 1; i++) {
    reader.push(a.subarray(i, i + 1));
    t.is(reader.peek(), null, `incomplete after ${i + 1} bytes`);
  }
  const both = new Uint8Array(1 + b.length);
  both.set(a.subarray(a.length - 1));
  both.set(b, 1);
  reader.push(both);
  const h1 = reader.peek()!;
  t.deepEqual(reader.decode(h1, sig, 'a'), ['first', 1]);
  const h2 = reader.peek()!;
  t.is(h2.objectId, 3);
  t.deepEqual(reader.decode(h2, sig, 'b'), ['second message', 2]);
  t.is(reader.peek(), null);
});

test('a big run of messages through a small buffer keeps order', (t) => {
  const reader = new MessageReader();
  const sig: ArgSignature[] = [{ type: 'array' }];
  const all: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) all.push(encodeMessage(i + 1, 0, sig, [new Uint8Array(i * 7).fill(i & 0xff)]).bytes);
  const stream = Buffer.concat(all);
  let seen = 0;
  for (let at = 0; at < stream.length; at += 1000) {
    reader.push(stream.subarray(at, at + 1000));
    for (let h = reader.peek(); h; h = reader.peek()) {
      const [arr] = reader.decode(h, sig, 'x') as [Uint8Array];
      t.is(h.objectId, seen + 1);
      t.is(arr.length, seen * 7);
      seen++;
    }
  }
  t.is(seen, 200);
});

test('garbage headers are named errors', (t) => {
  const short = new MessageReader();
  short.push(header(1, 0, 4));
  t.throws(() => short.peek(), { instanceOf: WaylandWireError, message: /claims 4 bytes/ });
  const unaligned = new MessageReader();
  unaligned.push(header(1, 0, 10));
  t.throws(() => unaligned.peek(), { instanceOf: WaylandWireError });
  const huge = new MessageReader();
  huge.push(header(1, 0, 0xfffc));
  t.throws(() => huge.peek(), { instanceOf: WaylandWireError, code: 'ERR_WAYLAND_MESSAGE_TOO_LARGE' });
});

test('arguments that overrun, lack a NUL or trail extra bytes are refused', (t) => {
  const overrun = new MessageReader();
  const m = new Uint8Array(16);
  m.set(header(1, 0, 16));
  new DataView(m.buffer).setUint32(8, 100, true); // a string of 100 bytes in an 8-byte body
  overrun.push(m);
  t.throws(() => overrun.decode(overrun.peek()!, [{ type: 'string' }], 'x.y'), { message: /x\.y from object 1: argument 0 claims 100 bytes/ });
  const noNul = new MessageReader();
  const n = new Uint8Array(16);
  n.set(header(1, 0, 16));
  new DataView(n.buffer).setUint32(8, 4, true);
  n.set([65, 66, 67, 68], 12);
  noNul.push(n);
  t.throws(() => noNul.decode(noNul.peek()!, [{ type: 'string' }], 'x.y'), { message: /not NUL-terminated/ });
  const trailing = new MessageReader();
  trailing.push(encodeMessage(1, 0, [{ type: 'uint' }, { type: 'uint' }], [1, 2]).bytes);
  t.throws(() => trailing.decode(trailing.peek()!, [{ type: 'uint' }], 'x.y'), { message: /4 bytes follow the last argument/ });
});

test('an fd argument without an fd is an error; unclaimed fds are capped and closed', (t) => {
  const before = openFdCount();
  const missing = new MessageReader();
  missing.push(header(1, 0, 8));
  t.throws(() => missing.decode(missing.peek()!, [{ type: 'fd' }], 'x.y'), { code: 'ERR_WAYLAND_WIRE', message: /fewer fds/ });
  const flood = new MessageReader();
  const fds = Array.from({ length: MAX_QUEUED_FDS + 1 }, () => native.eventfd(0, false));
  t.throws(() => flood.push(new Uint8Array(0), fds), { code: 'ERR_WAYLAND_FDS' });
  t.is(flood.queuedFds, 0);
  const dropped = new MessageReader();
  dropped.push(new Uint8Array(0), [native.eventfd(0, false), native.eventfd(0, false)]);
  dropped.close();
  t.is(openFdCount(), before, 'every fd the readers took is closed');
});
