// QEMU's memory backends as QMP reports them: `query-memdev` gives id, size and share; the
// QOM type (memfd, file, ram) comes from `qom-get /objects/<id> type`.
import type { QmpClient } from '../qmp/client.js';

export interface MemoryBackend {
  id: string;
  size: bigint;
  share: boolean;
  /** QOM type: 'memory-backend-memfd', 'memory-backend-file', 'memory-backend-ram', ... */
  type: string;
}

interface MemdevInfo {
  id?: string;
  size: number;
  share: boolean;
}

export async function queryBackends(qmp: QmpClient, signal?: AbortSignal): Promise<MemoryBackend[]> {
  const memdevs = await qmp.execute<MemdevInfo[]>('query-memdev', undefined, { signal });
  const backends: MemoryBackend[] = [];
  for (const memdev of memdevs) {
    // query-memdev omits the id of backends made without one (none in practice since 4.0).
    if (memdev.id === undefined) continue;
    const type = await qmp.execute<string>('qom-get', { path: `/objects/${memdev.id}`, property: 'type' }, { signal });
    backends.push({ id: memdev.id, size: BigInt(memdev.size), share: memdev.share, type });
  }
  return backends;
}

/** Why this backend's RAM cannot become dma-bufs, with how to start QEMU instead; undefined when it can. */
export function unshareableReason(backend: MemoryBackend): string | undefined {
  const fix = `start QEMU with \`-object memory-backend-memfd,id=${backend.id},size=${backend.size},share=on\` (and \`-machine memory-backend=${backend.id}\` for main RAM)`;
  if (backend.type !== 'memory-backend-memfd' && backend.type !== 'memory-backend-file') {
    return `guest RAM backend '${backend.id}' is ${backend.type}, which has no memfd to export: ${fix}`;
  }
  if (!backend.share) return `guest RAM backend '${backend.id}' is not share=on, so QEMU's copy of guest RAM is private: ${fix}`;
  return undefined;
}
