// VhostUserGpuBackend, the public API, driven over a real socket path by the scripted front end
// (what QEMU does on the main socket) with a scripted QEMU display on the GPU socket. There is
// no udmabuf on the host, so the surface exporter is injected: a memfd stands in for each
// dma-buf. Covers the events, the connection policy (one front end at a time, the next after a
// disconnect, a racing reconnect), fromFd, the socket path's set-up, and that close() leaves no fd.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../lib/core/native.js';
import { Memfd } from '../../lib/kernel/memfd.js';
import { UnixListener } from '../../lib/ipc/unix-listener.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import type { ExportedSurface, VirtioGpuResource } from '../../lib/guest/surface.js';
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import { SurfaceBridge } from '../../qemu-glue/vhost-user-gpu/surface-exporter.js';
import { InvalidArgumentError } from '../../lib/core/errors.js';
import { VhostUserGpuBackend, VhostUserGpuBackendError, type VhostUserGpuBackendEvents, type VhostUserGpuBackendOptions } from '../../lib/index.js';
import { Command as C, Response as R } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { GpuRequest } from '../../qemu-glue/vhost-user-gpu/gpu-socket.js';
import { cmd, create2d, XRGB } from './fixtures/gpu-rig.js';
import { DriverQueue, FrontEnd, GuestRam } from './fixtures/vhost-front-end.js';
import { fakeExporter, ScriptedQemu } from './fixtures/scripted-qemu.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

const flush = (id: number, w: number, h: number, x = 0, y = 0): Uint8Array => cmd(C.RESOURCE_FLUSH, [x, y, w, h, id, 0]);

/** The next `name` event. */
function next<K extends keyof VhostUserGpuBackendEvents>(gpu: VhostUserGpuBackend, name: K, timeoutMs = 5000): Promise<VhostUserGpuBackendEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' event within ${timeoutMs} ms`)), timeoutMs);
    gpu.once(name, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

function tempSocketPath(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-user-gpu-api-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'gpu.sock');
}

async function listen(path: string, options: VhostUserGpuBackendOptions = {}): Promise<{ gpu: VhostUserGpuBackend; surfaces: ExportedSurface[] }> {
  const { exportSurface, surfaces } = fakeExporter();
  return { gpu: await VhostUserGpuBackend.listen(path, { exportSurface, ...options }), surfaces };
}

test.serial('listen(): serves the scripted QEMU, emits scanout and flush, scanout() follows; a disconnect resets, a reconnect to the same path is served afresh; close() leaves no fd and no socket file', async (t) => {
  const before = openFdCount();
  const path = tempSocketPath(t);
  const { gpu, surfaces } = await listen(path);
  t.is(gpu.socketPath, path);
  const warnings: string[] = [];
  gpu.on('warning', (e) => warnings.push(e.message));

  const connected = next(gpu, 'connect');
  const qemu = await ScriptedQemu.connect(path);
  const [{ connection, peer }] = await connected;
  t.is(connection, 1);
  t.is(peer.pid, process.pid, 'SO_PEERCRED names the front end');
  await qemu.start();
  t.is(gpu.scanout(0), null);

  const scanout = next(gpu, 'scanout');
  await qemu.show(1);
  const [shown] = await scanout;
  t.is(shown.scanoutId, 0);
  t.is(shown.resourceId, 1);
  t.is(shown.surface, surfaces[0]!, 'the surface is what the exporter made');
  t.is(shown.surface?.width, 64);
  t.is(gpu.scanout(0), surfaces[0]!);
  t.throws(() => gpu.scanout(1), { instanceOf: InvalidArgumentError, code: 'ERR_OUT_OF_RANGE' });

  const flushed = next(gpu, 'flush');
  t.is(await qemu.type(flush(1, 32, 16, 8, 4)), R.OK_NODATA);
  t.deepEqual((await flushed)[0], { scanoutId: 0, rect: { x: 8, y: 4, width: 32, height: 16 } });
  t.is(qemu.display.of(GpuRequest.DMABUF_UPDATE).length, 1, 'QEMU was told too');
  t.like(gpu.stats, { flushes: 1, exports: 1, bytesCopied: 0 }, 'the current device\'s counters');

  // QEMU goes away: the surface is closed, announced as gone, the device reset.
  const gone = next(gpu, 'scanout');
  const disconnected = next(gpu, 'disconnect');
  await qemu.quit();
  t.deepEqual((await gone)[0], { scanoutId: 0, surface: null, resourceId: 0 });
  const [bye] = await disconnected;
  t.is(bye.connection, 1);
  t.true(bye.requests > 10);
  t.like(bye.stats, { flushes: 1, exports: 1 }, 'the disconnect says what the connection\'s device did');
  t.is(gpu.stats, null, 'no front end, no counters');
  t.true(surfaces[0]!.dmabuf.closed);
  t.is(gpu.scanout(0), null);
  t.is(gpu.peer, null);

  // The same path serves the next QEMU, with a clean device (resource 1 can be made again).
  const again = next(gpu, 'connect');
  const qemu2 = await ScriptedQemu.connect(path);
  t.is((await again)[0].connection, 2);
  await qemu2.start();
  const reshown = next(gpu, 'scanout');
  await qemu2.show(1);
  t.is((await reshown)[0].surface, surfaces[1]!);

  // close() with QEMU still connected: it is disconnected, everything is released.
  const events: string[] = [];
  gpu.on('scanout', (e) => events.push(`scanout ${e.surface === null ? 'null' : 'surface'}`));
  gpu.on('disconnect', () => events.push('disconnect'));
  gpu.on('close', () => events.push('close'));
  await gpu.close();
  t.deepEqual(events, ['scanout null', 'disconnect', 'close']);
  t.true(gpu.closed);
  t.false(existsSync(path), 'the socket file is removed');
  await gpu.close(); // idempotent
  await qemu2.quit();
  t.deepEqual(warnings, []);
  t.is(openFdCount(), before, 'no fd left behind');
});

