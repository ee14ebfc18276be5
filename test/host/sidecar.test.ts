// The sidecar through its real server and SidecarClient, with a framebuffer source over memfd
// guest memory (the export is a stand-in: a dup of the guest-RAM memfd, as udmabuf is absent
// on the host): list, subscribe, the buffer's pixels, damage, replace, release, withdraw,
// peer-exported framebuffers, and fds back to baseline after each.
import { FB, nextEvent } from './fixtures/sidecar-events.js';
import test, { type ExecutionContext } from 'ava';
import { PROT_READ, MAP_SHARED } from '../../lib/core/linux.js';
import { mapShared, unmap } from '../../lib/fd/mapping.js';
import { fourcc } from '../../lib/formats/drm.js';
import { FramebufferSource, SidecarClient, SidecarError, SidecarServer } from '../../lib/index.js';
import { encodeFrame } from '../../qemu-glue/sidecar/framing.js';
import { LogCatcher, mirrorExporter, Ram, RawPeer, tempSocketPath } from './fixtures/sidecar-rig.js';
import { openFdCount, pattern, warmUp } from './fixtures/support.js';

test.before(warmUp);

async function rig(t: ExecutionContext, options: ConstructorParameters<typeof FramebufferSource>[1] = {}, serverOptions: Parameters<typeof SidecarServer.listen>[1] = {}) {
  const ram = new Ram();
  const { exportSurface, live } = mirrorExporter();
  const source = new FramebufferSource(ram.memory, { exportSurface, framebuffers: [{ name: 'ramfb', framebuffer: FB }], ...options });
  const logs = new LogCatcher();
  const path = tempSocketPath(t);
  const server = await SidecarServer.listen(path, { sources: [source], log: logs.log, exportFramebuffer: (fb) => source.exportFor(fb), ...serverOptions });
  return { ram, source, server, path, logs, live };
}

test.serial('list, subscribe (the buffer maps to the guest pixels), damage, replace, release, withdraw; fds back to baseline', async (t) => {
  const before = openFdCount();
  const { ram, source, server, path, logs, live } = await rig(t);
  const picture = pattern(7, FB.stride * FB.height);
  ram.bytes.set(picture, FB.gpa);
  {
    await using client = await SidecarClient.connect(path, { clientName: 'test' });
    t.is(client.version, 1);
    t.true(client.limits.maxLiveBuffers > 0);
    const surfaces = await client.list();
    t.deepEqual(surfaces, [{ surface: 1, name: 'ramfb', source: 'framebuffer', width: 64, height: 32, fourcc: fourcc('XR24'), modifier: 0n }]);

    await using subscription = client.subscribe(1);
    const first = await nextEvent(subscription);
    if (first.type !== 'surface') throw new Error(`first event ${first.type}`);
    const buffer = first.buffer;
    t.like(buffer, { surface: 1, width: 64, height: 32, fourcc: fourcc('XR24'), modifier: 0n });
    t.deepEqual(buffer.planes, [{ offset: FB.gpa, stride: 256 }]);
    // What a compositor would import: the guest's pixels, no copy.
    const view = mapShared(buffer.dmabuf.fd, FB.gpa + picture.length, PROT_READ, MAP_SHARED);
    t.deepEqual(view.subarray(FB.gpa), picture);
    ram.bytes[FB.gpa] = 0x5a; // the guest draws
    t.is(view[FB.gpa], 0x5a);
    unmap(view);

    source.damage('fb-0', [{ x: 0, y: 0, width: 8, height: 1 }]);
    t.deepEqual(await nextEvent(subscription), { type: 'damage', buffer: buffer.id, rects: [{ x: 0, y: 0, width: 8, height: 1 }] });

    // A new mode: a new buffer replaces the old one, which the peer then releases.
    source.describe('fb-0', 'ramfb', { ...FB, width: 32, stride: 128 });
    const replaced = await nextEvent(subscription);
    if (replaced.type !== 'replaced') throw new Error(`expected replaced, got ${replaced.type}`);
    t.is(replaced.buffer.width, 32);
    t.not(replaced.buffer.id, buffer.id);
    buffer.close();
    await logs.waitFor(/has a new buffer/);
    t.deepEqual((await client.list()).map((s) => s.width), [32]);

    source.remove('fb-0');
    t.deepEqual(await nextEvent(subscription), { type: 'withdrawn', reason: 'gone' });
    t.deepEqual(await subscription.next(), { value: undefined, done: true });
    replaced.buffer.close();
    t.deepEqual(await client.list(), []);
  }
  await server.close();
  t.is(live(), 0, 'every export the source made is closed');
  t.true(logs.has(/attached to described framebuffers/));
  t.true(logs.has(/peer 1 \(pid \d+, uid \d+, test\) speaks version 1/));
  ram[Symbol.dispose]();
  t.is(openFdCount(), before);
});

