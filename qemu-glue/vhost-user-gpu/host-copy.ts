// Copy-on-transfer: a host-owned memfd per resource, which TRANSFER_TO_HOST_2D copies the
// guest's rectangle into and which is exported as the scanout's dma-buf instead of the guest's
// pages. What the display shows then changes only at TRANSFER (no tearing from a guest drawing
// into a shown buffer), and the guest's pages are never pinned or read by anyone else, so
// DETACH_BACKING needs no wait. The price is host memory (capped here) and the copy.
//
// The copy is QEMU's virtio_gpu_transfer_to_host_2d: row h of the rectangle comes from backing
// offset `offset + h × stride` and lands at ((y + h) × stride + x × bpp) in the image; a
// full-width rectangle is one block of height × stride bytes.
import { PAGE_SIZE } from '../../lib/core/linux.js';
import { unmap } from '../../lib/fd/mapping.js';
import { GuestMemory } from '../../lib/guest/guest-memory.js';
import type { MemEntry } from '../../lib/guest/surface-layout.js';
import { Memfd } from '../../lib/kernel/memfd.js';
import type { VhostMemoryMap } from '../vhost-user/memory-map.js';
import { BackingReader, CommandRefused, type Resource2D } from './resources.js';
import { Response, type Rect } from './virtio-gpu-protocol.js';

/** Host memory a resource's copy takes: its image rounded up to whole pages. */
export function hostCopySize(resource: Resource2D): number {
  return Math.ceil((resource.stride * resource.height) / PAGE_SIZE) * PAGE_SIZE;
}

/** One resource's host image: a sealed memfd (udmabuf needs F_SEAL_SHRINK) mapped here. */
export class HostCopy implements Disposable {
  readonly memfd: Memfd;
  /** Bytes of the memfd: stride × height rounded up to whole pages (udmabuf pins pages). */
  readonly size: number;
  /** The memfd as a one-region "guest memory" at address 0, so the usual exporter can take it. */
  readonly memory: GuestMemory;
  /** The backing entries to export: the whole memfd. */
  readonly entries: readonly MemEntry[];
  readonly #bytes: Uint8Array;

  constructor(resource: Resource2D) {
    this.size = hostCopySize(resource);
    // Grow sealed too: nothing may change the size of a file a dma-buf was made from.
    this.memfd = Memfd.create(`virtio-gpu resource ${resource.id}`, this.size, { seals: ['shrink', 'grow'] });
    try {
      this.#bytes = this.memfd.map();
    } catch (err) {
      this.memfd.close();
      throw err;
    }
    this.memory = new GuestMemory([{ gpa: 0, size: this.size, memfd: this.memfd, offset: 0, name: `host copy of resource ${resource.id}` }]);
    this.entries = Object.freeze([{ addr: 0, length: this.size }]);
  }

  /** The image's bytes (for tests and for the cursor, which QEMU also reads from its host image). */
  get bytes(): Uint8Array {
    return this.#bytes;
  }

  /**
   * Copies the checked rectangle from the resource's backing; returns the bytes copied, or
   * null when the backing no longer lies in guest RAM (a new memory table since ATTACH).
   * The caller has checked the rectangle against the resource and the reads against the backing.
   */
  transfer(memory: VhostMemoryMap, resource: Resource2D, rect: Rect, offset: number): number | null {
    const entries = resource.backing;
    if (!entries || rect.width === 0 || rect.height === 0) return 0;
    const reader = new BackingReader(memory, entries);
    const { stride, bytesPerPixel: bpp } = resource;
    if (rect.x === 0 && rect.width === resource.width) {
      const at = rect.y * stride;
      return reader.copy(offset, this.#bytes.subarray(at, at + rect.height * stride)) ? rect.height * stride : null;
    }
    const line = rect.width * bpp;
    for (let h = 0; h < rect.height; h++) {
      const at = (rect.y + h) * stride + rect.x * bpp;
      if (!reader.copy(offset + h * stride, this.#bytes.subarray(at, at + line))) return null;
    }
    return rect.height * line;
  }

  [Symbol.dispose](): void {
    unmap(this.#bytes);
    this.memfd.close();
  }
}

/** The host copies of all resources, under a cap on the host memory they take together. */
export class HostCopies {
  readonly #copies = new Map<number, HostCopy>();
  readonly #maxBytes: number;
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Host memory all copies take (memfd sizes). */
  get bytes(): number {
    return this.#bytes;
  }

  get(resourceId: number): HostCopy | undefined {
    return this.#copies.get(resourceId);
  }

  /** The resource's copy, made (all zeros, as QEMU's fresh host image) the first time; over the cap it is refused. */
  ensure(resource: Resource2D): HostCopy {
    const existing = this.#copies.get(resource.id);
    if (existing) return existing;
    const size = hostCopySize(resource);
    if (this.#bytes + size > this.#maxBytes) {
      throw new CommandRefused(Response.ERR_OUT_OF_MEMORY, `a ${size}-byte host copy of resource ${resource.id} would take copy-on-transfer past ${this.#maxBytes} bytes of host memory`);
    }
    let copy: HostCopy;
    try {
      copy = new HostCopy(resource);
    } catch (err) {
      throw new CommandRefused(Response.ERR_OUT_OF_MEMORY, `no host copy of resource ${resource.id}: ${(err as Error).message}`);
    }
    this.#copies.set(resource.id, copy);
    this.#bytes += copy.size;
    return copy;
  }

  drop(resourceId: number): void {
    const copy = this.#copies.get(resourceId);
    if (!copy) return;
    this.#copies.delete(resourceId);
    this.#bytes -= copy.size;
    copy[Symbol.dispose]();
  }

  clear(): void {
    for (const id of [...this.#copies.keys()]) this.drop(id);
  }
}
