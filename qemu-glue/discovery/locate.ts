// Which of QEMU's memfds holds which memory backend. Evidence, strongest first: a backend's
// host address from `info ramblock` (QEMU 8+) falls in a shared mapping whose inode is one of
// the memfds; else a memfd of exactly the backend's size that QEMU maps shared, when exactly
// one fits. Anything else is ambiguous, and the caller must name the fds.
import { GuestDmabufError } from '../../lib/core/errors.js';
import type { MemoryBackend } from './backends.js';
import type { ProcMapping, ProcMemfd } from './proc-fds.js';

export interface Located {
  memfd: ProcMemfd;
  evidence: 'named' | 'host-address' | 'size';
}

export function locateBackends(
  pid: number,
  backends: readonly MemoryBackend[],
  memfds: readonly ProcMemfd[],
  mappings: readonly ProcMapping[],
  hvas: ReadonlyMap<string, bigint>,
  named: Readonly<Record<string, number>> = {},
): Map<string, Located> {
  const located = new Map<string, Located>();
  const taken = new Set<ProcMemfd>();
  const shared = mappings.filter((m) => m.shared);
  const mappedInodes = new Set(shared.map((m) => m.ino));
  for (const backend of backends) {
    const fd = named[backend.id];
    if (fd === undefined) continue;
    const memfd = memfds.find((m) => m.fd === fd);
    if (!memfd) throw new GuestDmabufError(`fd ${fd}, named for backend '${backend.id}', is not a memfd of process ${pid}: check /proc/${pid}/fd`, 'ERR_QEMU_MEMFD_NOT_FOUND');
    located.set(backend.id, { memfd, evidence: 'named' });
    taken.add(memfd);
  }
  for (const backend of backends) {
    if (located.has(backend.id)) continue;
    const hva = hvas.get(backend.id);
    if (hva === undefined) continue;
    const mapping = shared.find((m) => m.start <= hva && hva < m.end);
    const memfd = mapping && memfds.find((m) => m.ino === mapping.ino && !taken.has(m));
    if (memfd) {
      located.set(backend.id, { memfd, evidence: 'host-address' });
      taken.add(memfd);
    }
  }
  for (const backend of backends) {
    if (located.has(backend.id)) continue;
    const fits = memfds.filter((m) => !taken.has(m) && m.size === backend.size && mappedInodes.has(m.ino));
    const list = (ms: readonly ProcMemfd[]): string => ms.map((m) => `fd ${m.fd} ${m.name} (${m.size} bytes)`).join(', ') || 'none';
    if (fits.length === 0) {
      throw new GuestDmabufError(`no memfd of process ${pid} holds backend '${backend.id}' (${backend.size} bytes, mapped shared); its memfds: ${list(memfds)}. Is this the QEMU behind the QMP socket, and is the backend memfd-backed with share=on?`, 'ERR_QEMU_MEMFD_NOT_FOUND');
    }
    if (fits.length > 1) {
      throw new GuestDmabufError(`cannot tell which memfd of process ${pid} holds backend '${backend.id}': ${list(fits)} all fit its size. Name them: discoverGuestMemory(qmp, { qemuFds: { '${backend.id}': <fd number in QEMU> } })`, 'ERR_QEMU_MEMFD_AMBIGUOUS');
    }
    located.set(backend.id, { memfd: fits[0]!, evidence: 'size' });
    taken.add(fits[0]!);
  }
  return located;
}
