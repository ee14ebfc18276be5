// Split virtqueues as a hostile guest fills them: every bad descriptor, chain, index or
// indirect table breaks the queue with a VirtqueueError (virtio's NEEDS_RESET) and nothing
// else: the back end keeps serving, the other queue keeps working, and the err fd fires.
import test from 'ava';
import type { GuestDmabufError } from '../../lib/core/errors.js';
import { EventFd } from '../../lib/fd/eventfd.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { VhostUserBackend } from '../../qemu-glue/vhost-user/backend.js';
import * as M from '../../qemu-glue/vhost-user/messages.js';
import { Feature, Request } from '../../qemu-glue/vhost-user/protocol.js';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from '../../qemu-glue/vhost-user/split-virtqueue.js';
import { EchoDevice } from './fixtures/echo-device.js';
import { ALL_FEATURES, DriverQueue, FrontEnd, GuestRam, HIGH_GPA, REGION_SIZE } from './fixtures/vhost-front-end.js';
import { openFdCount, warmUp } from './fixtures/support.js';

test.before(warmUp);

interface Rig {
  front: FrontEnd;
  backend: VhostUserBackend;
  device: EchoDevice;
  ram: GuestRam;
  q: DriverQueue;
  other: DriverQueue;
  err: EventFd;
  warnings: GuestDmabufError[];
  close(): Promise<void>;
}

async function rig(features = ALL_FEATURES): Promise<Rig> {
  const [ours, theirs] = UnixSocket.pair();
  const device = new EchoDevice();
  const warnings: GuestDmabufError[] = [];
  const backend = new VhostUserBackend(theirs, device, { onWarning: (e) => warnings.push(e) });
  const front = new FrontEnd(ours);
  const ram = new GuestRam();
  const q = new DriverQueue(ram, 0, 16, 0x1000);
  const other = new DriverQueue(ram, 1, 16, 0x4000);
  await front.start(ram, [q, other], { features });
  const err = EventFd.create();
  await front.acked(Request.SET_VRING_ERR, M.encodeU64(0n), [err]);
  return {
    front, backend, device, ram, q, other, err, warnings,
    async close() {
      front.socket.close();
      await backend.served;
      q.close();
      other.close();
      err.close();
      ram[Symbol.dispose]();
    },
  };
}

/** Kicks queue 0 and expects it to break with a message matching `pattern`, the other queue still working. */
async function expectBroken(t: import('ava').ExecutionContext, r: Rig, pattern: RegExp): Promise<void> {
  r.q.kick.signal();
  await r.err.wait();
  t.true(r.warnings.some((w) => w.code === 'ERR_VIRTQUEUE_BROKEN' && pattern.test(w.message)), r.warnings.map((w) => w.message).join('\n'));
  r.other.submit(new Uint8Array([7]), 1);
  r.other.kick.signal();
  await r.other.waitUsed(1);
  t.is(await r.front.acked(Request.SET_OWNER), 0n, 'the main socket still answers');
}

