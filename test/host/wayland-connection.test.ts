// The client connection against a scripted compositor on a socketpair: round trips, object
// ids and delete_id, per-object events, fds both ways, wl_display.error as a typed error, and
// a hostile peer: each ends the connection with a named error, rejects what was pending, and
// leaks no fd.
import test from 'ava';
import { Memfd, UnixSocket } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { WaylandConnection } from '../../lib/wayland/client/connection.js';
import { WaylandDisconnectedError, WaylandProtocolError } from '../../lib/wayland/client/errors.js';
import { wl_callback_interface, wl_display_interface, wl_registry_interface } from '../../lib/wayland/protocol/wayland.js';
import {
  ZwpLinuxDmabufV1,
  zwp_linux_buffer_params_v1_interface,
  zwp_linux_dmabuf_feedback_v1_interface,
  zwp_linux_dmabuf_v1_interface,
} from '../../lib/wayland/protocol/linux-dmabuf-v1.js';
import { header, ScriptedPeer } from './fixtures/wayland-peer.js';
import { openFdCount, warmUp } from './fixtures/support.js';

test.before(warmUp);

function setup(): { wl: WaylandConnection; peer: ScriptedPeer } {
  const [a, b] = UnixSocket.pair();
  return { wl: new WaylandConnection(a), peer: new ScriptedPeer(b) };
}

/** Answers one wl_display.sync: done, then delete_id, as weston does. */
async function answerSync(peer: ScriptedPeer, deleteId = true): Promise<number> {
  const sync = await peer.expect(wl_display_interface, 'sync');
  const id = sync.values[0] as number;
  await peer.event(id, wl_callback_interface, 'done', [1]);
  if (deleteId) await peer.event(1, wl_display_interface, 'delete_id', [id]);
  return id;
}

/** A registry with a zwp_linux_dmabuf_v1 global, bound at `version`. */
async function bindDmabuf(wl: WaylandConnection, peer: ScriptedPeer, version: number): Promise<ZwpLinuxDmabufV1> {
  const registry = wl.display.getRegistry();
  const globals: string[] = [];
  registry.on('global', (_name, iface) => globals.push(iface));
  const got = await peer.expect(wl_display_interface, 'get_registry');
  await peer.event(got.values[0] as number, wl_registry_interface, 'global', [7, 'zwp_linux_dmabuf_v1', 5]);
  const roundtrip = wl.roundtrip();
  await answerSync(peer);
  await roundtrip;
  const dmabuf = registry.bind(7, ZwpLinuxDmabufV1, version);
  const bind = await peer.expect(wl_registry_interface, 'bind');
  if (globals[0] !== 'zwp_linux_dmabuf_v1') throw new Error('no global');
  if (JSON.stringify(bind.values) !== JSON.stringify([7, { interface: 'zwp_linux_dmabuf_v1', version, id: dmabuf.id }])) throw new Error(`bind sent ${JSON.stringify(bind.values)}`);
  return dmabuf;
}

test.serial('a round trip resolves on wl_callback.done; the callback id is reused only after delete_id', async (t) => {
  const { wl, peer } = setup();
  const first = wl.roundtrip();
  const id = await answerSync(peer, false);
  await first;
  const second = wl.roundtrip();
  const id2 = await answerSync(peer, true);
  await second;
  t.not(id2, id, 'no delete_id yet for the first: its id is still taken');
  await peer.event(1, wl_display_interface, 'delete_id', [id]);
  const third = wl.roundtrip();
  const id3 = await answerSync(peer);
  await third;
  t.true(id3 === id || id3 === id2, 'a deleted id is reused');
  t.is(wl.objectCount, 1, 'only wl_display is left');
  wl.close();
  peer.close();
});

