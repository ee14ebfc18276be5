// Release notification (guest_udmabuf's UDMABUF_CREATE_NOTIFY): the eventfd fires exactly once,
// only after the last holder of the buffer (fd, mmap, vgem import, vivid queue) let go.
import test from 'ava';
import { EventFd, Memfd, Udmabuf, unmap } from '../../lib/index.js';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, ourDevice } from './helpers/devices.js';
import { inodeOf, isLive } from './helpers/dmabuf-debugfs.js';
import { captureFormat, gemClose, openVgem, openVividCapture, primeImport, queueInto, stopCapture } from './helpers/importers.js';
import { attempt, memfd as rawMemfd, native, openDevice, PAGE } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const SIZE = 1 << 20;
const ms = (n: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, n));

type Holder = 'fd' | 'mmap' | 'vgem' | 'vivid';

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

function createNotify(dev: number, eventfd: number, memfd: number, size = SIZE): number {
  return native.ioctl(dev, abi.UDMABUF_CREATE_NOTIFY, abi.encodeCreateNotify(abi.UDMABUF_FLAGS_CLOEXEC, eventfd, [{ memfd, offset: 0n, size: BigInt(size) }]));
}

test.serial('the eventfd fires only after the last of fd, mmap, vgem import and vivid buffer is gone, in every order', async (t) => {
  using dev = Udmabuf.open(ourDevice().path);
  using memfd = Memfd.create('release-orders', SIZE, { seals: ['shrink'] });
  const drm = openVgem();
  const video = openVividCapture();
  const length = captureFormat(video).sizeImage;
  t.true(length <= SIZE, `vivid needs ${length} bytes`);
  const orders = permutations<Holder>(['fd', 'mmap', 'vgem', 'vivid']);
  for (const order of orders) {
    const buf = dev.create([{ memfd, offset: 0, size: SIZE }]);
    const ino = inodeOf(buf.fd);
    const view = buf.map();
    const handle = primeImport(drm, buf.fd);
    queueInto(video, buf.fd, length);
    let fired = 0;
    const released = buf.released.then(() => { fired++; });
    const letGo: Record<Holder, () => void> = {
      fd: () => buf.close(),
      mmap: () => unmap(view),
      vgem: () => gemClose(drm, handle),
      vivid: () => stopCapture(video),
    };
    for (const [i, holder] of order.entries()) {
      letGo[holder]();
      if (i === order.length - 1) break;
      await ms(20);
      if (fired || !isLive(ino)) t.fail(`${order.join(' → ')}: released while ${order.slice(i + 1).join(', ')} still held it`);
    }
    await Promise.race([released, ms(5000).then(() => t.fail(`${order.join(' → ')}: no release within 5 s`))]);
    t.false(isLive(ino), `${order.join(' → ')}: the buffer is gone when the eventfd fires`);
  }
  t.pass(`${orders.length} orders`);
  native.close(video);
  native.close(drm);
});

test.serial('the eventfd is signalled exactly once, never while a dup is open, and survives its fd being closed', async (t) => {
  const dev = openDevice(ourDevice().path);
  const memfd = rawMemfd(SIZE);
  using eventfd = EventFd.create();
  const buf = createNotify(dev, eventfd.fd, memfd);
  const dup = native.dup(buf);
  native.close(buf);
  await ms(50);
  t.is(eventfd.read(), null, 'a dup still holds the buffer');
  native.close(dup);
  t.is(await eventfd.wait(), 1n, 'signalled with 1 at the release');
  await ms(200);
  t.is(eventfd.read(), null, 'and never again');

  // The driver holds its own eventfd reference: the caller may close its fd first.
  const early = EventFd.create();
  const other = createNotify(dev, early.fd, memfd);
  early.close();
  native.close(other);
  native.close(memfd);
  native.close(dev);
});

test.serial('a bad eventfd is refused and pins nothing', (t) => {
  const dev = openDevice(ourDevice().path);
  const memfd = rawMemfd(SIZE);
  t.is(attempt(() => createNotify(dev, -1, memfd)), 'EBADF');
  t.is(attempt(() => createNotify(dev, 4000, memfd)), 'EBADF');
  t.is(attempt(() => createNotify(dev, memfd, memfd)), 'EINVAL', 'a memfd is not an eventfd');
  using eventfd = EventFd.create();
  const padded = abi.encodeCreateNotify(abi.UDMABUF_FLAGS_CLOEXEC, eventfd.fd, [{ memfd, offset: 0n, size: BigInt(PAGE) }]);
  new DataView(padded.buffer).setUint32(12, 1, true);
  t.is(attempt(() => native.ioctl(dev, abi.UDMABUF_CREATE_NOTIFY, padded)), 'EINVAL', 'a non-zero pad');
  t.is(attempt(() => native.ioctl(dev, abi.UDMABUF_CREATE_NOTIFY, abi.encodeCreateNotify(0, eventfd.fd, []))), 'EINVAL', 'count 0');
  native.close(memfd);
  native.close(dev);
});

for (const dut of devicesUnderTest().filter((d) => d.label === 'in-tree')) {
  test.serial('in-tree: an old driver answers ENOTTY to the extension ioctls', (t) => {
    const dev = openDevice(dut.path);
    const memfd = rawMemfd(SIZE);
    using eventfd = EventFd.create();
    t.is(attempt(() => native.ioctl(dev, abi.UDMABUF_GET_FEATURES, new Uint8Array(32))), 'ENOTTY');
    t.is(attempt(() => createNotify(dev, eventfd.fd, memfd)), 'ENOTTY');
    native.close(memfd);
    native.close(dev);
  });
}

checkBaseline();
