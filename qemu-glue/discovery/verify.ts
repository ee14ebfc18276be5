// verifyMapping: a copy-based cross-check of a GuestMemory against QEMU itself. QEMU's
// pmemsave writes guest-physical bytes to a file; we read the same range through the memfds
// the map names. Equal bytes mean the map is right for that range (for bytes that differ
// between pages; an all-zero range proves little: write a pattern first).
import { mkdtempSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBigInt, type Size } from '../../lib/core/integers.js';
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import type { QmpClient } from '../qmp/client.js';

export interface VerifyResult {
  /** True when QEMU's bytes and the memfds' bytes are the same over the whole range. */
  matches: boolean;
  /** The first guest-physical address where they differ. */
  firstMismatch?: bigint;
}

/**
 * Compares [gpa, gpa + length) as QEMU reads it (pmemsave, into a temporary file QEMU must
 * be able to write: same machine, same /tmp) with the same range read through `memory`.
 */
export async function verifyMapping(qmp: QmpClient, memory: GuestMemory, gpa: Size, length: Size, options: { signal?: AbortSignal } = {}): Promise<VerifyResult> {
  const start = toBigInt(gpa, 'gpa');
  const size = Number(toBigInt(length, 'length'));
  const ours = new Uint8Array(size);
  let at = 0;
  for (const item of memory.translate([{ gpa: start, length: size }], { pageAligned: false })) {
    const fd = typeof item.memfd === 'number' ? item.memfd : item.memfd.fd;
    const want = Number(item.size);
    let done = 0;
    while (done < want) {
      const n = readSync(fd, ours, at + done, want - done, item.offset + BigInt(done));
      if (n === 0) break;
      done += n;
    }
    at += want;
  }
  const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-verify-'));
  let theirs: Uint8Array;
  try {
    const file = join(dir, 'pmemsave');
    await qmp.execute('pmemsave', { val: Number(start), size, filename: file }, { signal: options.signal });
    theirs = new Uint8Array(readFileSync(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (let i = 0; i < size; i++) {
    if (ours[i] !== theirs[i]) return { matches: false, firstMismatch: start + BigInt(i) };
  }
  return { matches: true };
}
