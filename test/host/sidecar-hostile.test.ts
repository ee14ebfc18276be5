// Peers that break the sidecar protocol, on purpose or by bug: garbage, bad fields, oversized
// and unfinished frames, fds nobody asked for, a disconnect mid-request, holding buffers past
// the cap, and a peer that stops reading. Each gets an error reply or is dropped; a well-behaved
// peer connected throughout keeps getting every event, and the fd count returns to baseline.
import { FB, nextEvent } from './fixtures/sidecar-events.js';
import test, { type ExecutionContext } from 'ava';
import { Memfd } from '../../lib/kernel/memfd.js';
import { FramebufferSource, SidecarClient, SidecarError, SidecarServer, type SidecarServerOptions } from '../../lib/index.js';
import { encodeFrame } from '../../qemu-glue/sidecar/framing.js';
import { LogCatcher, mirrorExporter, Ram, RawPeer, tempSocketPath } from './fixtures/sidecar-rig.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

/** A sidecar with one framebuffer, and a well-behaved peer subscribed to it. */
async function withBystander(t: ExecutionContext, options: SidecarServerOptions, body: (ctx: { path: string; source: FramebufferSource; logs: LogCatcher; server: SidecarServer; checkBystander: () => Promise<void> }) => Promise<void>): Promise<void> {
  const before = openFdCount();
  const ram = new Ram();
  const { exportSurface, live } = mirrorExporter();
  const source = new FramebufferSource(ram.memory, { exportSurface, framebuffers: [{ name: 'ramfb', framebuffer: FB }] });
  const logs = new LogCatcher();
  const path = tempSocketPath(t);
  const server = await SidecarServer.listen(path, { sources: [source], log: logs.log, ...options });
  const bystander = await SidecarClient.connect(path, { clientName: 'bystander' });
  const subscription = bystander.subscribe(1);
  const first = await nextEvent(subscription);
  if (first.type === 'surface') first.buffer.close();
  let damages = 0;
  /** The bystander still gets events and answers. */
  const checkBystander = async (): Promise<void> => {
    const rect = { x: 0, y: damages++, width: 1, height: 1 };
    source.damage('fb-0', [rect]);
    let event = await nextEvent(subscription);
    // Buffers the test made meanwhile come first: show each and let the previous one go.
    while (event.type === 'replaced') {
      event.buffer.close();
      event = await nextEvent(subscription);
    }
    t.is(event.type, 'damage', 'the bystander got its damage event');
    // Unread damage merges on the client (into a bounding box past 64 rectangles): covered is enough.
    if (event.type === 'damage') t.true(event.rects.some((r) => r.x <= rect.x && r.y <= rect.y && r.x + r.width >= rect.x + 1 && r.y + r.height >= rect.y + 1));
    t.is((await bystander.list()).length, 1);
  };
  try {
    await body({ path, source, logs, server, checkBystander });
    await checkBystander();
  } finally {
    subscription.close();
    await bystander[Symbol.asyncDispose]();
    await server.close();
    ram[Symbol.dispose]();
  }
  t.is(live(), 0, 'every export closed');
  t.is(openFdCount(), before, 'no fd left behind');
}

test.serial('garbage, a non-object, an unknown type, a bad field, a request before hello: an error reply each (naming the field), and the peer goes on', async (t) => {
  await withBystander(t, {}, async ({ path, checkBystander }) => {
    using peer = await RawPeer.connect(path);
    // Before hello.
    await peer.request({ type: 'list' });
    t.like(await peer.next(), { type: 'error', id: 1, code: 'ERR_SIDECAR_HELLO_FIRST' });
    await peer.hello();
    await peer.writeNotJson();
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE' });
    await peer.write(encodeFrame([1, 2, 3]));
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'message' });
    await peer.request({ type: 'reboot' });
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_UNKNOWN_TYPE', field: 'type' });
    await peer.request({ type: 'subscribe', surface: 'one' });
    const bad = await peer.next();
    t.like(bad, { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'surface' });
    t.regex(String(bad?.message), /"surface" must be an integer/);
    await peer.request({ type: 'export-framebuffer', framebuffer: { gpa: '0x1g', width: 1, height: 1, stride: 4, format: 'XR24' } });
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'framebuffer.gpa' });
    await peer.request({ type: 'release', buffer: 12345 });
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_NO_BUFFER' });
    await peer.request({ type: 'hello', versions: [1] });
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_HELLO_FIRST' });
    await checkBystander();
    await peer.request({ type: 'list' });
    t.like(await peer.next(), { type: 'surfaces' });
  });
});

