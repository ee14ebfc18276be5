// The kernel's own list of live dma-bufs (debugfs dma_buf/bufinfo): proof that a buffer was
// finally released (its release op ran, so its pages were unpinned), and of who is attached.
import { fstatSync, readFileSync } from 'node:fs';

const BUFINFO = '/sys/kernel/debug/dma_buf/bufinfo';

export function inodeOf(fd: number): number {
  return Number(fstatSync(fd).ino);
}

/** The bufinfo block of the dma-buf with inode `ino`, or undefined once it is released. */
export function bufinfoBlock(ino: number): string | undefined {
  const text = readFileSync(BUFINFO, 'utf8');
  const blocks = text.split(/\n(?=\d{8}\t)/);
  return blocks.find((b) => {
    const fields = b.split('\n')[0]!.split(/\s+/);
    return fields.length >= 6 && Number(fields[5]) === ino;
  });
}

export const isLive = (ino: number): boolean => bufinfoBlock(ino) !== undefined;

/** Inodes of every live dma-buf exported by `exporter` (all exporters when omitted). */
export function liveDmaBufs(exporter?: string): number[] {
  const text = readFileSync(BUFINFO, 'utf8');
  const inodes: number[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(/\s+/);
    if (!/^\d{8}$/.test(fields[0] ?? '') || fields.length < 6) continue;
    if (exporter === undefined || fields[4] === exporter) inodes.push(Number(fields[5]));
  }
  return inodes;
}

/** Names of devices attached to the dma-buf, from its bufinfo block. */
export function attachedDevices(ino: number): string[] {
  const block = bufinfoBlock(ino) ?? '';
  const at = block.indexOf('Attached Devices:');
  if (at < 0) return [];
  return block
    .slice(at)
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('Total'));
}

/** One row of guest_udmabuf's own debugfs list (udmabuf/debugfs.c). */
export interface OurBuffer {
  ino: number;
  pages: number;
  creatorPid: number;
  /** -1 when nothing was charged (CAP_IPC_LOCK, or accounting off). */
  chargedUid: number;
  chargedPages: number;
  releaseEventfd: boolean;
  /** Folio runs the buffer is made of (one per huge page for hugetlb). */
  extents: number;
}

export function ourBuffers(): OurBuffer[] {
  const [, ...rows] = readFileSync('/sys/kernel/debug/guest_udmabuf/buffers', 'utf8').trim().split('\n');
  return rows.map((row) => {
    const [ino, pages, creatorPid, chargedUid, chargedPages, releaseEventfd, extents] = row.split(' ').map(Number) as [number, number, number, number, number, number, number];
    return { ino, pages, creatorPid, chargedUid, chargedPages, releaseEventfd: releaseEventfd === 1, extents };
  });
}