test.serial('a second QEMU while one is served is refused after the grace period, with a rejected event; the first is undisturbed', async (t) => {
  const path = tempSocketPath(t);
  const { gpu } = await listen(path, { busyGraceMs: 50 });
  const first = await ScriptedQemu.connect(path);
  await first.start();
  const rejected = next(gpu, 'rejected');
  const intruder = await UnixSocket.connect(path);
  const [{ peer, error }] = await rejected;
  t.is(peer.pid, process.pid);
  t.true(error instanceof VhostUserGpuBackendError);
  t.is(error.code, 'ERR_VHOST_USER_BUSY');
  t.regex(error.message, /its own socket path/);
  const { data } = await intruder.receive({ maxBytes: 16 });
  t.is(data.length, 0, 'the second connection was closed');
  intruder.close();
  t.is(await first.type(create2d(7, 16, 16)), R.OK_NODATA, 'the first QEMU is still served');
  await first.quit();
  await gpu.close();
});

test.serial('a reconnect that races the end of the old connection is served, not refused', async (t) => {
  const path = tempSocketPath(t);
  const { gpu } = await listen(path, { busyGraceMs: 2000 });
  const rejected: unknown[] = [];
  gpu.on('rejected', (e) => rejected.push(e));
  const old = await ScriptedQemu.connect(path);
  await old.start();
  const connected = next(gpu, 'connect');
  const fresh = await ScriptedQemu.connect(path); // connects before the old one has gone
  await sleep(20);
  await old.quit();
  t.is((await connected)[0].connection, 2);
  await fresh.start();
  t.is(await fresh.type(create2d(1, 16, 16)), R.OK_NODATA);
  t.deepEqual(rejected, []);
  await fresh.quit();
  await gpu.close();
});

test.serial('fromFd(): serves an inherited connected socket and closes itself when it ends; asyncDispose', async (t) => {
  const before = openFdCount();
  const [ours, theirs] = UnixSocket.pair();
  const fd = native.dup(theirs.fd);
  theirs.close();
  const { exportSurface } = fakeExporter();
  const ram = new GuestRam();
  const queues = [new DriverQueue(ram, 0, 64, 0x1000), new DriverQueue(ram, 1, 16, 0x4000)];
  {
    await using gpu = await VhostUserGpuBackend.fromFd(fd, { exportSurface, mode: 'copy-on-transfer' });
    t.is(gpu.socketPath, null);
    const front = new FrontEnd(ours);
    await front.start(ram, queues);
    t.is(gpu.peer?.pid, process.pid);
    const closed = next(gpu, 'close');
    ours.close();
    await closed;
    await gpu.done;
    t.true(gpu.closed);
  }
  for (const q of queues) q.close();
  ram[Symbol.dispose]();
  t.is(openFdCount(), before);
});

