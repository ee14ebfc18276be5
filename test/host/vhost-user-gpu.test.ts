// The vhost-user-gpu device driven as QEMU and a Linux guest (and a hostile one) would: the
// scripted front end on the main socket, a scripted QEMU display on the GPU socket, and
// virtio-gpu commands in the control queue. There is no udmabuf on the host, so the export
// step is injected: a memfd stands in for each dma-buf, and the test checks what would have
// been exported (resource, format, backing entries) and what QEMU was sent.
import test from 'ava';
import { fourcc } from '../../lib/formats/drm.js';
import { Request } from '../../qemu-glue/vhost-user/protocol.js';
import { GpuRequest } from '../../qemu-glue/vhost-user-gpu/gpu-socket.js';
import { Command as C, Response as R, FLAG_FENCE } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { attach, cmd, create2d, cursorCmd, detach, flush, Rig, setScanout, transfer, unref, XRGB } from './fixtures/gpu-rig.js';
import { HIGH_GPA, REGION_SIZE } from './fixtures/vhost-front-end.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

test.serial('a guest console comes up: display info, EDID, create, attach, scanout as a dma-buf, transfer, flush', async (t) => {
  const before = openFdCount();
  const rig = new Rig();
  await rig.start();
  const info = await rig.command(cmd(C.GET_DISPLAY_INFO), 408);
  t.is(info.type, R.OK_DISPLAY_INFO);
  const v = new DataView(info.bytes.buffer);
  t.deepEqual([v.getUint32(32, true), v.getUint32(36, true), v.getUint32(40, true)], [1024, 768, 1], 'QEMU\'s mode, passed through');
  const edid = await rig.command(cmd(C.GET_EDID, [0, 0]), 1056);
  t.is(edid.type, R.OK_EDID);
  t.deepEqual([...edid.bytes.subarray(32, 40)], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
  // 1024×768 XRGB is 3 MiB: backing in two pieces, one in each RAM region (page granular, as Linux gives it).
  const [w, h] = [1024, 768];
  t.is(await rig.type(create2d(1, w, h)), R.OK_NODATA);
  const half = (w * h * 4) / 2;
  t.is(await rig.type(attach(1, [[0x100000, half], [HIGH_GPA, half]])), R.OK_NODATA);
  const fenced = await rig.command(setScanout(0, 1, w, h), 24);
  t.is(fenced.type, R.OK_NODATA);
  t.is(rig.exports.length, 1);
  t.deepEqual(rig.exports[0]!.resource, { resourceId: 1, format: XRGB, width: w, height: h, stride: w * 4, entries: [{ addr: 0x100000, length: half }, { addr: HIGH_GPA, length: half }] });
  t.is(await rig.type(transfer(1, w, h)), R.OK_NODATA);
  const done = await rig.command(cmd(C.RESOURCE_FLUSH, [0, 0, w, h, 1, 0], { flags: FLAG_FENCE, fence: 0x1234n }));
  t.deepEqual([done.type, done.flags, done.fence], [R.OK_NODATA, FLAG_FENCE, 0x1234n], 'the fence comes back');
  const display = rig.display!;
  t.is(display.of(GpuRequest.SET_PROTOCOL_FEATURES).length, 1);
  const scanout = display.of(GpuRequest.DMABUF_SCANOUT2);
  t.is(scanout.length, 1, 'SCANOUT2: QEMU offered DMABUF2');
  const sv = new DataView(scanout[0]!.payload.buffer, scanout[0]!.payload.byteOffset);
  t.deepEqual([sv.getUint32(0, true), sv.getUint32(12, true), sv.getUint32(16, true), sv.getUint32(28, true), sv.getInt32(36, true), sv.getBigUint64(40, true)], [0, w, h, w * 4, fourcc('XR24'), 0n]);
  t.true(scanout[0]!.fdLinks[0]!.startsWith('/memfd:fake dma-buf 1'), 'the exported buffer went to QEMU');
  t.is(display.of(GpuRequest.DMABUF_UPDATE).length, 1);
  t.is(rig.device.scanout(0)?.width, w);
  // Unref of the shown resource: the scanout is disabled first, the buffer released.
  t.is(await rig.type(unref(1)), R.OK_NODATA);
  t.true(rig.exports[0]!.disposed);
  t.is(rig.device.scanout(0), null);
  t.is((await display.waitFor(GpuRequest.DMABUF_SCANOUT, 1)).length, 1, 'a disable message');
  t.deepEqual(rig.warnings.map((w) => w.message), []);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('requests in several pieces and through indirect tables decode the same', async (t) => {
  const rig = new Rig();
  await rig.start();
  t.is((await rig.command(create2d(5, 64, 64), 24, { indirect: true })).type, R.OK_NODATA);
  const gpa = rig.control.submit(attach(5, [[0x200000, 64 * 64 * 4]]), 24, { pieces: 4 });
  rig.control.kick.signal();
  await rig.control.waitUsed(2);
  t.is(new DataView(rig.ram.at(gpa, 4).slice().buffer).getUint32(0, true), R.OK_NODATA);
  t.is(rig.device.resources.get(5).backingBytes, 64 * 64 * 4);
  await rig.close();
});

const refusals: [string, (rig: Rig) => Promise<void>, Uint8Array, number][] = [
  ['an unknown command', async () => {}, cmd(0x0777), R.ERR_UNSPEC],
  ['a request shorter than its header', async () => {}, new Uint8Array(10), R.ERR_UNSPEC],
  ['CREATE_2D cut short', async () => {}, create2d(1, 64, 64).subarray(0, 36), R.ERR_UNSPEC],
  ['resource id 0', async () => {}, create2d(0, 64, 64), R.ERR_INVALID_RESOURCE_ID],
  ['a reused resource id', async (r) => void (await r.type(create2d(1, 64, 64))), create2d(1, 64, 64), R.ERR_INVALID_RESOURCE_ID],
  ['an unknown format', async () => {}, create2d(1, 64, 64, 999), R.ERR_INVALID_PARAMETER],
  ['a 0×0 resource', async () => {}, create2d(1, 0, 0), R.ERR_INVALID_PARAMETER],
  ['a 65536×65536 resource', async () => {}, create2d(1, 65536, 65536), R.ERR_INVALID_PARAMETER],
  ['a resource over the per-resource cap', async () => {}, create2d(1, 16384, 16384), R.ERR_OUT_OF_MEMORY],
  ['UNREF of a resource never created', async () => {}, unref(42), R.ERR_INVALID_RESOURCE_ID],
  ['UNREF twice', async (r) => void (await r.type(create2d(1, 64, 64)), await r.type(unref(1))), unref(1), R.ERR_INVALID_RESOURCE_ID],
  ['ATTACH to a resource never created', async () => {}, attach(9, [[0x100000, 4096]]), R.ERR_INVALID_RESOURCE_ID],
  ['a backing entry past the end of RAM', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[REGION_SIZE - 4096, 8192]]), R.ERR_UNSPEC],
  ['a backing entry in the hole', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[0xc000_0000, 4096]]), R.ERR_UNSPEC],
  ['a backing entry at 2^64 − 4096', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[0xffff_ffff_ffff_f000n, 4096]]), R.ERR_UNSPEC],
  ['a zero-length backing entry', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[0x100000, 0]]), R.ERR_UNSPEC],
  ['16385 backing entries', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[0x100000, 4096]], 16385), R.ERR_UNSPEC],
  ['more entries announced than sent', async (r) => void (await r.type(create2d(1, 64, 64))), attach(1, [[0x100000, 4096]], 3), R.ERR_UNSPEC],
  ['a second ATTACH', async (r) => void (await r.type(create2d(1, 64, 64)), await r.type(attach(1, [[0x100000, 16384]]))), attach(1, [[0x200000, 16384]]), R.ERR_UNSPEC],
  ['DETACH without backing', async (r) => void (await r.type(create2d(1, 64, 64))), detach(1), R.ERR_UNSPEC],
  ['SET_SCANOUT on scanout 1 of 1', async (r) => void (await r.type(create2d(1, 64, 64))), setScanout(1, 1, 64, 64), R.ERR_INVALID_SCANOUT_ID],
  ['SET_SCANOUT of a resource never created', async () => {}, setScanout(0, 7, 64, 64), R.ERR_INVALID_RESOURCE_ID],
  ['a scanout rectangle past the resource', async (r) => void (await r.type(create2d(1, 64, 64))), setScanout(0, 1, 64, 64, 1, 0), R.ERR_INVALID_PARAMETER],
  ['a scanout rectangle that wraps u32', async (r) => void (await r.type(create2d(1, 64, 64))), setScanout(0, 1, 0xffff_fff0, 64, 32, 0), R.ERR_INVALID_PARAMETER],
  ['a scanout under 16×16', async (r) => void (await r.type(create2d(1, 64, 64))), setScanout(0, 1, 8, 8), R.ERR_INVALID_PARAMETER],
  ['a flush rectangle past the resource', async (r) => void (await r.type(create2d(1, 64, 64))), flush(1, 65, 64), R.ERR_INVALID_PARAMETER],
  ['a transfer without backing', async (r) => void (await r.type(create2d(1, 64, 64))), transfer(1, 64, 64), R.ERR_UNSPEC],
  ['a transfer reading past the backing', async (r) => void (await r.type(create2d(1, 64, 64)), await r.type(attach(1, [[0x100000, 8192]]))), transfer(1, 64, 64), R.ERR_INVALID_PARAMETER],
  ['a transfer at an absurd offset', async (r) => void (await r.type(create2d(1, 64, 64)), await r.type(attach(1, [[0x100000, 16384]]))), transfer(1, 1, 1, 1n << 62n), R.ERR_INVALID_PARAMETER],
  ['GET_CAPSET_INFO on a 2D device', async () => {}, cmd(C.GET_CAPSET_INFO, [0, 0]), R.ERR_INVALID_PARAMETER],
  ['GET_EDID of scanout 3', async () => {}, cmd(C.GET_EDID, [3, 0]), R.ERR_INVALID_SCANOUT_ID],
  ['a cursor command on the control queue', async () => {}, cursorCmd(C.MOVE_CURSOR, 0, 1, 1), R.ERR_UNSPEC],
];