test.serial('no common version: refused with ERR_SIDECAR_VERSION', async (t) => {
  await withBystander(t, {}, async ({ path }) => {
    using peer = await RawPeer.connect(path);
    await peer.request({ type: 'hello', versions: [7, 9] });
    t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_VERSION', field: 'versions' });
  });
});

test.serial('fds sent with a request are closed, answered with ERR_SIDECAR_UNEXPECTED_FDS; with more than the kernel lets through too', async (t) => {
  await withBystander(t, {}, async ({ path, checkBystander }) => {
    using peer = await RawPeer.connect(path);
    await peer.hello();
    using memfd = Memfd.create('hostile', 4096);
    const countBefore = openFdCount();
    await peer.request({ type: 'list' }, [memfd.fd, memfd.fd]);
    t.like(await peer.next(), { type: 'error', id: 2, code: 'ERR_SIDECAR_UNEXPECTED_FDS' });
    // A header that claims no fds, with 8 anyway (more than MAX_FDS_PER_FRAME: the kernel truncates).
    await peer.write(encodeFrame({ type: 'list', id: 3 }), Array.from({ length: 8 }, () => memfd.fd));
    t.like(await peer.next(), { type: 'error', id: 3, code: 'ERR_SIDECAR_UNEXPECTED_FDS' });
    t.is(openFdCount(), countBefore, 'the sidecar kept none of them');
    await checkBystander();
  });
});

test.serial('an oversized frame and an unfinished one drop the peer (after an error); too many bad messages too', async (t) => {
  await withBystander(t, { maxFrameBytes: 1024, frameTimeoutMs: 200, maxBadMessages: 3 }, async ({ path, logs, checkBystander }) => {
    {
      using peer = await RawPeer.connect(path);
      const header = new Uint8Array(8);
      new DataView(header.buffer).setUint32(0, 1 << 30, true);
      await peer.write(header);
      t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_FRAMING' });
      t.is(await peer.next(), null, 'then the sidecar hangs up');
      await logs.waitFor(/over the 1024-byte cap/);
    }
    {
      using peer = await RawPeer.connect(path);
      await peer.write(encodeFrame({ type: 'list', id: 1 }).subarray(0, 10)); // and nothing more
      t.like(await peer.next(), { type: 'error', code: 'ERR_SIDECAR_FRAMING' });
      t.is(await peer.next(), null);
      await logs.waitFor(/not finished within 200 ms/);
    }
    {
      using peer = await RawPeer.connect(path);
      for (let i = 0; i < 4; i++) await peer.write(encodeFrame('junk'));
      t.true(await peer.closedBySidecar());
      await logs.waitFor(/more than 3 malformed messages/);
    }
    await checkBystander();
  });
});

test.serial('a peer that disconnects mid-request, or right after subscribing with its buffer unread, leaves nothing behind', async (t) => {
  await withBystander(t, {}, async ({ path, server, checkBystander, logs }) => {
    await RawPeer.disconnectRudely(path);
    await logs.waitFor(/peer 3 .* is gone/);
    for (let i = 0; i < 100 && server.peerCount > 1; i++) await sleep(10);
    // Closing with the sidecar's messages unread resets the connection: an ordinary disconnect.
    t.true(logs.has(/peer 3 .* is gone: it disconnected/), logs.lines.join('\n'));
    t.false(logs.has(/socket failed/), logs.lines.join('\n'));
    t.is(server.peerCount, 1);
    await checkBystander();
  });
});

