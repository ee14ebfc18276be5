// The guest's 2D resources and their backing, with the caps that bound what a guest can make
// the back end hold: how many resources, how large each may be, and how many bytes of guest
// RAM all backings together may name (each becomes pinned pages once exported).
import { virtioGpuFormat } from '../../lib/formats/virtio-gpu.js';
import type { MemEntry } from '../../lib/guest/surface-layout.js';
import type { VhostMemoryMap } from '../vhost-user/memory-map.js';
import { Response, type ErrorResponse } from './virtio-gpu-protocol.js';

export interface GpuLimits {
  /** Live resources at once (QEMU has no cap; a guest could make millions). */
  maxResources: number;
  /** Largest width or height (QEMU's 2D path: 16384). */
  maxDimension: number;
  /** Largest stride × height of one resource. */
  maxResourceBytes: number;
  /** Guest RAM all attached backings together may name. */
  maxBackingBytes: number;
  /** Host memory all copy-on-transfer images together may take. */
  maxHostCopyBytes: number;
}

export const DEFAULT_GPU_LIMITS: Readonly<GpuLimits> = {
  maxResources: 1024,
  maxDimension: 16384,
  maxResourceBytes: 256 << 20,
  maxBackingBytes: 1024 << 20,
  maxHostCopyBytes: 512 << 20,
};

export interface Resource2D {
  readonly id: number;
  readonly format: number;
  readonly width: number;
  readonly height: number;
  /** Bytes per line: width × bytes per pixel (QEMU's 2D layout). */
  readonly stride: number;
  readonly bytesPerPixel: number;
  backing: MemEntry[] | null;
  backingBytes: number;
}

/** A refused command: the spec's error response and why (for the warning). */
export class CommandRefused extends Error {
  constructor(readonly response: ErrorResponse, message: string) {
    super(message);
  }
}

export class ResourceTable {
  readonly limits: GpuLimits;
  readonly #resources = new Map<number, Resource2D>();
  #backingBytes = 0;

  constructor(limits: Partial<GpuLimits> = {}) {
    this.limits = { ...DEFAULT_GPU_LIMITS, ...limits };
  }

  get count(): number {
    return this.#resources.size;
  }

  /** Bytes of guest RAM all attached backings name. */
  get backingBytes(): number {
    return this.#backingBytes;
  }

  get(id: number): Resource2D {
    const resource = id === 0 ? undefined : this.#resources.get(id);
    if (!resource) throw new CommandRefused(Response.ERR_INVALID_RESOURCE_ID, `resource ${id} does not exist`);
    return resource;
  }

  has(id: number): boolean {
    return this.#resources.has(id);
  }

  create(id: number, format: number, width: number, height: number): Resource2D {
    if (id === 0) throw new CommandRefused(Response.ERR_INVALID_RESOURCE_ID, 'resource id 0 is reserved');
    if (this.#resources.has(id)) throw new CommandRefused(Response.ERR_INVALID_RESOURCE_ID, `resource ${id} already exists`);
    let bytesPerPixel: number;
    try {
      bytesPerPixel = virtioGpuFormat(format).bytesPerPixel;
    } catch {
      throw new CommandRefused(Response.ERR_INVALID_PARAMETER, `format ${format} is not a virtio-gpu 2D format`);
    }
    const { maxDimension, maxResourceBytes, maxResources } = this.limits;
    if (width === 0 || height === 0 || width > maxDimension || height > maxDimension) {
      throw new CommandRefused(Response.ERR_INVALID_PARAMETER, `${width}×${height} is outside 1×1 to ${maxDimension}×${maxDimension}`);
    }
    const stride = width * bytesPerPixel;
    if (stride * height > maxResourceBytes) throw new CommandRefused(Response.ERR_OUT_OF_MEMORY, `${width}×${height} needs ${stride * height} bytes, over the ${maxResourceBytes}-byte cap per resource`);
    if (this.#resources.size >= maxResources) throw new CommandRefused(Response.ERR_OUT_OF_MEMORY, `the guest already has ${maxResources} resources, the cap`);
    const resource: Resource2D = { id, format, width, height, stride, bytesPerPixel, backing: null, backingBytes: 0 };
    this.#resources.set(id, resource);
    return resource;
  }

  unref(id: number): Resource2D {
    const resource = this.get(id);
    this.detach(resource);
    this.#resources.delete(id);
    return resource;
  }

  /** Attaches checked backing entries: each one wholly inside guest RAM and non-empty, all under the backing cap. */
  attach(resource: Resource2D, entries: MemEntry[], memory: VhostMemoryMap | null): void {
    if (resource.backing) throw new CommandRefused(Response.ERR_UNSPEC, `resource ${resource.id} already has backing`);
    if (!memory) throw new CommandRefused(Response.ERR_UNSPEC, 'there is no guest memory table');
    let bytes = 0;
    entries.forEach((entry, i) => {
      const length = Number(entry.length);
      if (length === 0 || !memory.guestView(entry.addr, length)) {
        throw new CommandRefused(Response.ERR_UNSPEC, `backing entry ${i} (${entry.addr}+${length}) of resource ${resource.id} is empty or not inside guest RAM`);
      }
      bytes += length;
    });
    if (this.#backingBytes + bytes > this.limits.maxBackingBytes) {
      throw new CommandRefused(Response.ERR_OUT_OF_MEMORY, `backing of ${bytes} bytes would take the guest past ${this.limits.maxBackingBytes} bytes of attached backing`);
    }
    resource.backing = entries;
    resource.backingBytes = bytes;
    this.#backingBytes += bytes;
  }

  detach(resource: Resource2D): void {
    this.#backingBytes -= resource.backingBytes;
    resource.backing = null;
    resource.backingBytes = 0;
  }

  clear(): void {
    this.#resources.clear();
    this.#backingBytes = 0;
  }

  values(): IterableIterator<Resource2D> {
    return this.#resources.values();
  }
}

/** Reads byte ranges of a scatter-list backing through the memory map. */
export class BackingReader {
  readonly #memory: VhostMemoryMap;
  readonly #entries: readonly MemEntry[];
  /** Where each entry starts in the backing (for the binary search per row). */
  readonly #starts: number[];

  constructor(memory: VhostMemoryMap, entries: readonly MemEntry[]) {
    this.#memory = memory;
    this.#entries = entries;
    let at = 0;
    this.#starts = entries.map((entry) => {
      const start = at;
      at += Number(entry.length);
      return start;
    });
  }

  /** Fills `into` from backing offset `from`; false when a piece is not guest RAM (or the backing is short). */
  copy(from: number, into: Uint8Array): boolean {
    let i = this.#entryAt(from);
    let filled = 0;
    while (filled < into.length) {
      const entry = this.#entries[i];
      if (!entry) return false;
      const inEntry = from + filled - this.#starts[i]!;
      const take = Math.min(Number(entry.length) - inEntry, into.length - filled);
      if (take <= 0) return false; // `from` lies past the backing's end
      const view = this.#memory.guestView(Number(entry.addr) + inEntry, take);
      if (!view) return false;
      into.set(view, filled);
      filled += take;
      i++;
    }
    return true;
  }

  #entryAt(offset: number): number {
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

/** Copies `length` bytes from `offset` of a resource's backing (through the memory map); null if the backing is short. */
export function readBacking(memory: VhostMemoryMap, entries: readonly MemEntry[], offset: number, length: number): Uint8Array | null {
  const out = new Uint8Array(length);
  return length === 0 || (entries.length > 0 && new BackingReader(memory, entries).copy(offset, out)) ? out : null;
}
