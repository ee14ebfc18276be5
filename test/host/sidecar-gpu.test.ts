// The sidecar over the vhost-user-gpu back end (VhostUserGpuSource), driven by the scripted
// QEMU front end and guest commands: a scanout becomes a surface, RESOURCE_FLUSH damage,
// another resource on the scanout a replaced buffer, disabling it (and QEMU leaving) a
// withdrawn surface. The export is injected (no udmabuf on the host): a memfd per resource.
import { nextEvent } from './fixtures/sidecar-events.js';
import test from 'ava';
import { fourcc } from '../../lib/formats/drm.js';
import { SidecarClient, SidecarServer, VhostUserGpuBackend, VhostUserGpuSource } from '../../lib/index.js';
import { Command as C } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { cmd } from './fixtures/gpu-rig.js';
import { fakeExporter, ScriptedQemu } from './fixtures/scripted-qemu.js';
import { LogCatcher, tempSocketPath } from './fixtures/sidecar-rig.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

test.serial('scanout → surface, flush → damage, another resource → replaced, scanout disabled → withdrawn, QEMU gone → withdrawn; fds back to baseline', async (t) => {
  const before = openFdCount();
  const gpuPath = tempSocketPath(t, 'gpu.sock');
  const path = tempSocketPath(t);
  const logs = new LogCatcher();
  const { exportSurface } = fakeExporter();
  const backend = await VhostUserGpuBackend.listen(gpuPath, { exportSurface });
  const server = await SidecarServer.listen(path, { sources: [new VhostUserGpuSource(backend, { ownsBackend: true })], log: logs.log });
  const client = await SidecarClient.connect(path);
  t.deepEqual(await client.list(), []);

  const qemu = await ScriptedQemu.connect(gpuPath);
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
