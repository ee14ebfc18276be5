// Where a guest surface's pixels are: from a backing scatter list and a pixel layout to the
// memfd items of the smallest page-aligned buffer holding them, and the plane's offset in it.
// Pure arithmetic, no device: the exports in surface.ts create the buffer.
import { SurfaceError } from '../core/errors.js';
import { drmFormat, type DrmFormat } from '../formats/drm.js';
import type { DriverLimits } from '../kernel/driver-limits.js';
import type { GuestMemory, GuestRange, MemfdItem } from './guest-memory.js';
import { hex, integerIn, safeNumber, type Size } from '../core/integers.js';

/** A virtio_gpu_mem_entry: `length` bytes of guest memory at guest-physical `addr`. */
export interface MemEntry {
  addr: Size;
  length: Size;
}

/**
 * Where a surface lives in guest memory: a scatter list the guest presents as one linear
 * allocation (iovecs, or a virtio-gpu resource's mem entries), or contiguous guest-physical
 * memory from `gpa` on.
 */
export type Backing = readonly GuestRange[] | readonly MemEntry[] | { gpa: Size };

/** A single-plane linear surface inside a backing. */
export interface SurfaceLayout {
  width: number;
  height: number;
  /** Bytes from one line's start to the next; at least width × bytes per pixel. */
  stride: number;
  /** A DRM format: fourcc value, code (`'XR24'`) or name (`'XRGB8888'`). */
  format: number | string | DrmFormat;
  /** Where the first pixel is, in bytes from the backing's start. Default 0. */
  offset?: number;
}

export interface SurfacePlan {
  format: DrmFormat;
  width: number;
  height: number;
  stride: number;
  /** The first pixel's offset inside the buffer (non-zero when it is not on a page boundary). */
  planeOffset: number;
  /** The buffer's memfd items, page-aligned and merged (frozen). */
  items: readonly MemfdItem[];
  /** The buffer's size in bytes: whole pages from the first pixel's page to the last pixel's. */
  size: bigint;
}

/** A layout number in [min, 2^53): a guest's mode is checked like any argument, but reported as a SurfaceError. */
function layoutInteger(value: number, min: number, what: string): number {
  try {
    return integerIn(value, min, Number.MAX_SAFE_INTEGER, what);
  } catch (err) {
    throw new SurfaceError((err as Error).message);
  }
}

/**
 * Plans the buffer for `layout` inside `backing`. Only the bytes from the first pixel to the
 * last line's end are needed (the last line is width × bytes per pixel, not a whole stride);
 * they are rounded out to pages, since udmabuf exports whole pages.
 */
export function planSurface(memory: GuestMemory, backing: Backing, layout: SurfaceLayout, limits?: DriverLimits): SurfacePlan {
  const format = typeof layout.format === 'object' ? layout.format : drmFormat(layout.format);
  const width = layoutInteger(layout.width, 1, 'width');
  const height = layoutInteger(layout.height, 1, 'height');
  const stride = layoutInteger(layout.stride, 1, 'stride');
  const offset = layoutInteger(layout.offset ?? 0, 0, 'offset');
  const lineBytes = width * format.bytesPerPixel;
  if (stride < lineBytes) {
    throw new SurfaceError(`stride ${stride} is less than one line of ${width} ${format.name} pixels (${width} × ${format.bytesPerPixel} = ${lineBytes} bytes)`);
  }
  const end = offset + (height - 1) * stride + lineBytes;
  if (!Number.isSafeInteger(end)) {
    throw new SurfaceError(`a ${width}x${height} surface with stride ${stride} at offset ${offset} ends past 2^53 bytes: the guest gave an impossible mode`);
  }
  const { items, head, covered } = translateBacking(memory, backing, offset, end, limits);
  if (covered < end) {
    throw new SurfaceError(
      `the surface needs backing bytes up to ${hex(end)} (offset ${offset} + the last line's end), but the backing holds only ${hex(covered)} bytes: check width, height, stride and offset against the resource's backing`,
    );
  }
  const size = items.reduce((sum, item) => sum + item.size, 0n);
  // Frozen: a cache may key on this list once and trust it afterwards.
  for (const item of items) Object.freeze(item);
  return { format, width, height, stride, planeOffset: head, items: Object.freeze(items), size };
}

/** Bytes [start, end) of `backing`, rounded out to whole pages, as memfd items. */
function translateBacking(memory: GuestMemory, backing: Backing, start: number, end: number, limits: DriverLimits | undefined): ReturnType<GuestMemory['translateWindow']> {
  const options = limits ? { limits } : {};
  if (!Array.isArray(backing)) {
    const gpa = safeNumber((backing as { gpa: Size }).gpa, 'gpa');
    return memory.translateWindow([{ gpa, length: end }], 'gpa', start, end, true, options);
  }
  if (backing.length === 0) throw new SurfaceError('the backing has no entries: attach backing before exporting');
  return 'addr' in backing[0]
    ? memory.translateWindow(backing as readonly MemEntry[], 'addr', start, end, true, options)
    : memory.translateWindow(backing as readonly GuestRange[], 'gpa', start, end, true, options);
}