test.serial('subscribe to a surface that does not exist, twice to one, and before anything: typed errors; the connection goes on', async (t) => {
  const { server, path, ram } = await rig(t);
  await using client = await SidecarClient.connect(path);
  const missing = client.subscribe(99);
  const error = await t.throwsAsync(missing.next(), { instanceOf: SidecarError });
  t.is(error?.code, 'ERR_SIDECAR_NO_SURFACE');
  t.is(error?.field, 'surface');
  const one = client.subscribe(1);
  const first = await nextEvent(one);
  if (first.type === 'surface') first.buffer.close();
  const again = client.subscribe(1);
  t.is((await t.throwsAsync(again.next(), { instanceOf: SidecarError }))?.code, 'ERR_SIDECAR_SUBSCRIPTION');
  // close() unsubscribes and ends the iteration; subscribing again then works.
  one.close();
  for await (const event of one) t.fail(`the subscription ended, yet ${event.type} came`);
  const three = client.subscribe(1);
  const buffer = await nextEvent(three);
  t.is(buffer.type, 'surface');
  if (buffer.type === 'surface') buffer.buffer.close();
  // What breaking out of for-await calls: it unsubscribes too.
  await three.return();
  t.true(three.ended);
  t.is((await client.list()).length, 1);
  await server.close();
  ram[Symbol.dispose]();
});

test.serial('export-framebuffer: a peer describes a framebuffer, every peer sees it, it is withdrawn when its exporter leaves; a bad one is refused naming why', async (t) => {
  const before = openFdCount();
  const { server, path, ram, source, live } = await rig(t, { framebuffers: [] });
  {
    await using viewer = await SidecarClient.connect(path);
    const exporter = await SidecarClient.connect(path);
    const id = await exporter.exportFramebuffer({ gpa: 0x20000, width: 16, height: 16, stride: 64, format: 'AR24' }, { name: 'cursor' });
    t.deepEqual((await viewer.list()).map((s) => [s.surface, s.name, s.source]), [[id, 'cursor', 'peer']]);
    const subscription = viewer.subscribe(id);
    const first = await nextEvent(subscription);
    t.is(first.type, 'surface');
    if (first.type === 'surface') first.buffer.close();

    const outside = await t.throwsAsync(exporter.exportFramebuffer({ gpa: 1n << 40n, width: 16, height: 16, stride: 64, format: 'XR24' }), { instanceOf: SidecarError });
    t.is(outside?.code, 'ERR_SIDECAR_EXPORT_FAILED');
    t.is(outside?.causeCode, 'ERR_NOT_GUEST_RAM');
    const format = await t.throwsAsync(exporter.exportFramebuffer({ gpa: 0, width: 16, height: 16, stride: 64, format: 'NOPE' }), { instanceOf: SidecarError });
    t.is(format?.code, 'ERR_SIDECAR_EXPORT_FAILED');
    t.regex(format?.message ?? '', /NOPE/);

    await exporter[Symbol.asyncDispose]();
    t.deepEqual(await nextEvent(subscription), { type: 'withdrawn', reason: 'peer-left' });
    t.deepEqual(await viewer.list(), []);
  }
  await server.close();
  t.is(live(), 0);
  void source;
  ram[Symbol.dispose]();
  t.is(openFdCount(), before);
});

