// WaylandClient against a scripted compositor offering zwp_linux_dmabuf_v1 v5: the v4+
// feedback path (format table mmap'd, tranches), the window handshake, present's import and
// commit sequence, release tracking, ping, close requests, and formats refused before
// anything is sent. The v3 path runs against weston in test/vm/wayland.test.ts.
import test from 'ava';
import { Memfd, UnixSocket, UnsupportedFormatError, WaylandClient, WaylandConnection, type DmaBuf, type ExportedSurface } from '../../lib/index.js';
import { wl_buffer_interface, wl_callback_interface, wl_compositor_interface, wl_display_interface, wl_registry_interface, wl_surface_interface } from '../../lib/wayland/protocol/wayland.js';
import { zwp_linux_buffer_params_v1_interface, zwp_linux_dmabuf_feedback_v1_interface, zwp_linux_dmabuf_v1_interface } from '../../lib/wayland/protocol/linux-dmabuf-v1.js';
import { xdg_surface_interface, xdg_toplevel_interface, xdg_wm_base_interface } from '../../lib/wayland/protocol/xdg-shell.js';
import { native } from '../../lib/core/native.js';
import { ScriptedPeer } from './fixtures/wayland-peer.js';
import { openFdCount, warmUp } from './fixtures/support.js';

const XR24 = 0x34325258;
const AR24 = 0x34325241;
const LINEAR = 0n;
const INVALID = 0x00ff_ffff_ffff_ffffn;

test.before(warmUp);

async function sync(peer: ScriptedPeer): Promise<void> {
  const s = await peer.expect(wl_display_interface, 'sync');
  await peer.event(s.values[0] as number, wl_callback_interface, 'done', [0]);
  await peer.event(1, wl_display_interface, 'delete_id', [s.values[0] as number]);
}

