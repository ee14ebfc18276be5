// Raw udmabuf ioctls, kselftest-style: no library checks in the way, so each case sees exactly
// what the kernel answers.
import { openSync } from 'node:fs';
import { native } from '../../../lib/core/native.js';
import * as L from '../../../lib/core/linux.js';
import * as abi from '../../../lib/kernel/udmabuf-abi.js';
import * as dmaBufAbi from '../../../lib/kernel/dma-buf-abi.js';
import { mapShared as libMapShared, unmap } from '../../../lib/fd/mapping.js';

export const PAGE = L.PAGE_SIZE;

export interface RawItem {
  memfd: number;
  offset: number | bigint;
  size: number | bigint;
}

const item = (i: RawItem): abi.CreateItem => ({ memfd: i.memfd, offset: BigInt(i.offset), size: BigInt(i.size) });

export function openDevice(path: string): number {
  return openSync(path, 'r+');
}

export function create(dev: number, i: RawItem, flags = abi.UDMABUF_FLAGS_CLOEXEC): number {
  return native.ioctl(dev, abi.UDMABUF_CREATE, abi.encodeCreate(flags, item(i)));
}

export function createList(dev: number, items: RawItem[], flags = abi.UDMABUF_FLAGS_CLOEXEC, count = items.length): number {
  return native.ioctl(dev, abi.UDMABUF_CREATE_LIST, abi.encodeCreateList(flags, items.map(item), count));
}

/** 'OK' or the errno name the call threw. */
export function attempt(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (!code) throw err;
    return code;
  }
}

/** Like attempt() for calls that return a new fd, which is closed at once. */
export const outcome = (fn: () => number): string => attempt(() => native.close(fn()));

/** Adds seals to a memfd: 'OK' or the errno (F_SEAL_WRITE fails EBUSY while pages are pinned). */
export const addSeals = (fd: number, seals: number): string => attempt(() => native.addSeals(fd, seals));

/** One DMA_BUF_IOCTL_SYNC: 'OK' or the errno. */
export const syncBuffer = (buf: number, flags: number): string => attempt(() => native.ioctl(buf, dmaBufAbi.DMA_BUF_IOCTL_SYNC, dmaBufAbi.encodeSync(flags)));

/** A sealable memfd of `size` bytes with the given seals, not yet written. */
export function memfd(size: number | bigint, seals = L.F_SEAL_SHRINK, hugetlb = false): number {
  const flags = L.MFD_CLOEXEC | L.MFD_ALLOW_SEALING | (hugetlb ? L.MFD_HUGETLB | L.MFD_HUGE_2MB : 0);
  const fd = native.memfdCreate('udmabuf-test', flags);
  native.ftruncate(fd, size);
  if (seals) native.addSeals(fd, seals);
  return fd;
}

export function mapShared(fd: number, size: number, write = true): Uint8Array {
  return libMapShared(fd, size, L.PROT_READ | (write ? L.PROT_WRITE : 0), L.MAP_SHARED);
}

export { unmap as unmapView };

/** Fills with a pattern that differs per page and per byte, derived from `seed`. */
export function fillPattern(view: Uint8Array, seed: number): void {
  for (let i = 0; i < view.length; i += 4) {
    const v = (Math.imul((i >>> 2) + 1, 2654435761) ^ seed) >>> 0;
    view[i] = v & 0xff;
    view[i + 1] = (v >>> 8) & 0xff;
    view[i + 2] = (v >>> 16) & 0xff;
    view[i + 3] = v >>> 24;
  }
}

export { native };