const hostile: [string, (r: Rig) => void, RegExp][] = [
  ['a descriptor loop', (r) => {
    r.q.writeDesc(0, 0x10000, 8, VRING_DESC_F_NEXT, 1);
    r.q.writeDesc(1, 0x10000, 8, VRING_DESC_F_NEXT, 0);
    r.q.publish(0);
  }, /loop/],
  ['a self-loop', (r) => {
    r.q.writeDesc(3, 0x10000, 8, VRING_DESC_F_NEXT, 3);
    r.q.publish(3);
  }, /loop/],
  ['a head past the ring', (r) => r.q.publish(16), /past the ring/],
  ['next past the ring', (r) => {
    r.q.writeDesc(0, 0x10000, 8, VRING_DESC_F_NEXT, 200);
    r.q.publish(0);
  }, /chains to 200/],
  ['a buffer past the end of RAM', (r) => {
    r.q.writeDesc(0, REGION_SIZE - 4, 8, 0, 0);
    r.q.publish(0);
  }, /not inside guest RAM/],
  ['a buffer in the hole below 4 GiB', (r) => {
    r.q.writeDesc(0, 0xc000_0000, 8, 0, 0);
    r.q.publish(0);
  }, /not inside guest RAM/],
  ['an absurd length', (r) => {
    r.q.writeDesc(0, 0x10000, 0xffff_ffff, VRING_DESC_F_WRITE, 0);
    r.q.publish(0);
  }, /not inside guest RAM/],
  ['an address past 2^64 − 4 GiB', (r) => {
    r.q.writeDesc(0, 0xffff_ffff_ffff_f000n, 4096, 0, 0);
    r.q.publish(0);
  }, /not inside guest RAM/],
  ['an avail index 17 ahead of a 16-entry ring', (r) => r.q.setAvailIdx(17), /ahead/],
  ['readable after writable', (r) => {
    r.q.writeDesc(0, 0x10000, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    r.q.writeDesc(1, 0x10100, 8, 0, 0);
    r.q.publish(0);
  }, /readable after a device-writable/],
  ['an indirect table pointing to another', (r) => {
    r.q.writeDesc(0, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
    r.q.writeDesc(0, 0x30000, 16, VRING_DESC_F_INDIRECT, 0, 0x20000);
    r.q.publish(0);
  }, /another indirect/],
  ['an indirect table with a loop', (r) => {
    r.q.writeDesc(0, 0x20000, 32, VRING_DESC_F_INDIRECT, 0);
    r.q.writeDesc(0, 0x10000, 8, VRING_DESC_F_NEXT, 1, 0x20000);
    r.q.writeDesc(1, 0x10000, 8, VRING_DESC_F_NEXT, 0, 0x20000);
    r.q.publish(0);
  }, /loop/],
  ['an indirect length not a multiple of 16', (r) => {
    r.q.writeDesc(0, 0x20000, 24, VRING_DESC_F_INDIRECT, 0);
    r.q.publish(0);
  }, /multiple of 16/],
  ['an indirect table outside RAM', (r) => {
    r.q.writeDesc(0, HIGH_GPA + REGION_SIZE, 64, VRING_DESC_F_INDIRECT, 0);
    r.q.publish(0);
  }, /indirect table .* not inside guest RAM/],
  ['indirect with NEXT', (r) => {
    r.q.writeDesc(0, 0x20000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    r.q.publish(0);
  }, /also has NEXT/],
];

for (const [name, act, pattern] of hostile) {
  test.serial(`${name} breaks only its queue`, async (t) => {
    const r = await rig();
    act(r);
    await expectBroken(t, r, pattern);
    // Broken stays broken: more buffers are not taken until the front end restarts the ring.
    r.q.submit(new Uint8Array([1]), 1);
    r.q.kick.signal();
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.is(r.q.usedIdx, 0);
    await r.close();
  });
}

test.serial('indirect descriptors are refused when INDIRECT_DESC was not negotiated', async (t) => {
  const r = await rig(ALL_FEATURES & ~Feature.RING_INDIRECT_DESC);
  r.q.writeDesc(0, 0x20000, 16, VRING_DESC_F_INDIRECT, 0);
  r.q.publish(0);
  await expectBroken(t, r, /INDIRECT_DESC was not negotiated/);
  await r.close();
});

test.serial('a broken queue works again after GET_VRING_BASE and a restart', async (t) => {
  const r = await rig();
  r.q.publish(99);
  await expectBroken(t, r, /past the ring/);
  const base = M.decodeVringState(Request.GET_VRING_BASE, await r.front.ask(Request.GET_VRING_BASE, M.encodeVringState({ index: 0, num: 0 })));
  t.is(base.num, 0, 'the bad chain was never taken');
  // The driver (after its reset) starts over at 0 with a fresh ring.
  r.q.setAvailIdx(0);
  r.q.submit(new Uint8Array([5, 6]), 2);
  await r.front.acked(Request.SET_VRING_BASE, M.encodeVringState({ index: 0, num: 0 }));
  await r.front.acked(Request.SET_VRING_KICK, M.encodeU64(0n), [r.q.kick]);
  await r.q.waitUsed(1);
  t.deepEqual(r.q.usedElement(0).len, 2);
  await r.close();
});

test.serial('good chains: split requests, indirect tables, buffers in the region above 4 GiB', async (t) => {
  const r = await rig();
  const responses = [
    r.q.submit(new Uint8Array([1, 2, 3, 4, 5, 6]), 6, { pieces: 3 }),
    r.q.submit(new Uint8Array([9, 8, 7]), 3, { indirect: true }),
  ];
  // A chain whose buffers sit in the high region (gpa 4 GiB and up).
  r.ram.at(HIGH_GPA + 0x100, 4).set([4, 3, 2, 1]);
  r.q.writeDesc(5, HIGH_GPA + 0x100, 4, VRING_DESC_F_NEXT, 6);
  r.q.writeDesc(6, HIGH_GPA + 0x200, 4, VRING_DESC_F_WRITE, 0);
  r.q.publish(5);
  r.q.kick.signal();
  await r.q.waitUsed(3);
  t.deepEqual([...r.ram.at(responses[0]!, 6)], [1, 2, 3, 4, 5, 6]);
  t.deepEqual([...r.ram.at(responses[1]!, 3)], [9, 8, 7]);
  t.deepEqual([...r.ram.at(HIGH_GPA + 0x200, 4)], [4, 3, 2, 1]);
  t.is(r.warnings.length, 0);
  await r.close();
});

test.serial('EVENT_IDX: avail_event follows the ring, and the call fd fires only when used_event is passed', async (t) => {
  const r = await rig();
  r.q.setUsedEvent(2); // interrupt when used passes index 2, i.e. at the 3rd completion
  for (let i = 0; i < 2; i++) r.q.submit(new Uint8Array([i]), 1);
  r.q.kick.signal();
  await r.q.waitUsed(2);
  t.is(r.q.availEvent, 2, 'the device asks to be kicked for the next buffer');
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.is(r.q.call.read(), null, 'no interrupt before used_event');
  r.q.submit(new Uint8Array([3]), 1);
  r.q.kick.signal();
  await r.q.waitUsed(3);
  t.is(await r.q.call.wait(), 1n, 'an interrupt once used passes used_event');
  await r.close();
});

test.serial('without EVENT_IDX every batch interrupts', async (t) => {
  const r = await rig(ALL_FEATURES & ~Feature.RING_EVENT_IDX);
  r.q.submit(new Uint8Array([1]), 1);
  r.q.kick.signal();
  await r.q.waitUsed(1);
  t.is(await r.q.call.wait(), 1n);
  await r.close();
});

test.serial('100,000 chains through a 16-entry ring wrap the 16-bit indexes and leak nothing', async (t) => {
  const before = openFdCount();
  const r = await rig();
  const started = performance.now();
  let done = 0;
  while (done < 100_000) {
    for (let i = 0; i < 16; i++) r.q.submit(new Uint8Array([i]), 1);
    r.q.kick.signal();
    done += 16;
    await r.q.waitUsed(done);
  }
  const ms = performance.now() - started;
  t.is(r.device.chains, done);
  t.is(r.warnings.length, 0);
  t.log(`${done} chains in ${ms.toFixed(0)} ms (${((ms * 1000) / done).toFixed(1)} µs each, kick to used, batches of 16)`);
  await r.close();
  t.is(openFdCount(), before);
});
