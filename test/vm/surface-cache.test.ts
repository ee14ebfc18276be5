// The surface cache on the real driver: a re-export is a dup of the live buffer (no new
// create, no new pin), invalidation drops the cache's reference, and a buffer that was
// invalidated or released is never handed out again.
import test from 'ava';
import { exportFramebuffer, SurfaceCache, Udmabuf, type FramebufferDescriptor } from '../../lib/index.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { inodeOf, isLive } from './helpers/dmabuf-debugfs.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { GuestRam, MiB } from './helpers/guest-ram.js';

const checkBaseline = baselineGuard(test);
const FB_BYTES = 1228800n;
const fb = (gpa: number): FramebufferDescriptor => ({ gpa, width: 640, height: 480, stride: 2560, format: 'XR24' });

test.serial('a cached re-export is a dup of the live buffer: same inode, no new buffer in the driver', (t) => {
  using ram = new GuestRam(8 * MiB, 8 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  using cache = new SurfaceCache();
  const gpa = 4 * 2 ** 30 + 4096;
  using first = exportFramebuffer(dev, ram.memory, fb(gpa), { cache });
  const before = ourBuffers().length;
  using again = exportFramebuffer(dev, ram.memory, fb(gpa), { cache });
  t.is(ourBuffers().length, before, 'no new buffer');
  t.is(inodeOf(again.dmabuf.fd), inodeOf(first.dmabuf.fd), 'the same dma-buf');
  t.not(again.dmabuf.fd, first.dmabuf.fd, 'an fd of its own');
  // 640×480 XR24 with stride 2560 from a page boundary: 479 × 2560 + 640 × 4 = 1228800 bytes.
  t.is(first.dmabuf.size, FB_BYTES);
  t.deepEqual(cache.stats, { entries: 1, pinnedBytes: FB_BYTES, hits: 1, misses: 1 });
  // The same memory described with another layout is the same buffer too.
  using wider = exportFramebuffer(dev, ram.memory, { ...fb(gpa), width: 320, stride: 2560, format: 'AR24' }, { cache });
  t.is(inodeOf(wider.dmabuf.fd), inodeOf(first.dmabuf.fd));
  // Different memory is a different buffer.
  using other = exportFramebuffer(dev, ram.memory, fb(gpa + 2 * MiB), { cache });
  t.not(inodeOf(other.dmabuf.fd), inodeOf(first.dmabuf.fd));
  first.dmabuf.close();
  using afterClose = exportFramebuffer(dev, ram.memory, fb(gpa), { cache });
  t.is(inodeOf(afterClose.dmabuf.fd), inodeOf(again.dmabuf.fd), 'closing a handed-out fd does not drop the entry');
});

test.serial('an invalidated buffer is never handed out again, and is released once its last user lets go', async (t) => {
  using ram = new GuestRam(8 * MiB, 8 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  using cache = new SurfaceCache();
  const gpa = 4 * 2 ** 30;
  const held = exportFramebuffer(dev, ram.memory, fb(gpa), { cache, tag: 'scanout 0' });
  const ino = inodeOf(held.dmabuf.fd);
  t.is(cache.invalidate('scanout 0'), 1);
  t.is(cache.invalidate('scanout 0'), 0);
  t.true(isLive(ino), 'the user still holds it');
  using fresh = exportFramebuffer(dev, ram.memory, fb(gpa), { cache, tag: 'scanout 0' });
  t.not(inodeOf(fresh.dmabuf.fd), ino, 'a new buffer, not the invalidated one');
  const released = held.dmabuf.released;
  held.dmabuf.close();
  await released;
  t.false(isLive(ino), 'released after the last user closed it');

  // By memory: only entries using the named bytes go.
  using dimm = exportFramebuffer(dev, ram.memory, fb(ram.dimmGpa), { cache });
  t.is(cache.invalidateMemory(ram.main, 0n, 4096n), 0, 'no entry uses the first page of the main memfd');
  t.is(cache.invalidateMemory(ram.dimm), 1);
  t.is(cache.stats.entries, 1);
  const freshIno = inodeOf(fresh.dmabuf.fd);
  const dimmIno = inodeOf(dimm.dmabuf.fd);
  t.is(cache.invalidateAll(), 1);
  using again = exportFramebuffer(dev, ram.memory, fb(gpa), { cache });
  using dimmAgain = exportFramebuffer(dev, ram.memory, fb(ram.dimmGpa), { cache });
  t.not(inodeOf(again.dmabuf.fd), freshIno);
  t.not(inodeOf(dimmAgain.dmabuf.fd), dimmIno);
});

test.serial('the least recently used entry is evicted at maxEntries, and its pages are unpinned', async (t) => {
  using ram = new GuestRam(8 * MiB, 8 * MiB, 2 * MiB);
  using dev = Udmabuf.open(ourDevice().path);
  using cache = new SurfaceCache({ maxEntries: 2 });
  const gpas = [4 * 2 ** 30, 4 * 2 ** 30 + 2 * MiB, 4 * 2 ** 30 + 4 * MiB];
  const inodes: number[] = [];
  for (const gpa of gpas.slice(0, 2)) {
    using s = exportFramebuffer(dev, ram.memory, fb(gpa), { cache });
    inodes.push(inodeOf(s.dmabuf.fd));
  }
  exportFramebuffer(dev, ram.memory, fb(gpas[0]!), { cache })[Symbol.dispose](); // touch the first: the second is now oldest
  using third = exportFramebuffer(dev, ram.memory, fb(gpas[2]!), { cache });
  t.is(cache.stats.entries, 2);
  t.false(isLive(inodes[1]!), 'the evicted buffer is gone: nobody else held it');
  t.true(isLive(inodes[0]!));
  t.throws(() => new SurfaceCache({ maxEntries: 0 }), { message: /maxEntries must be a positive integer/ });
  // Exports: first (miss), second (miss), first again (hit), third (miss); two entries stay.
  t.deepEqual(cache.stats, { entries: 2, pinnedBytes: 2n * FB_BYTES, hits: 1, misses: 3 });
  t.deepEqual([third.width, third.height, third.fourcc, third.modifier, third.planes[0]], [640, 480, 0x34325258, 0n, { offset: 0, stride: 2560 }]);
  t.is(third.dmabuf.size, FB_BYTES);
  const thirdIno = inodeOf(third.dmabuf.fd);
  t.false(inodes.includes(thirdIno), 'a buffer of its own');
  t.deepEqual(ourBuffers().filter((b) => [inodes[0], thirdIno].includes(b.ino)).map((b) => b.pages).sort(), [300, 300], 'the two cached buffers, 300 pages each, in the driver');
});

checkBaseline();
