// A split virtqueue (virtio 1.x §2.7) read and written in place in guest RAM: the descriptor
// table, the available ring the driver fills and the used ring we fill. Everything the driver
// wrote is checked before use: ring indexes, descriptor addresses and lengths against guest
// RAM, chain lengths against the ring (which is also how loops are caught: a chain that
// revisits a descriptor is longer than the ring), indirect tables against their own size.
// The first violation breaks the queue (virtio's NEEDS_RESET): nothing more is taken from it.
import { hex } from '../../lib/core/integers.js';
import { VirtqueueError } from './errors.js';
import type { VhostMemoryMap } from './memory-map.js';

export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const VRING_DESC_F_INDIRECT = 4;
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
const DESC_SIZE = 16;
/** Split rings hold at most 32768 entries (virtio 1.x: Queue Size ≤ 32768). */
export const MAX_QUEUE_SIZE = 32768;

/** Where the rings live, as the front end's user addresses (SET_VRING_ADDR). */
export interface RingAddresses {
  desc: bigint;
  avail: bigint;
  used: bigint;
}

/** One buffer chain taken from the available ring: views into guest RAM, in chain order. */
export interface DescriptorChain {
  /** The head descriptor's index: what push() returns to the driver. */
  head: number;
  /** Device-readable buffers (the request). */
  readable: Uint8Array[];
  /** Device-writable buffers (room for the response). */
  writable: Uint8Array[];
  readableBytes: number;
  writableBytes: number;
}

interface Rings {
  desc: DataView;
  avail: DataView;
  used: DataView;
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export class SplitVirtqueue {
  readonly index: number;
  readonly size: number;
  readonly #eventIdx: boolean;
  readonly #indirect: boolean;
  readonly #addresses: RingAddresses;
  #memory: VhostMemoryMap;
  #rings: Rings;
  #lastAvail: number;
  #usedIdx: number;
  /** The used index when the driver was last notified (EVENT_IDX's "old"). */
  #signalledUsed: number;
  #broken: VirtqueueError | null = null;

  /**
   * `base` is SET_VRING_BASE's next available index; the used index starts there too, as it
   * does after a fresh start or a migration that drained the queue. Throws VirtqueueError
   * when a ring is misaligned or not wholly inside guest RAM.
   */
  constructor(index: number, size: number, addresses: RingAddresses, base: number, memory: VhostMemoryMap, features: { eventIdx: boolean; indirect: boolean }) {
    this.index = index;
    this.size = size;
    this.#memory = memory;
    this.#addresses = addresses;
    this.#eventIdx = features.eventIdx;
    this.#indirect = features.indirect;
    this.#rings = this.#resolve(memory);
    this.#lastAvail = base & 0xffff;
    this.#usedIdx = this.#lastAvail;
    this.#signalledUsed = this.#usedIdx;
  }

  /** Finds the rings again in a new memory table (SET_MEM_TABLE while the queue runs). */
  remap(memory: VhostMemoryMap): void {
    this.#rings = this.#resolve(memory);
    this.#memory = memory;
  }

  #resolve(memory: VhostMemoryMap): Rings {
    const ring = (name: string, addr: bigint, length: number, align: number): DataView => {
      if (addr % BigInt(align)) throw new VirtqueueError(this.index, `the ${name} ring at ${hex(addr)} is not ${align}-byte aligned`);
      const bytes = memory.userView(addr, length);
      if (!bytes) throw new VirtqueueError(this.index, `the ${name} ring (${length} bytes at user address ${hex(addr)}) is not inside the memory table`);
      return dataView(bytes);
    };
    const { desc, avail, used } = this.#addresses;
    return {
      desc: ring('descriptor', desc, DESC_SIZE * this.size, 16),
      avail: ring('available', avail, 6 + 2 * this.size, 2),
      used: ring('used', used, 6 + 8 * this.size, 4),
    };
  }

  /** The next available index: GET_VRING_BASE's answer. */
  get lastAvailIndex(): number {
    return this.#lastAvail;
  }

  /** Why the queue stopped, or null while it works. */
  get broken(): VirtqueueError | null {
    return this.#broken;
  }

