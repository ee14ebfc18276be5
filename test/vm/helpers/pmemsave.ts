// Guest-physical bytes as QEMU itself reads them (pmemsave into a temporary file): the
// reference the QEMU tests compare our exports with.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QmpClient } from '../../../lib/index.js';

export async function pmemsave(qmp: QmpClient, gpa: bigint, size: number): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-pmemsave-'));
  try {
    await qmp.execute('pmemsave', { val: Number(gpa), size, filename: join(dir, 'out') });
    return new Uint8Array(readFileSync(join(dir, 'out')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
