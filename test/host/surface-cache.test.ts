// SurfaceCache bookkeeping on the host (a memfd stands in for the dma-buf: the cache only dups
// and closes fds): keys follow the items' contents, plans are memoized per GuestMemory and
// frozen, eviction and invalidation close the cache's reference. The real-driver behaviour is
// in test/vm/surface-cache.test.ts.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { DmaBuf, GuestMemory, Memfd, planSurface, SurfaceCache, type MemfdItem } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';

const stand = (memfd: Memfd): DmaBuf => new DmaBuf(native.dup(memfd.fd), memfd.size);

/** getOrCreate, reporting whether `create` ran. The caller closes the returned buffer. */
function fetch(cache: SurfaceCache, items: readonly MemfdItem[], memfd: Memfd, options: { tag?: string; cloexec?: boolean } = {}): { buf: DmaBuf; created: boolean } {
  let created = false;
  const buf = cache.getOrCreate(items, options.tag, () => ((created = true), stand(memfd)), options);
  return { buf, created };
}

test('a lookup after the caller changed its item list misses: keys follow contents, not arrays', (t) => {
  using memfd = Memfd.create('cache-host', 16 * 4096);
  using cache = new SurfaceCache();
  const items: MemfdItem[] = [{ memfd, offset: 0n, size: 4096n }];
  const first = fetch(cache, items, memfd);
  t.true(first.created);
  first.buf.close();
  const hit = fetch(cache, items, memfd);
  t.false(hit.created, 'the same items hit');
  hit.buf.close();
  items[0]!.offset = 8192n;
  const moved = fetch(cache, items, memfd);
  t.true(moved.created, 'different memory, same array');
  moved.buf.close();
  const again = fetch(cache, [{ memfd, offset: 0n, size: 4096n }], memfd);
  t.false(again.created, 'the original contents still hit');
  again.buf.close();
  t.deepEqual({ hits: cache.stats.hits, misses: cache.stats.misses }, { hits: 2, misses: 2 });
});

test('a hit honours cloexec: false as a create would', (t) => {
  using memfd = Memfd.create('cache-host', 4096);
  using cache = new SurfaceCache();
  const items = [{ memfd, offset: 0n, size: 4096n }];
  fetch(cache, items, memfd).buf.close();
  using inheritable = fetch(cache, items, memfd, { cloexec: false }).buf;
  using plain = fetch(cache, items, memfd).buf;
  t.false(closeOnExec(inheritable.fd), 'cloexec: false on a hit');
  t.true(closeOnExec(plain.fd), 'close-on-exec by default');
});

test('two Memfd objects on reused fd numbers never share a key', (t) => {
  using cache = new SurfaceCache();
  const first = Memfd.create('cache-host-a', 4096);
  const fd = first.fd;
  fetch(cache, [{ memfd: first, offset: 0n, size: 4096n }], first).buf.close();
  first.close();
  using second = Memfd.create('cache-host-b', 4096);
  t.is(second.fd, fd, 'the kernel reused the number');
  const other = fetch(cache, [{ memfd: second, offset: 0n, size: 4096n }], second);
  t.true(other.created, 'a new Memfd on the same number misses');
  other.buf.close();
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
  for (const offset of [0n, 4096n, 8192n]) fetch(cache, [{ memfd, offset, size: 4096n }], memfd, { tag: `tag ${offset}` }).buf.close();
  t.is(cache.stats.entries, 2, 'the oldest was evicted');
  t.is(countFds(), before + 2, 'the cache holds one fd per entry, no more');
  t.is(cache.invalidate('tag 0'), 0, 'evicted already');
  t.is(cache.invalidate('tag 4096'), 1);
  t.is(cache.invalidateAll(), 1);
  t.is(countFds(), before, 'every cached fd closed');
});

/** O_CLOEXEC (octal 02000000) in the fd's fdinfo flags. */
function closeOnExec(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
  if (flags === undefined) throw new Error(`no flags in fdinfo of fd ${fd}`);
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}
