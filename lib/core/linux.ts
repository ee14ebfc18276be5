// Linux constants the library passes to the addon (x86-64 and arm64 values agree).
import { native } from './native.js';

export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const MFD_HUGETLB = 0x4;
export const MFD_HUGE_SHIFT = 26;
export const MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT;
export const MFD_HUGE_1GB = 30 << MFD_HUGE_SHIFT;

export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;

export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x1;
export const MAP_PRIVATE = 0x2;

export const FALLOC_FL_KEEP_SIZE = 0x1;
export const FALLOC_FL_PUNCH_HOLE = 0x2;

/** The system's page size (sysconf(_SC_PAGESIZE)): 4096 on x86-64, 4K, 16K or 64K on arm64. */
export const PAGE_SIZE: number = native.PAGE_SIZE;

/** _IOC(dir, type, nr, size) for the asm-generic layout (x86-64, arm64). */
export function ioc(dir: 'none' | 'w' | 'r' | 'rw', type: string, nr: number, size: number): number {
  const bits = { none: 0, w: 1, r: 2, rw: 3 }[dir];
  return ((bits << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}
