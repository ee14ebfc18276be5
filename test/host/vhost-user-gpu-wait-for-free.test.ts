// Wait-for-free: after DETACH_BACKING or UNREF the guest may reuse the pages, so in zero copy
// the back end answers only once nobody holds the resource's dma-buf any more (or a timeout
// says it gave up). The exports are stand-ins that a test can "hold" as a compositor or QEMU's
// display would (fixtures/gpu-rig.ts); their whenReleased resolves when every holder let go.
// Also here: a resource's export is kept and reused until its backing goes.
import test from 'ava';
import { Request } from '../../qemu-glue/vhost-user/protocol.js';
import * as M from '../../qemu-glue/vhost-user/messages.js';
import { GpuRequest } from '../../qemu-glue/vhost-user-gpu/gpu-socket.js';
import { Command as C, Response as R } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { attach, create2d, cursorCmd, detach, flush, Rig, setScanout, unref, type RigOptions } from './fixtures/gpu-rig.js';
import { REGIONS } from './fixtures/vhost-front-end.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

/** A started rig whose scanout 0 shows resource 1 (64×64, backing at gpa 1 MiB). */
async function showing(options: RigOptions): Promise<Rig> {
  const rig = new Rig(options);
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100000, 16384]]), setScanout(0, 1, 64, 64), flush(1, 64, 64)]) {
    if ((await rig.type(request)) !== R.OK_NODATA) throw new Error('setup refused');
  }
  return rig;
}

/** Submits a control command without waiting for it; returns where its response will be. */
function submit(rig: Rig, request: Uint8Array): number {
  const gpa = rig.control.submit(request, 24);
  rig.control.kick.signal();
  return gpa;
}

const responseType = (rig: Rig, gpa: number): number => new DataView(rig.ram.at(gpa, 4).slice().buffer).getUint32(0, true);

for (const [command, request] of [['RESOURCE_UNREF', unref(1)], ['RESOURCE_DETACH_BACKING', detach(1)]] as const) {
  test.serial(`${command} of a shown resource a compositor still holds is answered only after it lets go; the cursor queue is served meanwhile`, async (t) => {
    const before = openFdCount();
    const rig = await showing({ observable: true, waitForFreeTimeoutMs: 10_000 });
    const exported = rig.exports[0]!;
    const letGo = exported.hold();
    const used = rig.control.usedIdx;
    const gpa = submit(rig, request);
    await sleep(150);
    t.is(rig.control.usedIdx, used, 'not answered while the buffer is held');
    t.true(exported.disposed, 'the device closed its own fd at once');
    t.is(exported.releaseAsked, 1, 'and asked for the release before closing it');
    t.is((await rig.display!.waitFor(GpuRequest.DMABUF_SCANOUT, 1)).length, 1, 'QEMU was told to let go first (a disable)');
    t.is(rig.device.scanout(0), null);
    await rig.cursorCommand(cursorCmd(C.MOVE_CURSOR, 0, 5, 5));
    t.pass('a cursor command was answered while the control queue waits');
    letGo();
    await rig.control.waitUsed(used + 1);
    t.is(responseType(rig, gpa), R.OK_NODATA);
    t.like(rig.device.stats, { waitsForFree: 1, waitForFreeTimeouts: 0, releasesUnobserved: 0 });
    t.deepEqual(rig.warnings.map((w) => w.message), []);
    await rig.close();
    t.is(openFdCount(), before);
  });
}

test.serial('commands queued behind a waiting UNREF are answered after it, in order', async (t) => {
  const rig = await showing({ observable: true, waitForFreeTimeoutMs: 10_000 });
  const letGo = rig.exports[0]!.hold();
  const used = rig.control.usedIdx;
  const unrefGpa = submit(rig, unref(1));
  // Linux reuses the id and the pages at once: CREATE and ATTACH over the same memory.
  const createGpa = submit(rig, create2d(1, 64, 64));
  const attachGpa = submit(rig, attach(1, [[0x100000, 16384]]));
  await sleep(100);
  t.is(rig.control.usedIdx, used, 'nothing overtakes the waiting UNREF');
  letGo();
  await rig.control.waitUsed(used + 3);
  t.deepEqual([responseType(rig, unrefGpa), responseType(rig, createGpa), responseType(rig, attachGpa)], [R.OK_NODATA, R.OK_NODATA, R.OK_NODATA]);
  const heads = [0, 1, 2].map((i) => rig.control.usedElement(used + i).id);
  t.deepEqual(heads, [...heads].sort((a, b) => a - b), 'used in submission order');
  await rig.close();
});