test.serial('without guest memory export-framebuffer is refused; bad fields are named', async (t) => {
  const path = tempSocketPath(t);
  await using server = await SidecarServer.listen(path);
  await using client = await SidecarClient.connect(path);
  const error = await t.throwsAsync(client.exportFramebuffer({ gpa: 0, width: 1, height: 1, stride: 4, format: 'XR24' }), { instanceOf: SidecarError });
  t.is(error?.code, 'ERR_SIDECAR_EXPORT_UNAVAILABLE');
  t.regex(error?.message ?? '', /--qmp/);
  const bad = await t.throwsAsync(client.exportFramebuffer({ gpa: 0, width: 0, height: 1, stride: 4, format: 'XR24' }), { instanceOf: SidecarError });
  t.is(bad?.code, 'ERR_SIDECAR_BAD_MESSAGE');
  t.is(bad?.field, 'framebuffer.width');
  t.deepEqual(await client.list(), []);
  void server;
});

test.serial('wait-surface: answered at once for a served surface, else when one of that name or id appears; aborts, a reused id and the cap are errors', async (t) => {
  const before = openFdCount();
  const { server, path, ram, source, live } = await rig(t, { framebuffers: [] }, { maxWaitsPerPeer: 2 });
  {
    await using client = await SidecarClient.connect(path);
    const byName = client.waitForSurface({ name: 'ramfb' });
    const anyOne = client.waitForSurface();
    // Requests after the waits are answered first: a wait does not hold up the connection.
    t.deepEqual(await client.list(), []);
    t.is((await t.throwsAsync(client.waitForSurface({ name: 'third' }), { instanceOf: SidecarError }))?.code, 'ERR_SIDECAR_WAIT_CAP');
    source.describe('fb-0', 'ramfb', FB);
    t.like(await byName, { surface: 1, name: 'ramfb', width: FB.width });
    t.like(await anyOne, { surface: 1, name: 'ramfb' });
    // Served already: at once, by id or name; a name that is not served waits.
    t.like(await client.waitForSurface({ surface: 1 }), { name: 'ramfb' });
    const cursor = client.waitForSurface({ name: 'cursor' });
    const exported = await client.exportFramebuffer({ gpa: 0x20000, width: 16, height: 16, stride: 64, format: 'AR24' }, { name: 'cursor' });
    t.like(await cursor, { surface: exported, source: 'peer' });
    // An abort ends the call at once; the sidecar answers it later, to no one.
    const aborted = new AbortController();
    const waiting = client.waitForSurface({ name: 'never', signal: aborted.signal });
    aborted.abort();
    t.is((await t.throwsAsync(waiting))?.name, 'AbortError');
    t.is((await client.list()).length, 2);

    using raw = await RawPeer.connect(path);
    await raw.hello();
    await raw.write(encodeFrame({ type: 'wait-surface', id: 7, name: 'later' }));
    await raw.write(encodeFrame({ type: 'wait-surface', id: 7, name: 'later' }));
    t.like(await raw.next(), { type: 'error', id: 7, code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'id' });
    await raw.write(encodeFrame({ type: 'wait-surface', id: 8, name: 5 }));
    t.like(await raw.next(), { type: 'error', id: 8, code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'name' });
    source.describe('fb-1', 'later', FB);
    t.like(await raw.next(), { type: 'surfaces', id: 7, surfaces: [{ name: 'later' }] });
  }
  await server.close();
  t.is(live(), 0);
  ram[Symbol.dispose]();
  t.is(openFdCount(), before);
});