for (const [name, setup, request, expected] of refusals) {
  test.serial(`${name} gets 0x${expected.toString(16)}`, async (t) => {
    const rig = new Rig();
    await rig.start();
    await setup(rig);
    t.is(await rig.type(request), expected);
    t.is(rig.warnings.filter((w) => w.code !== 'ERR_VIRTIO_GPU_REFUSED').length, 0, rig.warnings.map((w) => w.message).join('\n'));
    // Still serving.
    t.is(await rig.type(create2d(100, 16, 16)), R.OK_NODATA);
    await rig.close();
  });
}

test.serial('the resource-count cap and the attached-backing cap answer OUT_OF_MEMORY; unref frees both', async (t) => {
  const rig = new Rig({ limits: { maxResources: 3, maxBackingBytes: 3 * 4096 } });
  await rig.start();
  for (const id of [1, 2, 3]) t.is(await rig.type(create2d(id, 16, 16)), R.OK_NODATA);
  t.is(await rig.type(create2d(4, 16, 16)), R.ERR_OUT_OF_MEMORY);
  t.is(await rig.type(attach(1, [[0x100000, 8192]])), R.OK_NODATA);
  t.is(await rig.type(attach(2, [[0x200000, 8192]])), R.ERR_OUT_OF_MEMORY);
  t.is(await rig.type(unref(1)), R.OK_NODATA);
  t.is(rig.device.resources.backingBytes, 0);
  t.is(await rig.type(attach(2, [[0x200000, 8192]])), R.OK_NODATA);
  t.is(await rig.type(create2d(4, 16, 16)), R.OK_NODATA);
  await rig.close();
});