test.serial('the untyped new_id of wl_registry.bind carries interface, version and id; requests above the bound version are refused', async (t) => {
  const { wl, peer } = setup();
  const dmabuf = await bindDmabuf(wl, peer, 3);
  t.is(dmabuf.version, 3);
  t.throws(() => dmabuf.getDefaultFeedback(), { code: 'ERR_INVALID_ARG_VALUE', message: /get_default_feedback needs version 4/ });
  wl.close();
  peer.close();
});

test.serial('fds go out with their request and come in with their event', async (t) => {
  const before = openFdCount();
  const { wl, peer } = setup();
  const dmabuf = await bindDmabuf(wl, peer, 4);
  using memfd = Memfd.create('plane', 4096);
  const params = dmabuf.createParams();
  params.add(memfd.fd, 0, 64, 256, 0, 0);
  const created = await peer.expect(zwp_linux_dmabuf_v1_interface, 'create_params');
  t.is(created.values[0], params.id);
  const add = await peer.expect(zwp_linux_buffer_params_v1_interface, 'add');
  const [fd, plane, offset, stride, hi, lo] = add.values as number[];
  t.deepEqual([plane, offset, stride, hi, lo], [0, 64, 256, 0, 0]);
  t.is(native.fstat(fd!).ino, native.fstat(memfd.fd).ino, 'the compositor gets the same file');
  native.close(fd!);

  const feedback = dmabuf.getDefaultFeedback();
  await peer.expect(zwp_linux_dmabuf_v1_interface, 'get_default_feedback');
  using table = Memfd.create('format-table', 16);
  const got = new Promise<{ fd: number; size: number }>((resolve) => feedback.on('format_table', (fd, size) => resolve({ fd, size })));
  await peer.event(feedback.id, zwp_linux_dmabuf_feedback_v1_interface, 'format_table', [table.fd, 16]);
  const { fd: tableFd, size } = await got;
  t.is(size, 16);
  t.is(native.fstat(tableFd).ino, native.fstat(table.fd).ino);
  native.close(tableFd);
  wl.close();
  peer.close();
  memfd.close();
  table.close();
  t.is(openFdCount(), before, 'no fd leaked on either side');
});

test.serial('wl_display.error becomes a WaylandProtocolError naming the object, interface and code; pending waits reject with it', async (t) => {
  const { wl, peer } = setup();
  const dmabuf = await bindDmabuf(wl, peer, 3);
  const params = dmabuf.createParams();
  await peer.expect(zwp_linux_dmabuf_v1_interface, 'create_params');
  const pending = wl.roundtrip();
  await peer.expect(wl_display_interface, 'sync');
  await peer.event(1, wl_display_interface, 'error', [params.id, 4, 'unsupported format 0x1234']);
  const err = await t.throwsAsync(pending, { instanceOf: WaylandProtocolError });
  t.is(err!.code, 'ERR_WAYLAND_PROTOCOL');
  t.is(err!.objectId, params.id);
  t.is(err!.interfaceName, 'zwp_linux_buffer_params_v1');
  t.is(err!.errorCode, 4);
  t.is(err!.errorName, 'invalid_format');
  t.regex(err!.message, /zwp_linux_buffer_params_v1@\d+: invalid_format \(4\): unsupported format/);
  t.throws(() => wl.display.sync(), { instanceOf: WaylandProtocolError }, 'the connection is over');
  await t.throwsAsync(wl.roundtrip(), { instanceOf: WaylandProtocolError });
  peer.close();
});

