// The native addon, typed. Every function is one syscall or ioctl; errors are Node-style
// system errors (code, errno, syscall). Policy lives in the modules that use this.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Integer64 = number | bigint;

export interface Native {
  close(fd: number): void;
  dup(fd: number): number;
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, size: Integer64): void;
  fallocate(fd: number, mode: number, offset: Integer64, length: Integer64): void;
  getSeals(fd: number): number;
  addSeals(fd: number, seals: number): void;
  ioctl(fd: number, request: number, arg?: Uint8Array | Integer64): number;
  mmap(fd: number, length: Integer64, prot: number, flags: number, offset: Integer64): ArrayBuffer;
  munmap(buffer: ArrayBuffer): void;
  pidfdOpen(pid: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
}

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
export const native: Native = createRequire(import.meta.url)(join(root, 'build', 'Release', 'guest_dmabuf_addon.node')) as Native;