test.serial('cursor queue: move, update from a 64×64 resource, hide; bad cursors are ignored', async (t) => {
  const rig = new Rig();
  await rig.start();
  await rig.type(create2d(9, 64, 64));
  rig.ram.at(0x300000, 16384).fill(0xab);
  await rig.type(attach(9, [[0x300000, 16384]]));
  await rig.cursorCommand(cursorCmd(C.MOVE_CURSOR, 0, 10, 20));
  await rig.cursorCommand(cursorCmd(C.UPDATE_CURSOR, 0, 10, 20, 9, 3, 4));
  await rig.cursorCommand(cursorCmd(C.UPDATE_CURSOR, 0, 0, 0, 0));
  await rig.cursorCommand(cursorCmd(C.UPDATE_CURSOR, 0, 0, 0, 77));
  await rig.cursorCommand(cursorCmd(C.MOVE_CURSOR, 5, 0, 0));
  await rig.cursorCommand(new Uint8Array(8));
  // Wait until QEMU has everything the back end sent.
  await rig.command(cmd(C.GET_DISPLAY_INFO), 408);
  const display = rig.display!;
  t.is(display.of(GpuRequest.CURSOR_POS).length, 1);
  const update = display.of(GpuRequest.CURSOR_UPDATE);
  t.is(update.length, 1);
  t.is(update[0]!.payload.length, 16404);
  t.is(update[0]!.payload[20], 0xab, 'pixels copied from the backing');
  t.is(display.of(GpuRequest.CURSOR_POS_HIDE).length, 1);
  t.is(rig.warnings.length, 3, rig.warnings.map((w) => w.message).join('\n'));
  await rig.close();
});