test.serial('events reach only the object they are for, and late events to a destroyed object are dropped with their fds', async (t) => {
  const before = openFdCount();
  const { wl, peer } = setup();
  const dmabuf = await bindDmabuf(wl, peer, 4);
  const a = dmabuf.getDefaultFeedback();
  const b = dmabuf.getDefaultFeedback();
  await peer.expect(zwp_linux_dmabuf_v1_interface, 'get_default_feedback');
  await peer.expect(zwp_linux_dmabuf_v1_interface, 'get_default_feedback');
  const seen: string[] = [];
  a.on('main_device', () => seen.push('a'));
  b.on('main_device', () => seen.push('b'));
  await peer.event(b.id, zwp_linux_dmabuf_feedback_v1_interface, 'main_device', [new Uint8Array(8)]);
  a.destroy();
  await peer.expect(zwp_linux_dmabuf_feedback_v1_interface, 'destroy');
  using table = Memfd.create('late', 16);
  // Sent before the compositor saw destroy: a zombie's event, its fd must be closed.
  await peer.event(a.id, zwp_linux_dmabuf_feedback_v1_interface, 'format_table', [table.fd, 16]);
  const rt = wl.roundtrip();
  await answerSync(peer);
  await rt;
  t.deepEqual(seen, ['b']);
  table.close();
  wl.close();
  peer.close();
  t.is(openFdCount(), before);
});

for (const [name, bytes, fds, pattern] of [
  ['garbage', new Uint8Array([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]), 0, /claims 1027 bytes: not a multiple of 4 at least 8, so the stream is garbage/],
  ['a huge length', header(1, 0, 0xfff0), 0, /over the 4096-byte limit/],
  ['an unknown object id', header(4242, 0, 8), 0, /object 4242, which does not exist/],
  ['an unknown opcode', header(1, 9, 8), 0, /opcode 9 to wl_display@1/],
  ['an fd-count mismatch (fds with no message)', new Uint8Array(0), 300, /fds that no message has claimed/],
] as const) {
  test.serial(`a hostile peer sending ${name} gets the connection closed with a clear error, no crash, no leak`, async (t) => {
    const before = openFdCount();
    const { wl, peer } = setup();
    const pending = wl.roundtrip();
    await peer.expect(wl_display_interface, 'sync');
    if (fds > 0) {
      for (let sent = 0; sent < fds; sent += 20) {
        const batch = Array.from({ length: 20 }, () => native.eventfd(0, false));
        // A valid message that carries no fds, with 20 fds riding along.
        const deleteUnknown = new Uint8Array(12);
        deleteUnknown.set(header(1, 1, 12));
        await peer.raw(deleteUnknown, batch).catch(() => {});
        for (const fd of batch) native.close(fd);
        if (wl.closed) break;
      }
    } else {
      await peer.raw(bytes);
    }
    const err = await t.throwsAsync(pending);
    t.regex(err!.message, pattern);
    t.true(wl.closed);
    peer.close();
    t.is(openFdCount(), before, 'the socket pair is closed and nothing else remains');
  });
}

test.serial('an event that lacks the fd its signature carries is an error', async (t) => {
  const { wl, peer } = setup();
  const dmabuf = await bindDmabuf(wl, peer, 4);
  const feedback = dmabuf.getDefaultFeedback();
  await peer.expect(zwp_linux_dmabuf_v1_interface, 'get_default_feedback');
  const pending = wl.roundtrip();
  const msg = new Uint8Array(12);
  msg.set(header(feedback.id, 1, 12));
  await peer.raw(msg);
  await t.throwsAsync(pending, { code: 'ERR_WAYLAND_WIRE', message: /format_table from object \d+: fd argument 0 has no fd/ });
  peer.close();
});

test.serial('the compositor closing the socket rejects pending waits with WaylandDisconnectedError', async (t) => {
  const { wl, peer } = setup();
  const pending = wl.roundtrip();
  peer.close();
  await t.throwsAsync(pending, { instanceOf: WaylandDisconnectedError, code: 'ERR_WAYLAND_DISCONNECTED' });
});

test.serial('close() rejects pending waits with ClosedError; an aborted wait rejects with AbortError', async (t) => {
  const { wl, peer } = setup();
  const controller = new AbortController();
  const aborted = wl.roundtrip({ signal: controller.signal });
  controller.abort();
  await t.throwsAsync(aborted, { code: 'ABORT_ERR' });
  const pending = wl.roundtrip();
  wl.close();
  await t.throwsAsync(pending, { code: 'ERR_CLOSED' });
  peer.close();
});
