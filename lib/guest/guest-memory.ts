// GuestMemory: the guest-physical RAM map of a VM (which GPA ranges live at which memfd offsets)
// and the translation of guest scatter lists into the memfd items udmabuf takes.
//
// Arithmetic runs on JS numbers, not bigints: GPAs and memfd offsets stay far below 2^53
// (x86 and arm64 physical addresses are at most 52 bits), and a 4K frame given page by page
// is 8100 iovecs that must translate in well under a millisecond. Results are bigints, like
// every size the library returns.
import { TranslationError } from '../core/errors.js';
import { exceededLimit, type DriverLimits } from '../kernel/driver-limits.js';
import { PAGE_SIZE } from '../core/linux.js';
import { Memfd } from '../kernel/memfd.js';
import { hex, isSafeSize, safeNumber, type Size } from '../core/integers.js';

/** One guest RAM block: `size` bytes at guest-physical `gpa`, kept in `memfd` from `offset`. */
export interface RamRegion {
  gpa: Size;
  size: Size;
  memfd: Memfd | number;
  offset: Size;
  /** For messages: the backend or block name (`pc.ram`, `mem0`, `dimm1`). */
  name?: string;
}

/** A guest scatter-list entry: a virtio iovec (virtio-gpu mem entries, `{ addr, length }`, are `MemEntry`). */
export interface GuestRange {
  gpa: Size;
  length: Size;
}

/** A piece of a memfd, as udmabuf's create takes it. */
export interface MemfdItem {
  memfd: Memfd | number;
  offset: bigint;
  size: bigint;
}


export interface TranslateOptions {
  /** Refuse scatter lists that need more items or bytes than these. */
  limits?: DriverLimits;
  /**
   * Require every item to start and end on a page boundary, as udmabuf does. Default true;
   * false translates any byte range (for reading guest memory through the memfd).
   */
  pageAligned?: boolean;
}

interface Region {
  gpa: number;
  end: number;
  memfd: Memfd | number;
  offset: number;
  name: string;
}

/** An item under construction, with the iovecs that opened and closed it (for messages). */
interface Piece {
  memfd: Memfd | number;
  offset: number;
  size: number;
  firstIovec: number;
  firstGpa: number;
  lastIovec: number;
  lastGpaEnd: number;
}

const PAGE = PAGE_SIZE;

export class GuestMemory {
  readonly #regions: Region[];
  /** Region starts, sorted, for the binary search. */
  readonly #starts: number[];

