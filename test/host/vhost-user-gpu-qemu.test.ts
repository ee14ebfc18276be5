// The vhost-user-gpu back end under a real QEMU on the host: QEMU 10.0 (TCG, -display none;
// 7.2 refuses vhost-user without KVM) boots Debian's 6.1 kernel with the GPU test guest
// (vm/gpu-guest.ts), which loads virtio-gpu and draws a known picture into /dev/fb0. The run is
// examples/vhost-user-gpu-boot.ts; there is no udmabuf on the host, so the export step fails
// (reported) and the check reads the picture from the guest's backing pages through our own
// mapping of guest RAM instead. The dma-buf end to end is the VM suite's.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const example = fileURLToPath(new URL('../../examples/vhost-user-gpu-boot.js', import.meta.url));

test('QEMU 10.0 boots a Debian 6.1 guest on our back end: realize, DRIVER_OK, fbcon, and the guest\'s picture in its backing', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [example, '6.1', '240'], { maxBuffer: 64 << 20, timeout: 300_000 });
  const line = (pattern: RegExp): RegExpMatchArray | null => stdout.match(pattern);
  t.truthy(line(/vhost \| SET_MEM_TABLE \(5\)/), 'DRIVER_OK reached: the memory table came');
  t.truthy(line(/gpu {3}\| RESOURCE_CREATE_2D → OK_NODATA/), 'the guest created its framebuffer');
  t.truthy(line(/gpu {3}\| \d+ × RESOURCE_ATTACH_BACKING → OK_NODATA/));
  t.truthy(line(/gpu {3}\| \d+ × RESOURCE_FLUSH → OK_NODATA/));
  const problems = stdout.split('\n').filter((l) => /ERR_VIRTQUEUE_BROKEN|ERR_VHOST_USER/.test(l));
  t.deepEqual(problems, [], 'no queue broke, no request was refused');
  t.truthy(line(/draw-fb: drew 1280x800 stride 5120 format xrgb8888/), 'the guest drew and said so');
  t.truthy(line(/picture in the guest's backing equals draw-fb's: true/));
  t.truthy(line(/QEMU exited with 0/));
  const first = line(/first RESOURCE_CREATE_2D: ([\d.]+) s/);
  t.log(`first RESOURCE_CREATE_2D ${first?.[1]} s after start (TCG, Debian 6.1 ${line(/ through (pvh|bzimage)/)?.[1]})`);
});
