// SurfaceCache: live dma-bufs by the memfd items they were made from, so exporting the same
// guest surface again is a dup, not a kernel create that pins every page again.
//
// The cache holds its own reference (a dup) to each buffer, so a cached buffer cannot be
// released under it and its pages stay pinned until the entry is invalidated or evicted.
// Invalidate when the guest's view of the memory changes: a resource's backing detached or
// the resource destroyed (`invalidate(tag)`), memory unplugged or replaced
// (`invalidateMemory`), a guest reset (`invalidateAll`). Memory given as a Memfd object is
// keyed by that object; memory given as a raw fd number is keyed by the number, so call
// `invalidateMemory(fd)` before that fd is closed and its number reused.
import type { DmaBuf } from '../kernel/dma-buf.js';
import { integerIn } from '../core/integers.js';
import { native } from '../core/native.js';
import type { GuestMemory, MemfdItem } from './guest-memory.js';
import type { Memfd } from '../kernel/memfd.js';
import type { SurfacePlan } from './surface-layout.js';

const MAX_PLANS = 256;

export interface SurfaceCacheOptions {
  /** Most buffers kept; the least recently used goes first. Default 64. */
  maxEntries?: number;
}

export interface SurfaceCacheStats {
  entries: number;
  /** Bytes the cached buffers keep pinned. */
  pinnedBytes: bigint;
  hits: number;
  misses: number;
}

interface Entry {
  dmabuf: DmaBuf;
  items: MemfdItem[];
  tag: string | undefined;
  /** The cache's clock at the last store or hit: the lowest goes first. */
  used: number;
}

export class SurfaceCache implements Disposable {
  readonly maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  /** Surface plans by descriptor, per GuestMemory (plans never go stale: the map is fixed). */
  readonly #plans = new WeakMap<GuestMemory, Map<string, SurfacePlan>>();
  /** Counts stores and hits. A hit only stamps its entry (reordering a Map costs more). */
  #clock = 0;
  // Memfd objects get a number of their own: a key must not match a different file that
  // later reuses a closed memfd's fd number.
  readonly #memfdIds = new WeakMap<Memfd, number>();
  /** Keys of frozen item lists (a plan's): a memoized plan hands over the same list every time. */
  readonly #keys = new WeakMap<readonly MemfdItem[], string>();
  #nextId = 0;
  #hits = 0;
  #misses = 0;

  constructor(options: SurfaceCacheOptions = {}) {
    const max = options.maxEntries ?? 64;
    this.maxEntries = integerIn(max, 1, Number.MAX_SAFE_INTEGER, 'maxEntries');
  }

  /**
   * The buffer made from exactly `items`, owned by the caller: a new reference (a dup) to the
   * cached one, or the one `create` makes, of which the cache then keeps a reference of its own
   * under `tag` (a resource id, a scanout) that `invalidate` can name. A dup honours `cloexec`
   * as a create would.
   */
  getOrCreate(items: readonly MemfdItem[], tag: string | undefined, create: () => DmaBuf, options: { cloexec?: boolean } = {}): DmaBuf {
    const key = this.#key(items);
    return this.#hit(key, options) ?? this.#keep(key, items, tag, create());
  }

  /**
   * getOrCreate with a create that pins on a worker thread. Another export of the same memory
   * may be cached while this one pins; then the new buffer is the caller's alone, not cached.
   */
  async getOrCreateAsync(items: readonly MemfdItem[], tag: string | undefined, create: () => Promise<DmaBuf>, options: { cloexec?: boolean } = {}): Promise<DmaBuf> {
    const key = this.#key(items);
    const hit = this.#hit(key, options);
    if (hit) return hit;
    const dmabuf = await create();
    return this.#entries.has(key) ? dmabuf : this.#keep(key, items, tag, dmabuf);
  }