test.serial('fromFd() refuses what is not a connected socket, naming the fd and what to pass', async (t) => {
  const path = tempSocketPath(t);
  const listener = UnixListener.listen(path);
  const listening = await t.throwsAsync(VhostUserGpuBackend.fromFd(listener.fd), { instanceOf: VhostUserGpuBackendError });
  t.is(listening?.code, 'ERR_VHOST_USER_BAD_FD');
  t.regex(listening?.message ?? '', /listening socket.*--socket-path/);
  listener.close();
  const memfd = Memfd.create('not a socket', 0);
  await t.throwsAsync(VhostUserGpuBackend.fromFd(memfd.fd), { code: 'ERR_VHOST_USER_BAD_FD', message: /is not a socket/ });
  memfd.close();
  await t.throwsAsync(VhostUserGpuBackend.fromFd(9999), { code: 'ERR_VHOST_USER_BAD_FD', message: /fd 9999 is not open/ });
});

test.serial('listen() replaces a stale socket file, refuses a live server and a non-socket, and checks its options', async (t) => {
  const path = tempSocketPath(t);
  // A back end that died: its socket file is left, nobody accepts.
  native.close(native.unixListen(path, 1));
  t.true(existsSync(path));
  const { gpu } = await listen(path);
  t.true(existsSync(path));
  // Now a live server is there.
  await t.throwsAsync(VhostUserGpuBackend.listen(path), { code: 'ERR_VHOST_USER_SOCKET_IN_USE', message: /another server is listening/ });
  await gpu.close();
  const file = `${path}.txt`;
  writeFileSync(file, 'keep me');
  await t.throwsAsync(VhostUserGpuBackend.listen(file), { code: 'ERR_VHOST_USER_SOCKET_PATH' });
  t.true(existsSync(file), 'a file that is not a socket is never removed');
  await t.throwsAsync(VhostUserGpuBackend.listen(path, { mode: 'fast' as never }), { instanceOf: InvalidArgumentError, message: /zero-copy/ });
  await t.throwsAsync(VhostUserGpuBackend.listen(path, { device: { scanouts: 99 } }), { message: /scanouts must be/ });
  t.false(existsSync(path), 'a refused option leaves no socket file');
});

test.serial('an AbortSignal closes the back end', async (t) => {
  const path = tempSocketPath(t);
  const controller = new AbortController();
  const { gpu } = await listen(path, { signal: controller.signal });
  controller.abort();
  await gpu.done;
  t.true(gpu.closed);
  t.false(existsSync(path));
  await t.throwsAsync(VhostUserGpuBackend.listen(path, { signal: controller.signal }), { code: 'ABORT_ERR' });
});

test('the back end\'s buffers carry their surface\'s release notice (wait-for-free needs it through the public API too)', async (t) => {
  const { exportSurface, surfaces } = fakeExporter();
  let released!: () => void;
  const notice = new Promise<void>((resolve) => (released = resolve));
  const asked: AbortSignal[] = [];
  const bridge = new SurfaceBridge((memory, resource) => {
    const surface = exportSurface(memory, resource);
    Object.defineProperty(surface.dmabuf, 'whenReleased', { value: ({ signal }: { signal: AbortSignal }) => (asked.push(signal), notice) });
    return surface;
  });
  const buffer = bridge.exporter({} as GuestMemory, { resourceId: 7, format: XRGB, width: 16, height: 16, stride: 64, entries: [] } as unknown as VirtioGpuResource);
  t.is(bridge.surfaceOf(buffer), surfaces[0]);
  t.truthy(buffer.whenReleased, 'a buffer without whenReleased makes the device answer DETACH/UNREF at once');
  const signal = new AbortController().signal;
  let done = false;
  const waiting = buffer.whenReleased!(signal).then(() => (done = true));
  await sleep(10);
  t.false(done);
  released();
  await waiting;
  t.deepEqual(asked, [signal]);
  buffer[Symbol.dispose]();
});