  /** Chains the driver made available that we have not taken. Throws (and breaks the queue) when its index ran ahead of the ring. */
  pending(): number {
    this.#check();
    const availIdx = this.#rings.avail.getUint16(2, true);
    const count = (availIdx - this.#lastAvail) & 0xffff;
    if (count > this.size) throw this.#break(`the available index ${availIdx} is ${count} ahead of the last one taken (${this.#lastAvail}), more than the ring's ${this.size} entries`);
    return count;
  }

  /** Takes the next available chain, or null when there is none. Throws VirtqueueError (the queue is then broken) on a bad chain. */
  pop(): DescriptorChain | null {
    if (this.pending() === 0) return null;
    const head = this.#rings.avail.getUint16(4 + 2 * (this.#lastAvail % this.size), true);
    const chain = this.#walk(head);
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    // With EVENT_IDX the driver kicks only when it passes avail_event: ask to be kicked for
    // the very next buffer, so no kick is ever suppressed while we are idle.
    if (this.#eventIdx) this.#rings.used.setUint16(4 + 8 * this.size, this.#lastAvail, true);
    return chain;
  }

  /** Returns a chain to the driver with `written` bytes of response in its writable buffers. */
  push(head: number, written: number): void {
    this.#check();
    const used = this.#rings.used;
    const slot = 4 + 8 * (this.#usedIdx % this.size);
    used.setUint32(slot, head, true);
    used.setUint32(slot + 4, written, true);
    // The entry before the index: a driver that sees the new index must see the entry.
    // (Node's typed-array stores are program-ordered on x86 and the views are the shared
    // mapping, so a plain store sequence is enough here.)
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
    used.setUint16(2, this.#usedIdx, true);
  }

  /**
   * Whether the driver wants an interrupt for what was pushed since the last notification:
   * EVENT_IDX's used_event rule, or the avail ring's NO_INTERRUPT flag without it. Calling it
   * records that the driver is being notified.
   */
  shouldNotify(): boolean {
    const fresh = this.#usedIdx;
    const old = this.#signalledUsed;
    if (fresh === old) return false;
    this.#signalledUsed = fresh;
    if (!this.#eventIdx) return (this.#rings.avail.getUint16(0, true) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = this.#rings.avail.getUint16(4 + 2 * this.size, true);
    return ((fresh - usedEvent - 1) & 0xffff) < ((fresh - old) & 0xffff);
  }

  #walk(head: number): DescriptorChain {
    const chain: DescriptorChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    if (head >= this.size) throw this.#break(`the available ring names descriptor ${head}, past the ring's ${this.size} entries`);
    let table = this.#rings.desc;
    let tableSize = this.size;
    let at = head;
    let indirect = false;
    // A chain visits each descriptor at most once, so one longer than its table has a loop.
    for (let visited = 0; ; visited++) {
      if (visited >= tableSize) throw this.#break(`the chain from descriptor ${head} is longer than its ${indirect ? 'indirect table' : 'ring'} (${tableSize} entries): a loop`);
      const base = at * DESC_SIZE;
      const addr = table.getBigUint64(base, true);
      const len = table.getUint32(base + 8, true);
      const flags = table.getUint16(base + 12, true);
      const next = table.getUint16(base + 14, true);
      if (flags & VRING_DESC_F_INDIRECT) {
        if (!this.#indirect) throw this.#break(`descriptor ${at} is indirect, but INDIRECT_DESC was not negotiated`);
        if (indirect) throw this.#break(`an indirect table points to another indirect table (descriptor ${at})`);
        if (flags & VRING_DESC_F_NEXT) throw this.#break(`indirect descriptor ${at} also has NEXT set`);
        if (visited > 0) throw this.#break(`indirect descriptor ${at} is not the chain's only ring descriptor`);
        if (len === 0 || len % DESC_SIZE) throw this.#break(`indirect descriptor ${at} has length ${len}, not a positive multiple of ${DESC_SIZE}`);
        const bytes = this.#memory.guestView(addr, len);
        if (!bytes) throw this.#break(`indirect table ${hex(addr)}+${len} (descriptor ${at}) is not inside guest RAM`);
        table = dataView(bytes);
        tableSize = len / DESC_SIZE;
        at = 0;
        visited = -1;
        indirect = true;
        continue;
      }
      const bytes = this.#memory.guestView(addr, len);
      if (!bytes) throw this.#break(`descriptor ${at}'s buffer ${hex(addr)}+${len} is not inside guest RAM`);
      if (flags & VRING_DESC_F_WRITE) {
        chain.writable.push(bytes);
        chain.writableBytes += len;
      } else {
        if (chain.writable.length > 0) throw this.#break(`descriptor ${at} is device-readable after a device-writable one`);
        chain.readable.push(bytes);
        chain.readableBytes += len;
      }
      if (!(flags & VRING_DESC_F_NEXT)) return chain;
      if (next >= tableSize) throw this.#break(`descriptor ${at} chains to ${next}, past its table's ${tableSize} entries`);
      at = next;
    }
  }

  #check(): void {
    if (this.#broken) throw this.#broken;
  }

  #break(message: string): VirtqueueError {
    this.#broken = new VirtqueueError(this.index, message);
    return this.#broken;
  }
}
