// The sidecar over the vhost-user-gpu back end (VhostUserGpuSource), driven by the scripted
// QEMU front end and guest commands: a scanout becomes a surface, RESOURCE_FLUSH damage,
// another resource on the scanout a replaced buffer, disabling it (and QEMU leaving) a
// withdrawn surface. The export is injected (no udmabuf on the host): a memfd per resource.
import { nextEvent } from './fixtures/sidecar-events.js';
import test from 'ava';
import { native } from '../../lib/core/native.js';
import { DmaBuf } from '../../lib/kernel/dma-buf.js';
import { Memfd } from '../../lib/kernel/memfd.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { fourcc } from '../../lib/formats/drm.js';
import { SidecarClient, SidecarServer, VhostUserGpuBackend, VhostUserGpuSource, type SurfaceExporter } from '../../lib/index.js';
import { Command as C, Response as R } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { FakeQemuDisplay } from './fixtures/gpu-peer.js';
import { DriverQueue, FrontEnd, GuestRam } from './fixtures/vhost-front-end.js';
import { LogCatcher, tempSocketPath } from './fixtures/sidecar-rig.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

const XRGB = 2; // VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM

const exportSurface: SurfaceExporter = (_memory, resource) => {
  const memfd = Memfd.create(`fake dma-buf ${resource.resourceId}`, 4096);
  const dmabuf = new DmaBuf(native.dup(memfd.fd), 4096n);
  memfd.close();
  return { dmabuf, fourcc: fourcc('XR24'), modifier: 0n, width: resource.width, height: resource.height, planes: [{ offset: 0, stride: resource.stride ?? resource.width * 4 }], [Symbol.dispose]: () => dmabuf.close() };
};

function cmd(type: number, words: (number | bigint)[] = []): Uint8Array {
  const bytes = new Uint8Array(24 + words.reduce<number>((n, w) => n + (typeof w === 'bigint' ? 8 : 4), 0));
  const v = new DataView(bytes.buffer);
  v.setUint32(0, type, true);
  let at = 24;
  for (const w of words) {
    if (typeof w === 'bigint') v.setBigUint64(at, w, true);
    else v.setUint32(at, w >>> 0, true);
    at += typeof w === 'bigint' ? 8 : 4;
  }
  return bytes;
}

class Qemu {
  readonly ram = new GuestRam();
  readonly control = new DriverQueue(this.ram, 0, 64, 0x1000);
  readonly cursor = new DriverQueue(this.ram, 1, 16, 0x4000);
  readonly display = new FakeQemuDisplay();
  readonly front: FrontEnd;
  #sent = 0;
  constructor(socket: UnixSocket) {
    this.front = new FrontEnd(socket);
  }
  async start(): Promise<void> {
    await this.front.start(this.ram, [this.control, this.cursor], { gpuSocket: this.display.theirs });
  }
  async run(request: Uint8Array): Promise<void> {
    const gpa = this.control.submit(request, 24);
    this.control.kick.signal();
    await this.control.waitUsed(++this.#sent);
    const type = new DataView(this.ram.at(gpa, 4).slice().buffer).getUint32(0, true);
    if (type !== R.OK_NODATA) throw new Error(`command refused: 0x${type.toString(16)}`);
  }
  async show(id: number, w: number, h: number, gpa: number): Promise<void> {
    await this.run(cmd(C.RESOURCE_CREATE_2D, [id, XRGB, w, h]));
    await this.run(cmd(C.RESOURCE_ATTACH_BACKING, [id, 1, BigInt(gpa), w * h * 4, 0]));
    await this.run(cmd(C.SET_SCANOUT, [0, 0, w, h, 0, id]));
  }
  async quit(): Promise<void> {
    this.front.socket.close();
    this.display.close();
    await this.display.done;
    this.control.close();
    this.cursor.close();
    this.ram[Symbol.dispose]();
  }
}

test.serial('scanout → surface, flush → damage, another resource → replaced, scanout disabled → withdrawn, QEMU gone → withdrawn; fds back to baseline', async (t) => {
  const before = openFdCount();
  const gpuPath = tempSocketPath(t, 'gpu.sock');
  const path = tempSocketPath(t);
  const logs = new LogCatcher();
  const backend = await VhostUserGpuBackend.listen(gpuPath, { exportSurface });
  const server = await SidecarServer.listen(path, { sources: [new VhostUserGpuSource(backend, { ownsBackend: true })], log: logs.log });
  const client = await SidecarClient.connect(path);
  t.deepEqual(await client.list(), []);

  const qemu = new Qemu(await UnixSocket.connect(gpuPath));
  await qemu.start();
  await qemu.show(1, 64, 48, 0x100000);
  const [listed] = await client.list();
  t.like(listed, { name: 'scanout 0', source: 'vhost-user-gpu', width: 64, height: 48, fourcc: fourcc('XR24') });

  const subscription = client.subscribe(listed!.surface);
  const first = await nextEvent(subscription);
  if (first.type !== 'surface') throw new Error(first.type);
  t.deepEqual(first.buffer.planes, [{ offset: 0, stride: 256 }]);

  await qemu.run(cmd(C.RESOURCE_FLUSH, [4, 5, 6, 7, 1, 0]));
  t.deepEqual(await nextEvent(subscription), { type: 'damage', buffer: first.buffer.id, rects: [{ x: 4, y: 5, width: 6, height: 7 }] });

  // The same resource set again is no new buffer; another resource is.
  await qemu.run(cmd(C.SET_SCANOUT, [0, 0, 64, 48, 0, 1]));
  await qemu.show(2, 32, 32, 0x200000);
  const replaced = await nextEvent(subscription);
  if (replaced.type !== 'replaced') throw new Error(replaced.type);
  t.is(replaced.buffer.width, 32);
  first.buffer.close();

  await qemu.run(cmd(C.SET_SCANOUT, [0, 0, 0, 0, 0, 0])); // disabled
  t.deepEqual(await nextEvent(subscription), { type: 'withdrawn', reason: 'gone' });
  replaced.buffer.close();
  t.deepEqual(await client.list(), []);

  // Shown again, then QEMU goes away: the device resets, the surface is withdrawn.
  await qemu.show(3, 16, 16, 0x300000);
  const [again] = await client.list();
  const second = client.subscribe(again!.surface);
  const buffer = await nextEvent(second);
  if (buffer.type === 'surface') buffer.buffer.close();
  await qemu.quit();
  t.deepEqual(await nextEvent(second), { type: 'withdrawn', reason: 'gone' });

  client.close();
  await server.close();
  t.true(backend.closed, 'the source closed the back end it owned');
  for (let i = 0; i < 100 && openFdCount() !== before; i++) await sleep(10);
  t.is(openFdCount(), before);
  t.true(logs.has(/attached to vhost-user-gpu back end/));
});
