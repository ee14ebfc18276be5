// Memory mappings as Uint8Array views. A view stays valid until unmap(); unmapping detaches
// its buffer, so later access reads nothing instead of touching freed memory.
import { native } from '../core/native.js';

/** Unmaps a view returned by `Memfd.map()` or `DmaBuf.map()`. Idempotent. */
export function unmap(view: Uint8Array): void {
  native.munmap(view.buffer as ArrayBuffer);
}

/** True once `unmap()` was called on the view (or its buffer was otherwise detached). */
export function isUnmapped(view: Uint8Array): boolean {
  return (view.buffer as ArrayBuffer).byteLength === 0;
}

export function mapShared(fd: number, length: number, prot: number, flags: number): Uint8Array {
  return new Uint8Array(native.mmap(fd, length, prot, flags, 0));
}