test.serial('holding buffers past the cap: the next buffer is not sent, the subscription ends with ERR_SIDECAR_BUFFER_CAP; releasing makes room; others are unaffected', async (t) => {
  await withBystander(t, { maxLiveBuffers: 2 }, async ({ path, source, checkBystander }) => {
    await using hoarder = await SidecarClient.connect(path, { clientName: 'hoarder' });
    t.is(hoarder.limits.maxLiveBuffers, 2);
    const subscription = hoarder.subscribe(1);
    const held = [];
    const first = await nextEvent(subscription);
    if (first.type === 'surface') held.push(first.buffer);
    source.describe('fb-0', 'ramfb', FB); // a second buffer: at the cap
    const second = await nextEvent(subscription);
    if (second.type === 'replaced') held.push(second.buffer);
    t.is(held.length, 2);
    source.describe('fb-0', 'ramfb', FB); // a third: over it
    const error = await t.throwsAsync(nextEvent(subscription), { instanceOf: SidecarError });
    t.is(error?.code, 'ERR_SIDECAR_BUFFER_CAP');
    t.regex(error?.message ?? '', /release/);
    // Subscribing again is refused while it still holds two...
    const again = hoarder.subscribe(1);
    t.is((await t.throwsAsync(nextEvent(again), { instanceOf: SidecarError }))?.code, 'ERR_SIDECAR_BUFFER_CAP');
    // ...and works once it lets go.
    for (const buffer of held) buffer.close();
    await hoarder.list(); // the releases were sent before this, and are answered in order
    const third = hoarder.subscribe(1);
    const event = await nextEvent(third);
    t.is(event.type, 'surface');
    if (event.type === 'surface') event.buffer.close();
    third.close();
    // The bystander got every replaced buffer and released them as it went.
    await checkBystander();
  });
});

test.serial('a pinned-bytes cap: a buffer bigger than it is never sent', async (t) => {
  const ram = new Ram();
  const { exportSurface } = mirrorExporter();
  const source = new FramebufferSource(ram.memory, { exportSurface, framebuffers: [{ name: 'ramfb', framebuffer: FB }] });
  const path = tempSocketPath(t);
  await using server = await SidecarServer.listen(path, { sources: [source], maxPinnedBytes: 1000 });
  await using client = await SidecarClient.connect(path);
  t.is(client.limits.maxPinnedBytes, 1000);
  t.is((await t.throwsAsync(nextEvent(client.subscribe(1)), { instanceOf: SidecarError }))?.code, 'ERR_SIDECAR_PINNED_CAP');
  void server;
  ram[Symbol.dispose]();
});

test.serial('a peer that stops reading is dropped once its queue is full; the bystander gets every event meanwhile', async (t) => {
  await withBystander(t, { maxQueuedFrames: 1000, maxQueuedBytes: 1 << 20, sendTimeoutMs: 60_000 }, async ({ path, source, logs, server }) => {
    const stuck = await RawPeer.connect(path);
    await stuck.hello();
    await stuck.request({ type: 'subscribe', surface: 1 });
    // It never reads again. Its socket buffer fills, then its queue, then it is dropped.
    const bystander = await SidecarClient.connect(path);
    const subscription = bystander.subscribe(1);
    const first = await nextEvent(subscription);
    if (first.type === 'surface') first.buffer.close();
    // Bursts well under the queue cap (a reading peer keeps up), many more in all than the
    // stuck peer's socket buffer and queue hold.
    const rounds = 40;
    let received = 0;
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < 100; i++) source.damage('fb-0', [{ x: i, y: round, width: 1, height: 1 }]);
      // Drain what came (merged damage counts its rectangles).
      while (received < (round + 1) * 100) {
        const event = await nextEvent(subscription);
        if (event.type === 'damage') received += event.rects.length;
      }
      await sleep(1);
    }
    t.is(received, rounds * 100);
    await logs.waitFor(/peer \d+ .* is gone: it stopped reading/);
    t.is(server.peerCount, 2, 'the bystanders remain');
    subscription.close();
    await bystander[Symbol.asyncDispose]();
    t.true(await stuck.closedBySidecar());
    stuck[Symbol.dispose]();
  });
});

test.serial('a peer of a uid the check refuses gets ERR_SIDECAR_PEER_REFUSED at connect', async (t) => {
  const path = tempSocketPath(t);
  const logs = new LogCatcher();
  await using server = await SidecarServer.listen(path, { authorize: () => false, log: logs.log });
  const error = await t.throwsAsync(SidecarClient.connect(path), { instanceOf: SidecarError });
  t.is(error?.code, 'ERR_SIDECAR_PEER_REFUSED');
  t.regex(error?.message ?? '', /--allow-uid 0/);
  t.true(logs.has(/refused pid \d+ \(uid 0\)/));
  void server;
});