test.serial('a holder that never lets go: the guest is answered after waitForFreeTimeoutMs, warned once and counted', async (t) => {
  const before = openFdCount();
  const rig = await showing({ observable: true, waitForFreeTimeoutMs: 200 });
  rig.exports[0]!.hold();
  const started = performance.now();
  t.is(await rig.type(unref(1)), R.OK_NODATA);
  const waited = performance.now() - started;
  t.true(waited >= 190, `answered after ${waited.toFixed(0)} ms`);
  t.true(waited < 2000, `answered after ${waited.toFixed(0)} ms`);
  t.like(rig.device.stats, { waitsForFree: 0, waitForFreeTimeouts: 1 });
  t.deepEqual(rig.warnings.map((w) => w.code), ['ERR_VIRTIO_GPU_WAIT_FOR_FREE_TIMEOUT']);
  t.is(await rig.type(create2d(2, 16, 16)), R.OK_NODATA, 'still serving');
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('an exporter without release notification: UNREF is answered at once and counted as unobserved', async (t) => {
  const rig = await showing({ observable: false, waitForFreeTimeoutMs: 10_000 });
  rig.exports[0]!.hold();
  const started = performance.now();
  t.is(await rig.type(unref(1)), R.OK_NODATA);
  t.true(performance.now() - started < 1000);
  t.like(rig.device.stats, { waitsForFree: 0, waitForFreeTimeouts: 0, releasesUnobserved: 1 });
  await rig.close();
});

test.serial('a reset while UNREF waits ends the wait and frees everything', async (t) => {
  const before = openFdCount();
  const rig = await showing({ observable: true, waitForFreeTimeoutMs: 10_000 });
  rig.exports[0]!.hold();
  const used = rig.control.usedIdx;
  submit(rig, unref(1));
  await sleep(50);
  t.is(rig.control.usedIdx, used);
  const started = performance.now();
  t.is(await rig.front.acked(Request.RESET_DEVICE), 0n, 'the main socket is not blocked by the wait');
  t.true(performance.now() - started < 1000);
  t.is(rig.device.resources.count, 0);
  t.like(rig.device.stats, { waitsForFree: 0, waitForFreeTimeouts: 0 });
  // The UNREF's answer is dropped: its ring was reset and its buffers unmapped (a guest reboot).
  await sleep(100);
  t.is(rig.control.usedIdx, used, 'nothing is written to a reset ring');
  t.deepEqual(rig.warnings.map((w) => `${w.code}: ${w.message}`), [], 'and nothing is written to unmapped memory');
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('a resource scanned out again reuses its dma-buf; DETACH, UNREF and reset drop it', async (t) => {
  const before = openFdCount();
  const rig = await showing({ observable: true });
  // fbcon's repeated SET_SCANOUT, then a flip to resource 2 and back.
  for (const request of [setScanout(0, 1, 64, 64), setScanout(0, 1, 64, 64), create2d(2, 64, 64), attach(2, [[0x200000, 16384]]), setScanout(0, 2, 64, 64), setScanout(0, 1, 64, 64), flush(1, 64, 64)]) {
    t.is(await rig.type(request), R.OK_NODATA);
  }
  t.is(rig.exports.length, 2, 'one export per resource');
  t.like(rig.device.stats, { exports: 2, exportsReused: 3 });
  t.false(rig.exports[0]!.disposed, 'kept while the backing is attached, even when not shown');
  const scanouts = await rig.display!.waitFor(GpuRequest.DMABUF_SCANOUT2, 1);
  t.is(scanouts.length, 5);
  t.is(new Set(scanouts.map((m) => m.fdLinks[0])).size, 2, 'QEMU was sent the same two buffers');
  // DETACH drops resource 1's; a new ATTACH exports again.
  t.is(await rig.type(detach(1)), R.OK_NODATA);
  t.true(rig.exports[0]!.disposed);
  t.is(await rig.type(attach(1, [[0x300000, 16384]])), R.OK_NODATA);
  t.is(await rig.type(setScanout(0, 1, 64, 64)), R.OK_NODATA);
  t.is(rig.exports.length, 3);
  t.deepEqual(rig.exports[2]!.resource.entries, [{ addr: 0x300000, length: 16384 }]);
  // UNREF of resource 2 (not shown) drops its export too.
  t.is(await rig.type(unref(2)), R.OK_NODATA);
  t.true(rig.exports[1]!.disposed);
  t.is(await rig.front.acked(Request.RESET_DEVICE), 0n);
  t.true(rig.exports.every((e) => e.disposed), 'a reset drops the rest');
  t.is(rig.device.stats.waitsForFree, 2);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('a new memory table retires exports: the next flush exports again, and UNREF still waits for the old buffer', async (t) => {
  const before = openFdCount();
  const rig = await showing({ observable: true, waitForFreeTimeoutMs: 10_000 });
  const old = rig.exports[0]!;
  const letGo = old.hold();
  t.is(await rig.front.acked(Request.SET_MEM_TABLE, M.encodeMemoryTable(REGIONS), [rig.ram.memfd, rig.ram.memfd]), 0n);
  t.false(old.disposed, 'retired, not closed');
  t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA);
  t.is(rig.exports.length, 2, 'exported again through the new table');
  const used = rig.control.usedIdx;
  submit(rig, unref(1));
  await sleep(100);
  t.is(rig.control.usedIdx, used, 'the old buffer is still held');
  t.true(old.disposed && rig.exports[1]!.disposed);
  letGo();
  await rig.control.waitUsed(used + 1);
  t.is(rig.device.stats.waitsForFree, 1);
  await rig.close();
  t.is(openFdCount(), before);
});