test.serial('without a GPU socket the device answers from its defaults and exports nothing to nobody', async (t) => {
  const rig = new Rig({ display: false });
  await rig.start();
  const info = await rig.command(cmd(C.GET_DISPLAY_INFO), 408);
  t.deepEqual([new DataView(info.bytes.buffer).getUint32(32, true), new DataView(info.bytes.buffer).getUint32(36, true)], [1280, 800]);
  t.is(await rig.type(cmd(C.GET_EDID, [0, 0])), R.ERR_UNSPEC);
  await rig.close();
});

test.serial('a failed export is reported once per SET_SCANOUT, and the guest is still answered OK', async (t) => {
  const rig = new Rig({ failExport: true });
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100000, 16384]]), setScanout(0, 1, 64, 64), flush(1, 64, 64), flush(1, 64, 64)]) {
    t.is(await rig.type(request), R.OK_NODATA);
  }
  t.deepEqual(rig.warnings.map((w) => w.code), ['ERR_NOT_SUPPORTED']);
  t.is(rig.device.scanout(0), null);
  t.is(rig.display!.of(GpuRequest.DMABUF_UPDATE).length, 0, 'nothing shown, nothing to update');
  await rig.close();
});

test.serial('a backing that starts inside a page is not shown (DMABUF_SCANOUT has no offset) and the guest is still answered', async (t) => {
  const rig = new Rig();
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100100, 16384]]), setScanout(0, 1, 64, 64)]) t.is(await rig.type(request), R.OK_NODATA);
  t.deepEqual(rig.warnings.map((w) => w.code), ['ERR_NOT_SUPPORTED']);
  t.true(rig.exports[0]!.disposed);
  t.is(rig.display!.of(GpuRequest.DMABUF_SCANOUT2).length, 0);
  await rig.close();
});

test.serial('QEMU closing the GPU socket mid-session: flushes and display info are still answered, the breakage reported', async (t) => {
  const rig = await showingResource1();
  rig.display!.close();
  await rig.display!.done;
  t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA, 'the guest is not punished for QEMU');
  t.is(await rig.type(cmd(C.GET_DISPLAY_INFO)), R.ERR_UNSPEC);
  t.true(rig.warnings.some((w) => w.code === 'ERR_VHOST_USER_GPU_SOCKET'), rig.warnings.map((w) => w.message).join('\n'));
  t.is(await rig.type(create2d(2, 16, 16)), R.OK_NODATA);
  await rig.close();
});

