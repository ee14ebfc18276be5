// SurfaceCache bookkeeping on the host (a memfd stands in for the dma-buf: the cache only dups
// and closes fds): keys follow the items' contents, plans are memoized per GuestMemory and
// frozen, eviction and invalidation close the cache's reference. The real-driver behaviour is
// in test/vm/surface-cache.test.ts.
import test from 'ava';
import { readdirSync } from 'node:fs';
import { DmaBuf, GuestMemory, Memfd, planSurface, SurfaceCache, type MemfdItem } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';

const stand = (memfd: Memfd): DmaBuf => new DmaBuf(native.dup(memfd.fd), memfd.size);

test('a lookup after the caller changed its item list misses: keys follow contents, not arrays', (t) => {
  using memfd = Memfd.create('cache-host', 16 * 4096);
  using cache = new SurfaceCache();
  const items: MemfdItem[] = [{ memfd, offset: 0n, size: 4096n }];
  using stored = stand(memfd);
  cache.store(items, stored);
  const hit = cache.lookup(items);
  t.truthy(hit);
  hit?.close();
  items[0]!.offset = 8192n;
  t.is(cache.lookup(items), undefined, 'different memory, same array');
  t.is(cache.lookup([{ memfd, offset: 8192n, size: 4096n }]), undefined);
  const again = cache.lookup([{ memfd, offset: 0n, size: 4096n }]);
  t.truthy(again, 'the original contents still hit');
  again?.close();
  t.deepEqual({ hits: cache.stats.hits, misses: cache.stats.misses }, { hits: 2, misses: 2 });
});

test('two Memfd objects on reused fd numbers never share a key', (t) => {
  using cache = new SurfaceCache();
  const first = Memfd.create('cache-host-a', 4096);
  const fd = first.fd;
  using stored = stand(first);
  cache.store([{ memfd: first, offset: 0n, size: 4096n }], stored);
  first.close();
  using second = Memfd.create('cache-host-b', 4096);
  t.is(second.fd, fd, 'the kernel reused the number');
  t.is(cache.lookup([{ memfd: second, offset: 0n, size: 4096n }]), undefined);
});

test('plans are frozen and memoized per GuestMemory; eviction and invalidation close the cache\'s fds', (t) => {
  using memfd = Memfd.create('cache-host', 64 * 4096);
  const memory = new GuestMemory([{ gpa: 0, size: 64 * 4096, memfd, offset: 0 }]);
  using cache = new SurfaceCache({ maxEntries: 2 });
  let made = 0;
  const make = () => {
    made++;
    return planSurface(memory, { gpa: 0x100 }, { width: 64, height: 64, stride: 256, format: 'XR24' });
  };
  const plan = cache.plan(memory, 'fb', make);
  t.is(cache.plan(memory, 'fb', make), plan);
  t.is(made, 1);
  t.not(cache.plan(new GuestMemory([{ gpa: 0, size: 64 * 4096, memfd, offset: 0 }]), 'fb', make), plan, 'another map, another plan');
  t.true(Object.isFrozen(plan.items) && plan.items.every((item) => Object.isFrozen(item)));
  t.throws(() => {
    (plan.items[0] as { offset: bigint }).offset = 0n;
  });

  const before = countFds();
  for (const offset of [0n, 4096n, 8192n]) {
    using buf = stand(memfd);
    cache.store([{ memfd, offset, size: 4096n }], buf, `tag ${offset}`);
  }
  t.is(cache.stats.entries, 2, 'the oldest was evicted');
  t.is(countFds(), before + 2, 'the cache holds one fd per entry, no more');
  t.is(cache.invalidate('tag 0'), 0, 'evicted already');
  t.is(cache.invalidate('tag 4096'), 1);
  t.is(cache.invalidateAll(), 1);
  t.is(countFds(), before, 'every cached fd closed');
});

function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}