  /** A dup of the cached buffer for `key`, or undefined (a miss). */
  #hit(key: string, options: { cloexec?: boolean }): DmaBuf | undefined {
    const entry = this.#entries.get(key);
    if (!entry) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    entry.used = ++this.#clock;
    const dup = entry.dmabuf.dup();
    if (options.cloexec === false) native.setCloseOnExec(dup.fd, false);
    return dup;
  }

  /** Keeps a reference of the cache's own to a new buffer, evicting the least recently used. */
  #keep(key: string, items: readonly MemfdItem[], tag: string | undefined, dmabuf: DmaBuf): DmaBuf {
    try {
      this.#entries.set(key, { dmabuf: dmabuf.dup(), items: items.map((item) => ({ ...item })), tag, used: ++this.#clock });
    } catch (err) {
      dmabuf.close(); // the dup failed (EMFILE): nothing may stay pinned
      throw err;
    }
    while (this.#entries.size > this.maxEntries) this.#drop(this.#leastRecentlyUsed());
    return dmabuf;
  }

  /**
   * The plan for a surface `descriptor` (a string naming every input of the plan) of
   * `memory`, made by `make` the first time. Bounded: past MAX_PLANS descriptors it starts over.
   */
  plan(memory: GuestMemory, descriptor: string, make: () => SurfacePlan): SurfacePlan {
    let plans = this.#plans.get(memory);
    if (!plans) this.#plans.set(memory, (plans = new Map()));
    let plan = plans.get(descriptor);
    if (!plan) {
      if (plans.size >= MAX_PLANS) plans.clear();
      plans.set(descriptor, (plan = make()));
    }
    return plan;
  }

  /**
   * Drops every entry stored under `tag`; returns how many. An entry keeps the tag it was
   * stored with: a later hit from another surface over the same memory does not add its tag.
   */
  invalidate(tag: string): number {
    return this.#dropWhere((entry) => entry.tag === tag);
  }

  /** Drops every entry using bytes of `memfd` (in [offset, offset + size) when given). */
  invalidateMemory(memfd: Memfd | number, offset = 0n, size?: bigint): number {
    const end = size === undefined ? undefined : offset + size;
    return this.#dropWhere((entry) =>
      entry.items.some((item) => item.memfd === memfd && item.offset + item.size > offset && (end === undefined || item.offset < end)),
    );
  }

  /** Drops everything (a guest reset). */
  invalidateAll(): number {
    return this.#dropWhere(() => true);
  }

  get stats(): SurfaceCacheStats {
    let pinnedBytes = 0n;
    for (const entry of this.#entries.values()) pinnedBytes += entry.dmabuf.size;
    return { entries: this.#entries.size, pinnedBytes, hits: this.#hits, misses: this.#misses };
  }

  close(): void {
    this.invalidateAll();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #dropWhere(match: (entry: Entry) => boolean): number {
    let dropped = 0;
    for (const [key, entry] of this.#entries) {
      if (!match(entry)) continue;
      this.#drop(key);
      dropped++;
    }
    return dropped;
  }

  #leastRecentlyUsed(): string {
    let oldest = '';
    let used = Infinity;
    for (const [key, entry] of this.#entries) if (entry.used < used) [oldest, used] = [key, entry.used];
    return oldest;
  }

  #drop(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    entry.dmabuf.close();
  }

  #key(items: readonly MemfdItem[]): string {
    // Only a frozen list can be trusted to hold what it held when its key was made.
    if (!Object.isFrozen(items)) return this.#makeKey(items);
    let key = this.#keys.get(items);
    if (key === undefined) this.#keys.set(items, (key = this.#makeKey(items)));
    return key;
  }

  #makeKey(items: readonly MemfdItem[]): string {
    let key = '';
    for (const item of items) {
      const memfd = typeof item.memfd === 'number' ? `fd${item.memfd}` : `m${this.#idOf(item.memfd)}`;
      key += `${memfd}:${item.offset}+${item.size};`;
    }
    return key;
  }

  #idOf(memfd: Memfd): number {
    let id = this.#memfdIds.get(memfd);
    if (id === undefined) this.#memfdIds.set(memfd, (id = this.#nextId++));
    return id;
  }
}