test.serial('a v5 compositor: formats from the feedback table, a window, present, release, ping and close', async (t) => {
  const before = openFdCount();
  const [a, b] = UnixSocket.pair();
  const peer = new ScriptedPeer(b);
  const connecting = WaylandClient.over(new WaylandConnection(a));

  const registry = (await peer.expect(wl_display_interface, 'get_registry')).values[0] as number;
  const globals: [number, string, number][] = [[1, 'wl_compositor', 6], [2, 'xdg_wm_base', 6], [3, 'zwp_linux_dmabuf_v1', 5], [4, 'wl_shm', 1]];
  for (const g of globals) await peer.event(registry, wl_registry_interface, 'global', g);
  await sync(peer);
  const ids: Record<string, number> = {};
  for (const [name, iface, offered] of globals) {
    const bind = (await peer.expect(wl_registry_interface, 'bind')).values;
    const v = bind[1] as { interface: string; version: number; id: number };
    t.is(bind[0], name);
    t.is(v.interface, iface);
    t.true(v.version <= offered);
    ids[iface] = v.id;
  }
  const feedback = (await peer.expect(zwp_linux_dmabuf_v1_interface, 'get_default_feedback')).values[0] as number;
  // Table: XR24/LINEAR, AR24/INVALID, XR24/INVALID; one tranche naming entries 0 and 2.
  const entries: [number, bigint][] = [[XR24, LINEAR], [AR24, INVALID], [XR24, INVALID]];
  using table = Memfd.create('format-table', entries.length * 16);
  const tableView = table.map();
  const dv = new DataView(tableView.buffer);
  entries.forEach(([f, m], i) => {
    dv.setUint32(i * 16, f, true);
    dv.setBigUint64(i * 16 + 8, m, true);
  });
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'format_table', [table.fd, entries.length * 16]);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'main_device', [new Uint8Array(8)]);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'tranche_target_device', [new Uint8Array(8)]);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'tranche_formats', [new Uint8Array([0, 0, 2, 0])]);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'tranche_flags', [0]);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'tranche_done', []);
  await peer.event(feedback, zwp_linux_dmabuf_feedback_v1_interface, 'done', []);
  await peer.expect(zwp_linux_dmabuf_feedback_v1_interface, 'destroy');
  const wl = await connecting;
  t.is(wl.dmabufVersion, 5);
  t.deepEqual([...wl.dmabufFormats], [[XR24, [LINEAR, INVALID]]], 'only the tranche\'s entries');

  // Window: surface, xdg_surface, toplevel, title, fullscreen, initial commit; configure → ack.
  const creating = wl.createWindow({ title: 'test', width: 320, height: 200, fullscreen: true });
  await peer.expect(wl_compositor_interface, 'create_surface');
  const xdgSurface = (await peer.expect(xdg_wm_base_interface, 'get_xdg_surface')).values[0] as number;
  const toplevel = (await peer.expect(xdg_surface_interface, 'get_toplevel')).values[0] as number;
  t.deepEqual((await peer.expect(xdg_toplevel_interface, 'set_title')).values, ['test']);
  t.deepEqual((await peer.expect(xdg_toplevel_interface, 'set_fullscreen')).values, [0]);
  await peer.expect(wl_surface_interface, 'commit');
  await peer.event(toplevel, xdg_toplevel_interface, 'configure', [640, 480, new Uint8Array([2, 0, 0, 0])]);
  await peer.event(xdgSurface, xdg_surface_interface, 'configure', [77]);
  t.deepEqual((await peer.expect(xdg_surface_interface, 'ack_configure')).values, [77]);
  const win = await creating;
  t.deepEqual(win.size, { width: 640, height: 480 });

  // ping → pong
  await peer.event(ids.xdg_wm_base!, xdg_wm_base_interface, 'ping', [1234]);
  t.deepEqual((await peer.expect(xdg_wm_base_interface, 'pong')).values, [1234]);

  // A format not in the tranche, or lines that overlap: refused before anything is sent (the next request is the sync).
  using memfd = Memfd.create('pixels', 640 * 480 * 4 + 4096);
  const fake = (fourcc: number, modifier: bigint): ExportedSurface => ({
    dmabuf: memfd as unknown as DmaBuf,
    fourcc,
    modifier,
    width: 640,
    height: 480,
    planes: [{ offset: 256, stride: 2560 }],
    [Symbol.dispose]() {},
  });
  await t.throwsAsync(win.present(fake(AR24, INVALID)), { instanceOf: UnsupportedFormatError, message: /AR24 \(0x34325241\) with modifier 0xffffffffffffff; it offers XR24 \[0x0, 0xffffffffffffff\]/ });
  const narrow = { ...fake(XR24, LINEAR), planes: [{ offset: 0, stride: 640 * 2 }] as [{ offset: number; stride: number }] };
  await t.throwsAsync(win.present(narrow), { code: 'ERR_INVALID_ARG_VALUE', message: /stride 1280 is below its width 640 × 4/ });
  const rt = wl.roundtrip();
  await sync(peer);
  await rt;

  // present: params, add (fd, plane 0, offset, stride, modifier hi/lo), create → created → attach, damage, frame, commit.
  const surf = fake(XR24, LINEAR);
  let presented = false;
  const presenting = win.present(surf, { damage: [{ x: 1, y: 2, width: 3, height: 4 }] }).then(() => (presented = true));
  const params = (await peer.expect(zwp_linux_dmabuf_v1_interface, 'create_params')).values[0] as number;
  const add = (await peer.expect(zwp_linux_buffer_params_v1_interface, 'add')).values as number[];
  t.is(native.fstat(add[0]!).ino, native.fstat(memfd.fd).ino);
  native.close(add[0]!);
  t.deepEqual(add.slice(1), [0, 256, 2560, 0, 0]);
  t.deepEqual((await peer.expect(zwp_linux_buffer_params_v1_interface, 'create')).values, [640, 480, XR24, 0]);
  const bufferId = 0xff00_0001;
  await peer.event(params, zwp_linux_buffer_params_v1_interface, 'created', [bufferId]);
  await peer.expect(zwp_linux_buffer_params_v1_interface, 'destroy');
  t.deepEqual((await peer.expect(wl_surface_interface, 'attach')).values, [bufferId, 0, 0]);
  t.deepEqual((await peer.expect(wl_surface_interface, 'damage_buffer')).values, [1, 2, 3, 4]);
  const frame = (await peer.expect(wl_surface_interface, 'frame')).values[0] as number;
  await peer.expect(wl_surface_interface, 'commit');
  t.false(presented);
  t.true(win.isBusy(surf));
  await peer.event(frame, wl_callback_interface, 'done', [16]);
  await presenting;

  // Held until release; a second present reuses the wl_buffer (no new params).
  let released = false;
  const releasing = win.released(surf).then(() => (released = true));
  const again = win.present(surf);
  t.deepEqual((await peer.expect(wl_surface_interface, 'attach')).values, [bufferId, 0, 0]);
  await peer.expect(wl_surface_interface, 'damage_buffer');
  const frame2 = (await peer.expect(wl_surface_interface, 'frame')).values[0] as number;
  await peer.expect(wl_surface_interface, 'commit');
  await peer.event(frame2, wl_callback_interface, 'done', [32]);
  await again;
  t.false(released);
  await peer.event(bufferId, wl_buffer_interface, 'release', []);
  await releasing;
  t.false(win.isBusy(surf));

  // Close requests reach the handler.
  const closeAsked = new Promise<void>((resolve) => win.onCloseRequest(resolve));
  await peer.event(toplevel, xdg_toplevel_interface, 'close', []);
  await closeAsked;

  win.close();
  await peer.expect(xdg_toplevel_interface, 'destroy');
  await peer.expect(xdg_surface_interface, 'destroy');
  await peer.expect(wl_surface_interface, 'destroy');
  await peer.expect(wl_buffer_interface, 'destroy');
  wl.close();
  peer.close();
  memfd.close();
  table.close();
  t.is(openFdCount(), before);
});