for (const [what, bytes] of [
  // request GET_DISPLAY_INFO (3), flags REPLY (4), size 0xffffffff: a length no reply may have.
  ['a reply claiming a 4 GiB payload', Uint8Array.of(3, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)],
  // A well-formed header for a reply nobody asked for (DMABUF_UPDATE (10), 0 bytes).
  ['a reply nobody asked for', Uint8Array.of(10, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0)],
] as const) {
  test.serial(`a QEMU display that sends ${what}: the GPU socket is dropped and reported, the guest still answered`, async (t) => {
    const before = openFdCount();
    const rig = await showingResource1();
    await rig.display!.sendRaw(bytes);
    await sleep(300); // the back end reads it and gives up on the socket (reported at its next use)
    t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA, 'the guest is not punished for QEMU');
    t.is(await rig.type(cmd(C.GET_DISPLAY_INFO)), R.ERR_UNSPEC, 'QEMU is not asked again over a socket it broke');
    t.true(rig.warnings.some((w) => w.code === 'ERR_VHOST_USER_GPU_SOCKET'), rig.warnings.map((w) => w.message).join('\n'));
    t.is(await rig.type(create2d(2, 16, 16)), R.OK_NODATA);
    await rig.close();
    t.is(openFdCount(), before);
  });
}

/** A started rig whose scanout 0 shows resource 1 (64×64, backing at gpa 1 MiB): 3 commands. */
async function showingResource1(): Promise<Rig> {
  const rig = new Rig();
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100000, 16384]]), setScanout(0, 1, 64, 64)]) {
    if ((await rig.type(request)) !== R.OK_NODATA) throw new Error('setup refused');
  }
  return rig;
}

test.serial('a guest reboot (RESET_DEVICE) and a QEMU disconnect drop every resource, buffer and fd', async (t) => {
  const before = openFdCount();
  const rig = await showingResource1();
  t.is(rig.exports.length, 1);
  t.is(await rig.front.acked(Request.RESET_DEVICE), 0n);
  t.true(rig.exports[0]!.disposed);
  t.is(rig.device.resources.count, 0);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('100,000 commands (create, attach, transfer, flush, unref, and garbage) leak nothing', async (t) => {
  const before = openFdCount();
  const rig = await showingResource1();
  const started = performance.now();
  const cycle = [create2d(2, 32, 32), attach(2, [[0x200000, 4096]]), transfer(1, 64, 64), flush(1, 64, 64), unref(2), cmd(0x9999), unref(3), attach(77, [[0, 1]]), setScanout(4, 1, 64, 64), transfer(1, 65, 1)];
  const expected = [R.OK_NODATA, R.OK_NODATA, R.OK_NODATA, R.OK_NODATA, R.OK_NODATA, R.ERR_UNSPEC, R.ERR_INVALID_RESOURCE_ID, R.ERR_INVALID_RESOURCE_ID, R.ERR_INVALID_SCANOUT_ID, R.ERR_INVALID_PARAMETER];
  let wrong = 0;
  const total = 100_000;
  for (let i = 0; i < total; i += cycle.length) {
    // A batch per kick, as a busy guest queues them; responses read back after the batch.
    const gpas = cycle.map((request) => rig.control.submit(request, 24));
    rig.control.kick.signal();
    await rig.control.waitUsed(3 + i + cycle.length);
    gpas.forEach((gpa, j) => {
      if (new DataView(rig.ram.at(gpa, 4).slice().buffer).getUint32(0, true) !== expected[j]) wrong++;
    });
  }
  const ms = performance.now() - started;
  t.is(wrong, 0);
  t.is(rig.device.resources.count, 1);
  t.is(rig.display!.of(GpuRequest.DMABUF_UPDATE).length, total / cycle.length);
  t.log(`${total} commands in ${ms.toFixed(0)} ms: ${((ms * 1000) / total).toFixed(1)} µs per command (half refused; each flush waits for QEMU's ack)`);
  await rig.close();
  t.is(openFdCount(), before);
});
