// The front end's memory table, mapped into this process: each region's fd mapped once, so
// virtqueues and requests are read straight from guest RAM, and a GuestMemory over the same
// fds for exports. Two address spaces index it: guest-physical addresses (what descriptors and
// virtio-gpu backing entries hold) and the front end's user addresses (what SET_VRING_ADDR
// gives); both map to offset = mmap_offset + (addr − region start).
import { native } from '../../lib/core/native.js';
import { PAGE_SIZE, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../lib/core/linux.js';
import { unmap } from '../../lib/fd/mapping.js';
import { GuestMemory } from '../../lib/guest/guest-memory.js';
import { hex } from '../../lib/core/integers.js';
import { VhostUserError } from './errors.js';
import type { MemoryRegionDescription } from './messages.js';

interface MappedRegion {
  gpa: number;
  userAddr: number;
  size: number;
  fd: number;
  mmapOffset: number;
  /** The mapping, from mmap_offset rounded down to a page; `bytes` starts at mmap_offset. */
  mapping: Uint8Array;
  bytes: Uint8Array;
}

/** A bigint the front end sent, as a safe number, or a message error naming it. */
function safe(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhostUserError(`${what} ${hex(value)} is past 2^53`, 'ERR_VHOST_USER_MESSAGE');
  return Number(value);
}

/**
 * Guest RAM as the front end described it. Owns the region fds and mappings: dispose it to
 * unmap and close them all (the front end's next SET_MEM_TABLE replaces the whole map).
 */
export class VhostMemoryMap implements Disposable {
  readonly #regions: MappedRegion[];
  readonly #guestMemory: GuestMemory;
  #disposed = false;

  /**
   * Maps `regions`, taking ownership of `fds` (one per region, in order) whatever happens: on
   * a bad table they are closed before the error is thrown.
   */
  constructor(regions: readonly MemoryRegionDescription[], fds: readonly number[]) {
    const mapped: MappedRegion[] = [];
    try {
      if (fds.length !== regions.length) throw new VhostUserError(`the memory table lists ${regions.length} regions but came with ${fds.length} fds`, 'ERR_VHOST_USER_MESSAGE');
      regions.forEach((r, i) => mapped.push(mapRegion(r, fds[i]!, i)));
      checkDisjoint(mapped, 'gpa', 'guest-physical');
      checkDisjoint(mapped, 'userAddr', 'user-address');
      this.#guestMemory = new GuestMemory(mapped.map((m, i) => ({ gpa: m.gpa, size: m.size, memfd: m.fd, offset: m.mmapOffset, name: `vhost-user region ${i}` })));
    } catch (err) {
      for (const m of mapped) unmap(m.mapping);
      for (const fd of fds) native.close(fd);
      throw err instanceof VhostUserError ? err : new VhostUserError(`the memory table cannot be used: ${(err as Error).message}`, 'ERR_VHOST_USER_MESSAGE');
    }
    this.#regions = mapped.sort((a, b) => a.gpa - b.gpa);
  }

  /** The same RAM as a GuestMemory (memfd items name the region fds), for exports. */
  get guestMemory(): GuestMemory {
    return this.#guestMemory;
  }

  get regionCount(): number {
    return this.#regions.length;
  }

  /** Total bytes of guest RAM in the table. */
  get size(): number {
    return this.#regions.reduce((sum, r) => sum + r.size, 0);
  }

  /** A view of `length` bytes at guest-physical `gpa` if they lie wholly inside one region, else null. */
  guestView(gpa: number | bigint, length: number): Uint8Array | null {
    return this.#view('gpa', gpa, length);
  }

  /** A view of `length` bytes at the front end's user address `addr`, else null. */
  userView(addr: number | bigint, length: number): Uint8Array | null {
    return this.#view('userAddr', addr, length);
  }

  /** The guest-physical address of a front-end user address, or null when no region maps it. */
  userToGuest(addr: bigint): bigint | null {
    for (const r of this.#regions) {
      const start = BigInt(r.userAddr);
      if (addr >= start && addr < start + BigInt(r.size)) return BigInt(r.gpa) + (addr - start);
    }
    return null;
  }

  #view(key: 'gpa' | 'userAddr', address: number | bigint, length: number): Uint8Array | null {
    if (this.#disposed) return null;
    if (typeof address === 'bigint') {
      if (address > BigInt(Number.MAX_SAFE_INTEGER)) return null;
      address = Number(address);
    }
    if (!Number.isSafeInteger(address) || address < 0 || !Number.isSafeInteger(length) || length < 0) return null;
    // Few regions (QEMU sends 1-3): a linear scan beats anything cleverer.
    for (const r of this.#regions) {
      const start = r[key];
      if (address >= start && address < start + r.size) {
        const at = address - start;
        return length <= r.size - at ? r.bytes.subarray(at, at + length) : null;
      }
    }
    return null;
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const r of this.#regions) {
      unmap(r.mapping);
      native.close(r.fd);
    }
  }
}

function mapRegion(r: MemoryRegionDescription, fd: number, index: number): MappedRegion {
  const what = (field: string): string => `memory region ${index} ${field}`;
  const gpa = safe(r.guestPhysAddr, what('guest_phys_addr'));
  const size = safe(r.size, what('memory_size'));
  const userAddr = safe(r.userAddr, what('userspace_addr'));
  const mmapOffset = safe(r.mmapOffset, what('mmap_offset'));
  if (size === 0 || size % PAGE_SIZE || gpa % PAGE_SIZE) throw new VhostUserError(`${what('')}(gpa ${hex(gpa)}, size ${hex(size)}) is empty or not page-aligned`, 'ERR_VHOST_USER_MESSAGE');
  if (!Number.isSafeInteger(gpa + size) || !Number.isSafeInteger(userAddr + size) || !Number.isSafeInteger(mmapOffset + size)) {
    throw new VhostUserError(`${what('')}ends past 2^53`, 'ERR_VHOST_USER_MESSAGE');
  }
  // A mapping past the file's end would raise SIGBUS on the first read there: refuse it.
  const fileSize = native.fstat(fd).size;
  if (BigInt(mmapOffset + size) > fileSize) {
    throw new VhostUserError(`${what('')}runs to file offset ${hex(mmapOffset + size)}, past the end of its fd (${hex(fileSize)} bytes)`, 'ERR_VHOST_USER_MESSAGE');
  }
  const head = mmapOffset % PAGE_SIZE;
  const mapping = new Uint8Array(native.mmap(fd, head + size, PROT_READ | PROT_WRITE, MAP_SHARED, mmapOffset - head));
  return { gpa, userAddr, size, fd, mmapOffset, mapping, bytes: mapping.subarray(head, head + size) };
}

function checkDisjoint(regions: readonly MappedRegion[], key: 'gpa' | 'userAddr', space: string): void {
  const sorted = [...regions].sort((a, b) => a[key] - b[key]);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (b[key] < a[key] + a.size) throw new VhostUserError(`memory regions overlap in ${space} space at ${hex(b[key])}`, 'ERR_VHOST_USER_MESSAGE');
  }
}
