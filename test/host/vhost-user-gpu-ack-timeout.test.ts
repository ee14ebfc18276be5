// QEMU's DMABUF_UPDATE ack, bounded: a QEMU that does not ack (a GL display that never finishes
// drawing; QEMU then reads nothing more from the GPU socket) must not stall the control queue.
// The scripted display (fixtures/gpu-peer.ts) holds its ack and stops reading, as QEMU does.
import test from 'ava';
import { GpuRequest, GpuSocket, GpuSocketTimeoutError } from '../../qemu-glue/vhost-user-gpu/gpu-socket.js';
import { Command as C, Response as R } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { attach, cmd, create2d, flush, Rig, setScanout } from './fixtures/gpu-rig.js';
import { FakeQemuDisplay } from './fixtures/gpu-peer.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

test.serial('a late ack is consumed by the request that timed out, never taken for a later reply', async (t) => {
  const before = openFdCount();
  const display = new FakeQemuDisplay();
  const gpu = new GpuSocket(display.theirs, { updateAckTimeoutMs: 100, replyTimeoutMs: 5000 });
  await gpu.negotiate();
  display.ackUpdates = false;
  const error = await t.throwsAsync(gpu.dmabufUpdate(0, { x: 0, y: 0, width: 8, height: 8 }));
  t.true(error instanceof GpuSocketTimeoutError, String(error));
  t.true(gpu.overdue);
  // Sent while QEMU is stuck: its reply comes after the late ack, and must be matched to it.
  const info = gpu.getDisplayInfo();
  await sleep(50);
  display.ackUpdates = true;
  await display.sendHeldAcks();
  t.is((await info).length, 408, 'GET_DISPLAY_INFO got its own reply, not the 0-byte ack');
  t.false(gpu.overdue);
  t.deepEqual(gpu.stats, { timeouts: 1, lateReplies: 1 });
  await gpu.dmabufUpdate(0, { x: 0, y: 0, width: 8, height: 8 });
  t.is(gpu.stats.timeouts, 1, 'the next update is acked in time');
  gpu[Symbol.dispose]();
  display.close();
  await display.done;
  await gpu.ended;
  t.is(openFdCount(), before);
});

test.serial('a QEMU that stops acking: flushes are answered after updateAckTimeoutMs, then at once; one warning; a catch-up update when QEMU resumes', async (t) => {
  const before = openFdCount();
  const rig = new Rig({ updateAckTimeoutMs: 150 });
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100000, 16384]]), setScanout(0, 1, 64, 64)]) t.is(await rig.type(request), R.OK_NODATA);
  const display = rig.display!;
  display.ackUpdates = false;
  let started = performance.now();
  t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA);
  const first = performance.now() - started;
  t.true(first >= 140 && first < 2000, `first flush answered after ${first.toFixed(0)} ms`);
  started = performance.now();
  for (let i = 0; i < 5; i++) t.is(await rig.type(flush(1, 8, 8, 4, 4)), R.OK_NODATA);
  const rest = performance.now() - started;
  t.true(rest < 140, `five more flushes answered in ${rest.toFixed(0)} ms, without waiting on QEMU`);
  t.like(rig.device.stats, { updateAckTimeouts: 1, updatesSkipped: 5 });
  t.deepEqual(rig.warnings.map((w) => w.code), ['ERR_VHOST_USER_GPU_TIMEOUT'], 'reported once');
  t.is(display.of(GpuRequest.DMABUF_UPDATE).length, 1, 'nothing more was piled on a QEMU that is not reading');
  // QEMU finishes drawing: the late ack, then a catch-up update of the whole scanout.
  display.ackUpdates = true;
  await display.sendHeldAcks();
  const deadline = Date.now() + 2000;
  while (display.of(GpuRequest.DMABUF_UPDATE).length < 2 && Date.now() < deadline) await sleep(10);
  const updates = display.of(GpuRequest.DMABUF_UPDATE);
  t.is(updates.length, 2);
  const v = new DataView(updates[1]!.payload.buffer, updates[1]!.payload.byteOffset);
  t.deepEqual([v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true), v.getUint32(12, true), v.getUint32(16, true)], [0, 0, 0, 64, 64], 'the scanout, whole');
  // Replies line up again: display info gets its own, and a flush is acked in time.
  t.is((await rig.command(cmd(C.GET_DISPLAY_INFO), 408)).type, R.OK_DISPLAY_INFO);
  t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA);
  t.like(rig.device.stats, { updateAckTimeouts: 1, updatesSkipped: 5 });
  t.is(rig.warnings.length, 1);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('a QEMU that never acks again: the control queue keeps going and the device closes cleanly', async (t) => {
  const before = openFdCount();
  const rig = new Rig({ updateAckTimeoutMs: 100 });
  await rig.start();
  for (const request of [create2d(1, 64, 64), attach(1, [[0x100000, 16384]]), setScanout(0, 1, 64, 64)]) t.is(await rig.type(request), R.OK_NODATA);
  rig.display!.ackUpdates = false;
  const started = performance.now();
  for (let i = 0; i < 50; i++) t.is(await rig.type(flush(1, 64, 64)), R.OK_NODATA);
  t.true(performance.now() - started < 2000, 'one timeout, not fifty');
  t.like(rig.device.stats, { updateAckTimeouts: 1, updatesSkipped: 49 });
  t.true(rig.display!.holding);
  await rig.close();
  t.is(openFdCount(), before);
});