  /** `regions` in any order; they must not overlap in guest-physical space and must be page-aligned. */
  constructor(regions: readonly RamRegion[]) {
    if (regions.length === 0) throw new TranslationError('a GuestMemory needs at least one RAM region', 'ERR_INVALID_ARG_VALUE');
    const parsed = regions.map((r, i): Region => {
      const name = r.name ?? `region ${i}`;
      const what = (field: string): string => `RAM region ${i} (${name}) ${field}`;
      const gpa = field(r.gpa, what('gpa'));
      const size = field(r.size, what('size'));
      const offset = field(r.offset, what('offset'));
      if (size === 0) throw new TranslationError(`${what('size')} is 0`, 'ERR_INVALID_ARG_VALUE');
      for (const [field, value] of [['gpa', gpa], ['size', size], ['offset', offset]] as const) {
        if (value % PAGE) throw new TranslationError(`${what(field)} ${hex(value)} is not page-aligned (${PAGE}): QEMU RAM blocks always are; check the map`, 'ERR_INVALID_ARG_VALUE');
      }
      if (!Number.isSafeInteger(gpa + size)) throw new TranslationError(`${what('end')} is past 2^53`, 'ERR_INVALID_ARG_VALUE');
      if (r.memfd instanceof Memfd && BigInt(offset + size) > r.memfd.size) {
        throw new TranslationError(`${what('')}runs to memfd offset ${hex(offset + size)}, past the memfd's end (${hex(r.memfd.size)})`, 'ERR_INVALID_ARG_VALUE');
      }
      return { gpa, end: gpa + size, memfd: r.memfd, offset, name };
    });
    parsed.sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < parsed.length; i++) {
      const [a, b] = [parsed[i - 1]!, parsed[i]!];
      if (b.gpa < a.end) throw new TranslationError(`RAM regions overlap: ${describe(a)} and ${describe(b)}`, 'ERR_INVALID_ARG_VALUE');
    }
    this.#regions = parsed;
    this.#starts = parsed.map((r) => r.gpa);
  }

  /** The regions, sorted by guest-physical address. */
  get regions(): RamRegion[] {
    return this.#regions.map(ramRegion);
  }

  /** Total guest RAM in bytes. */
  get size(): bigint {
    return BigInt(this.#regions.reduce((sum, r) => sum + r.end - r.gpa, 0));
  }

  /**
   * The memfd items holding `iovecs`, in order: split where RAM regions end, adjacent pieces of
   * the same memfd merged (also across regions: RAM split around the 4 GiB hole is usually one
   * memfd), so the result has the fewest items that describe the bytes.
   */
  translate(iovecs: readonly GuestRange[], options: TranslateOptions = {}): MemfdItem[] {
    if (iovecs.length === 0) throw new TranslationError('the scatter list is empty: a buffer needs at least one guest range', 'ERR_INVALID_RANGE');
    const { items } = this.translateWindow(iovecs, 'gpa', 0, Number.MAX_SAFE_INTEGER, false, options);
    return items;
  }

  /**
   * The translation behind `translate` and the surface exports, in one pass over the list (a
   * 4K frame given page by page is 8100 entries): only bytes [start, end) of the list's
   * concatenation, read from each entry's `key` field ('gpa' for iovecs, 'addr' for virtio
   * mem entries). With `roundOut` the window grows to whole pages: `head` is how far its first
   * byte then lies into the first item. `covered` is where the list ended, if before `end`
   * (then nothing was checked: the caller reports the short list).
   */
  translateWindow<K extends string>(
    list: readonly ({ readonly [key in K]: Size } & { readonly length: Size })[],
    key: K,
    start: number,
    end: number,
    roundOut: boolean,
    options: TranslateOptions = {},
  ): { items: MemfdItem[]; head: number; covered: number } {
    const noun = key === 'gpa' ? 'iovec' : 'backing entry';
    const pieces: Piece[] = [];
    let last: Piece | undefined;
    let hint = 0;
    let head = 0;
    let at = 0; // where entry i starts in the list's concatenation
    for (let i = 0; i < list.length && at < end; i++) {
      if (last !== undefined) {
        // The common case, kept to locals: entries that continue the last piece in
        // guest-physical space, inside its region and wholly inside the window (a page-by-page
        // backing is thousands of them).
        const limit = this.#regions[hint]!.end;
        let gpaEnd = last.lastGpaEnd;
        let j = i;
        for (; j < list.length; j++) {
          const next = list[j]!;
          const bytes = next.length;
          if (next[key] !== gpaEnd || typeof bytes !== 'number' || !(bytes > 0) || !Number.isSafeInteger(bytes)) break;
          if (at < start || at + bytes >= end || gpaEnd + bytes > limit) break;
          gpaEnd += bytes;
          at += bytes;
        }
        if (j > i) {
          last.size += gpaEnd - last.lastGpaEnd;
          last.lastGpaEnd = gpaEnd;
          last.lastIovec = j - 1;
          i = j - 1;
          continue;
        }
      }
      const entry = list[i]!;
      const entryGpa = entry[key];
      const entryLength = entry.length;
      // The message is built only on the slow path: this loop runs once per guest page.
      const first = isSafeSize(entryGpa) ? entryGpa : field(entryGpa, `${noun} ${i} address`, i);
      const bytes = isSafeSize(entryLength) ? entryLength : field(entryLength, `${noun} ${i} length`, i);
      if (bytes === 0) throw new TranslationError(`${noun} ${i} (gpa ${hex(first)}) has length 0: drop empty entries from the scatter list`, 'ERR_INVALID_RANGE', { iovecIndex: i, gpa: first });
      if (!Number.isSafeInteger(first + bytes)) throw new TranslationError(`${noun} ${i} (gpa ${hex(first)}) ends past 2^53`, 'ERR_INVALID_RANGE', { iovecIndex: i, gpa: first });
      const from = Math.max(start, at);
      const to = Math.min(end, at + bytes);
      at += bytes;
      if (from >= to) continue;
      let gpa = first + (from - (at - bytes));
      let length = to - from;
      if (roundOut && pieces.length === 0) {
        head = gpa % PAGE;
        gpa -= head;
        length += head;
      }
      if (roundOut && to === end) length += (PAGE - ((gpa + length) % PAGE)) % PAGE;
      const pieceStart = gpa;
      while (length > 0) {
        // Scatter lists walk memory mostly forwards: try the last region before searching.
        let region = this.#regions[hint]!;
        if (gpa < region.gpa || gpa >= region.end) {
          const found = this.#find(gpa);
          const candidate = this.#regions[found];
          if (!candidate || gpa >= candidate.end) throw this.#outside(noun, i, gpa, pieceStart);
          hint = found;
          region = candidate;
        }
        const take = Math.min(length, region.end - gpa);
        const offset = region.offset + (gpa - region.gpa);
        if (last && last.memfd === region.memfd && last.offset + last.size === offset) {
          last.size += take;
          last.lastIovec = i;
          last.lastGpaEnd = gpa + take;
        } else {
          last = { memfd: region.memfd, offset, size: take, firstIovec: i, firstGpa: gpa, lastIovec: i, lastGpaEnd: gpa + take };
          pieces.push(last);
        }
        gpa += take;
        length -= take;
      }
    }
    const items = pieces.map((p) => ({ memfd: p.memfd, offset: BigInt(p.offset), size: BigInt(p.size) }));
    // A list that ends short of the window is the caller's error to report: its last piece is
    // cut, so alignment and limit errors would only mislead.
    if (at >= end || end === Number.MAX_SAFE_INTEGER) {
      if (options.pageAligned !== false) this.#checkAligned(pieces, noun);
      if (options.limits) checkLimits(items, options.limits);
    }
    return { items, head, covered: at };
  }

  /** udmabuf pins whole pages: every item must start and end on a page boundary. */
  #checkAligned(pieces: readonly Piece[], noun: string): void {
    for (const p of pieces) {
      if (p.offset % PAGE) {
        const region = this.#nearest(p.firstGpa);
        const joined = p.firstIovec > 0 ? ` and does not continue the previous ${noun} in memory` : '';
        throw new TranslationError(
          `${noun} ${p.firstIovec} starts at gpa ${hex(p.firstGpa)} in ${describe(region)}, which is not page-aligned${joined}: udmabuf pins whole ${PAGE}-byte pages, so every piece must start on a page boundary`,
          'ERR_INVALID_RANGE',
          { iovecIndex: p.firstIovec, gpa: p.firstGpa, nearestRegion: region.name },
        );
      }
      if ((p.offset + p.size) % PAGE) {
        const region = this.#nearest(p.lastGpaEnd - 1);
        throw new TranslationError(
          `${noun} ${p.lastIovec} ends at gpa ${hex(p.lastGpaEnd)} in ${describe(region)}, which is not page-aligned, and the next ${noun} does not continue it in memory: udmabuf pins whole ${PAGE}-byte pages, so every piece must end on a page boundary`,
          'ERR_INVALID_RANGE',
          { iovecIndex: p.lastIovec, gpa: p.lastGpaEnd, nearestRegion: region.name },
        );
      }
    }
  }

  /** Index of the last region starting at or below `gpa` (-1 when none does). */
  #find(gpa: number): number {
    let lo = 0;
    let hi = this.#starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.#starts[mid]! <= gpa) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  #outside(noun: string, index: number, gpa: number, start: number): TranslationError {
    const nearest = this.#nearest(gpa);
    const what = gpa === start ? `is not guest RAM: gpa ${hex(gpa)}` : `runs out of guest RAM: it starts at gpa ${hex(start)}, but ${hex(gpa)}`;
    return new TranslationError(
      `${noun} ${index} ${what} is in a hole or outside RAM; the nearest RAM region is ${describe(nearest)}. The guest named memory that is not RAM (MMIO, a hole, or a region missing from the map)`,
      'ERR_NOT_GUEST_RAM',
      { iovecIndex: index, gpa, nearestRegion: nearest.name },
    );
  }

  #nearest(gpa: number): Region {
    let best = this.#regions[0]!;
    let bestDistance = Infinity;
    for (const r of this.#regions) {
      const distance = gpa < r.gpa ? r.gpa - gpa : gpa >= r.end ? gpa - r.end + 1 : 0;
      if (distance < bestDistance) [best, bestDistance] = [r, distance];
    }
    return best;
  }

  /** The region holding `gpa`, or undefined in a hole. */
  regionAt(gpa: Size): RamRegion | undefined {
    const at = field(gpa, 'gpa');
    const r = this.#regions[this.#find(at)];
    if (!r || at >= r.end) return undefined;
    return ramRegion(r);
  }
}

