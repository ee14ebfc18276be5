// Argument generators for the ioctl fuzzer: mostly well-formed udmabuf and dma-buf ioctl
// arguments (so calls get past the first checks and reach pinning, export and mapping), then
// mutated: fields set to boundary values, bytes flipped, counts that disagree with the items
// that follow, pads that are not zero. Everything is drawn from one seeded generator, so a
// run replays from its seed.
import { mulberry32 } from '../../seeded-random.js';
import * as abi from '../../../lib/kernel/udmabuf-abi.js';

export const PAGE = 4096;

export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** 0 ≤ n < bound. */
  int(bound: number): number {
    return Math.floor(this.next() * bound);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  u32(): number {
    return (this.next() * 0x1_0000_0000) >>> 0;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

/** 64-bit values at the edges of what the driver checks: alignment, overflow, limits. */
const EDGE64: readonly bigint[] = [
  0n, 1n, BigInt(PAGE - 1), BigInt(PAGE), BigInt(PAGE + 1), 2n << 20n, (2n << 20n) - BigInt(PAGE), 64n << 20n, (64n << 20n) + BigInt(PAGE),
  1n << 31n, 1n << 32n, (1n << 32n) - BigInt(PAGE), 1n << 62n, 1n << 63n, (1n << 63n) - BigInt(PAGE), (1n << 64n) - 1n, (1n << 64n) - BigInt(PAGE),
];
const EDGE32: readonly number[] = [0, 1, 2, 3, 0x7f, 0x80, 0xff, 1024, 1025, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
const BAD_FLAGS: readonly number[] = [2, 0x80, 0x8000_0000, 0xffff_ffff];

/** A memfd number for an item: mostly one of the pool's, sometimes anything. */
export function memfdNumber(rng: Rng, pool: () => number, device: number): number {
  if (rng.chance(0.9)) return pool();
  return rng.pick([device, 0, 1, 2, 0x7fff_ffff, 0xffff_ffff, rng.int(256)]);
}

/** A page-aligned range inside a 2 MiB memfd, mostly small; sometimes past its end or unaligned. */
export function itemRange(rng: Rng): { offset: bigint; size: bigint } {
  const pages = 512;
  const offsetPages = rng.chance(0.5) ? 0 : rng.int(pages);
  const sizePages = 1 + (rng.chance(0.8) ? rng.int(16) : rng.int(pages));
  let offset = BigInt(offsetPages * PAGE);
  let size = BigInt(sizePages * PAGE);
  if (rng.chance(0.05)) offset = rng.chance(0.5) ? rng.pick(EDGE64) : offset + BigInt(1 + rng.int(PAGE - 1));
  if (rng.chance(0.05)) size = rng.chance(0.5) ? rng.pick(EDGE64) : size + BigInt(1 + rng.int(PAGE - 1));
  return { offset, size };
}

export function createItem(rng: Rng, memfd: () => number): abi.CreateItem {
  return { memfd: memfd(), ...itemRange(rng) };
}

/** Create flags: mostly valid (so most calls get past the flag check), sometimes unknown bits. */
export const flags = (rng: Rng): number => (rng.chance(0.9) ? rng.pick([abi.UDMABUF_FLAGS_CLOEXEC, 0]) : rng.pick(BAD_FLAGS));

/** Flips bytes, or sets one aligned 32- or 64-bit field to an edge value. */
export function mutate(rng: Rng, bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const times = 1 + rng.int(3);
  for (let i = 0; i < times && bytes.length > 0; i++) {
    switch (rng.int(3)) {
      case 0:
        bytes[rng.int(bytes.length)] ^= 1 << rng.int(8);
        break;
      case 1:
        if (bytes.length >= 4) view.setUint32(4 * rng.int(bytes.length >> 2), rng.pick(EDGE32), true);
        break;
      default:
        if (bytes.length >= 8) view.setBigUint64(8 * rng.int(bytes.length >> 3), rng.pick(EDGE64), true);
    }
  }
  return bytes;
}

/** An item count for a list header: usually the real one, sometimes more, fewer or absurd. */
export function listCount(rng: Rng, real: number): number {
  if (rng.chance(0.9)) return real;
  return rng.pick([0, real + 1, real + 100, Math.max(0, real - 1), 1024, 1025, 0x0555_5556, 0xffff_ffff]);
}

/** Sets item i's __pad (offset 4 within the item) to a non-zero value. */
export function setItemPad(bytes: Uint8Array, headSize: number, index: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(headSize + 24 * index + 4, value, true);
}

/**
 * User addresses that are not a buffer: NULL, low pages, an unmapped hole, the kernel's half,
 * the vsyscall page, non-canonical. The kernel must answer EFAULT without touching them.
 */
export const BAD_POINTERS: readonly bigint[] = [0n, 1n, 0xfffn, 0x1000n, 0x10_0000n, 0x7fff_ffff_f000n, 0xffff_8880_0000_0000n, 0xffff_ffff_ff60_0000n, 0x8000_0000_0000_0000n, (1n << 64n) - 1n];

/** An ioctl request number of type `type` with random direction, number and size. */
export function randomRequest(rng: Rng, type: string): number {
  const dir = rng.int(4);
  const size = rng.chance(0.5) ? rng.pick([0, 4, 8, 16, 24, 32]) : rng.int(1 << 14);
  const nr = rng.chance(0.5) ? rng.int(8) : rng.chance(0.5) ? 0x80 + rng.int(8) : rng.int(256);
  return ((dir << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}
