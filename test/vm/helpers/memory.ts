// Kernel memory counters the suites use to prove nothing stays pinned or allocated.
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';

export function meminfoKb(field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!match) throw new Error(`/proc/meminfo has no ${field}`);
  return Number(match[1]);
}

export const shmemKb = (): number => meminfoKb('Shmem');

export function freeHugePages(): number {
  return Number(/^HugePages_Free:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
}

/** Reserves 2 MiB huge pages in the guest (the suites run as root in the VM). */
export function reserveHugePages(count: number): void {
  writeFileSync('/proc/sys/vm/nr_hugepages', String(count));
  const got = Number(readFileSync('/proc/sys/vm/nr_hugepages', 'utf8'));
  if (got < count) throw new Error(`could reserve only ${got} of ${count} huge pages`);
}

/**
 * Open memfd and dma-buf fds of this process: the ones a leak in the code under test would
 * leave. (Node's own fds come and go with worker threads and child processes.)
 */
export function openFdCount(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return /memfd:|dmabuf/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false; // closed while listing
    }
  }).length;
}