/** A region as the public type shows it (bigints, like every size the library returns). */
function ramRegion(r: Region): RamRegion {
  return { gpa: BigInt(r.gpa), size: BigInt(r.end - r.gpa), memfd: r.memfd, offset: BigInt(r.offset), name: r.name };
}

/** A field as a number; a value that is not one is a TranslationError naming the entry. */
function field(value: Size, what: string, index?: number): number {
  try {
    return safeNumber(value, what);
  } catch (err) {
    throw new TranslationError((err as Error).message, index === undefined ? 'ERR_INVALID_ARG_VALUE' : 'ERR_INVALID_RANGE', { iovecIndex: index });
  }
}

function describe(r: Region): string {
  return `${r.name} (gpa ${hex(r.gpa)}-${hex(r.end - 1)})`;
}

/** Throws when `items` need more list entries or bytes than the driver allows. */
export function checkLimits(items: readonly MemfdItem[], limits: DriverLimits): void {
  const excess = exceededLimit(items, limits);
  if (!excess) return;
  const where = (param: string): string => (limits.parametersPath ? `${limits.parametersPath}/${param}` : `the module parameter ${param}`);
  const message =
    excess.limit === 'list_limit'
      ? `the scatter list needs ${excess.count} memfd items even after merging adjacent pieces, over the driver's list_limit of ${limits.listLimit}: raise ${where('list_limit')} to at least ${excess.count}`
      : `the scatter list covers ${excess.total} bytes, over the driver's size limit of ${limits.sizeLimitBytes} bytes (size_limit_mb ${limits.sizeLimitBytes >> 20n}): raise ${where('size_limit_mb')} to at least ${(excess.total + (1n << 20n) - 1n) >> 20n}`;
  throw new TranslationError(message, 'ERR_DRIVER_LIMIT', { limit: excess.limit });
}
