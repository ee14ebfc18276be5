// discoverGuestMemory: a running QEMU's guest RAM as a GuestMemory. QMP says which backends
// exist (query-memdev, qom-get) and where they sit in guest-physical space (`info mtree -f`,
// trusted over any formula); the memfds are the caller's (launchQemu knows them) or are
// taken from QEMU's fd table (SO_PEERCRED pid, pidfd_getfd or /proc/<pid>/fd/N).
import { GuestDmabufError } from '../../lib/core/errors.js';
import { GuestMemory } from '../../lib/guest/guest-memory.js';
import { native } from '../../lib/core/native.js';
import { Memfd } from '../../lib/kernel/memfd.js';
import type { QmpClient } from '../qmp/client.js';
import { queryBackends, unshareableReason, type MemoryBackend } from './backends.js';
import { locateBackends, type Located } from './locate.js';
import { guestRamRanges, type FlatRange } from './mtree.js';
import { locateDeviceRam, type DeviceRamRegion } from './device-ram.js';
import { listMemfds, readMappings, takeMemfd } from './proc-fds.js';
import { parseRamblockHvas } from './ramblock.js';

export interface DiscoveryOptions {
  /** Backend id → a memfd the caller already holds (launchQemu passes its own). These stay the caller's. */
  memfds?: ReadonlyMap<string, Memfd> | Readonly<Record<string, Memfd>>;
  /**
   * Backend id → the memfd an earlier discovery found for it (rediscovery after a hot-plug):
   * matched again without evidence (a duplicate is taken), and ruled out for other backends,
   * which is what tells two same-sized backends apart on QEMU 7.2 (no host addresses).
   */
  earlier?: ReadonlyMap<string, Memfd>;
  /** Backend id → fd number inside QEMU, when the evidence cannot tell memfds apart. */
  qemuFds?: Readonly<Record<string, number>>;
  /** QEMU's pid; default: the QMP peer's (SO_PEERCRED). */
  pid?: number;
  signal?: AbortSignal;
}

/** One guest RAM range: guest-physical [gpa, gpa + size) is `backend` from `offset`. */
export interface DiscoveredRegion {
  gpa: bigint;
  size: bigint;
  backend: string;
  offset: bigint;
}

/** How a backend's memfd was found: given by the caller, from an earlier discovery, or located in QEMU. */
export type Evidence = Located['evidence'] | 'given' | 'earlier';

export class DiscoveredGuestMemory {
  readonly memory: GuestMemory;
  readonly regions: readonly DiscoveredRegion[];
  readonly backends: readonly MemoryBackend[];
  /** The memfd of each backend in `regions`. */
  readonly memfds: ReadonlyMap<string, Memfd>;
  /** How each memfd was matched to its backend ('given' for the caller's). */
  readonly evidence: ReadonlyMap<string, Evidence>;
  /** RAM ranges that belong to no memory backend (device RAM such as VGA VRAM). */
  readonly otherRam: readonly FlatRange[];
  /**
   * The device RAM among them, with its memfd where QEMU keeps one (10.0 with
   * aux-ram-share=on) or the reason it cannot be exported. Those with a memfd are in `memory`
   * too, under their region's name (an export of one without F_SEAL_SHRINK fails, naming why).
   */
  readonly deviceRam: readonly DeviceRamRegion[];
  readonly #owned: Memfd[];

  /** @internal */
  constructor(parts: Omit<DiscoveredGuestMemory, 'close' | typeof Symbol.dispose>, owned: Memfd[]) {
    this.memory = parts.memory;
    this.regions = parts.regions;
    this.backends = parts.backends;
    this.memfds = parts.memfds;
    this.evidence = parts.evidence;
    this.otherRam = parts.otherRam;
    this.deviceRam = parts.deviceRam;
    this.#owned = owned;
  }

  /** Closes the memfds discovery took from QEMU (never the caller's). */
  close(): void {
    for (const memfd of this.#owned) memfd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export async function discoverGuestMemory(qmp: QmpClient, options: DiscoveryOptions = {}): Promise<DiscoveredGuestMemory> {
  const { signal } = options;
  const backends = await queryBackends(qmp, signal);
  const ranges = guestRamRanges(await qmp.hmp('info mtree -f', { signal }));
  const byId = new Map(backends.map((b) => [b.id, b]));
  const ramRanges = ranges.filter((r) => byId.has(r.region));
  const otherRam = ranges.filter((r) => !byId.has(r.region));
  if (ramRanges.length === 0) {
    throw new GuestDmabufError(`QEMU maps no memory backend as guest RAM (backends: ${backends.map((b) => b.id).join(', ') || 'none'}): start it with \`-object memory-backend-memfd,id=mem,size=SIZE,share=on -machine memory-backend=mem\``, 'ERR_QEMU_RAM_NOT_SHAREABLE');
  }
  const used = backends.filter((b) => ramRanges.some((r) => r.region === b.id));
  for (const backend of used) {
    const reason = unshareableReason(backend);
    if (reason) throw new GuestDmabufError(reason, 'ERR_QEMU_RAM_NOT_SHAREABLE');
  }

  const given = toMap(options.memfds);
  const memfds = new Map<string, Memfd>();
  const evidence = new Map<string, Evidence>();
  const owned: Memfd[] = [];
  try {
    for (const backend of used) {
      const memfd = given.get(backend.id);
      if (memfd) {
        memfds.set(backend.id, memfd);
        evidence.set(backend.id, 'given');
      }
    }
    for (const backend of used) {
      const earlier = options.earlier?.get(backend.id);
      if (memfds.has(backend.id) || earlier === undefined || earlier.closed) continue;
      const copy = Memfd.adopt(native.dup(earlier.fd));
      owned.push(copy);
      memfds.set(backend.id, copy);
      evidence.set(backend.id, 'earlier');
    }
    const missing = used.filter((b) => !memfds.has(b.id));
    const pid = options.pid ?? qmp.peer.pid;
    let hvas: Map<string, bigint> | undefined;
    if (missing.length > 0) {
      if (pid === process.pid) {
        throw new GuestDmabufError(`the QMP peer is this process (a socketpair?), so QEMU's memfds cannot be found from it: pass { pid } or { memfds } for ${missing.map((b) => b.id).join(', ')}`, 'ERR_INVALID_ARG_VALUE');
      }
      hvas = parseRamblockHvas(await qmp.hmp('info ramblock', { signal }));
      // A memfd already attributed to a backend cannot hold another one.
      const attributed = new Set([...memfds.values()].map((m) => native.fstat(m.fd).ino));
      const candidates = listMemfds(pid).filter((m) => !attributed.has(m.ino));
      const located = locateBackends(pid, missing, candidates, readMappings(pid), hvas, options.qemuFds);
      for (const [id, where] of located) {
        const memfd = takeMemfd(pid, where.memfd.fd);
        owned.push(memfd);
        memfds.set(id, memfd);
        evidence.set(id, where.evidence);
      }
    }
    for (const backend of used) {
      const memfd = memfds.get(backend.id)!;
      if (memfd.size !== backend.size) {
        throw new GuestDmabufError(`the memfd for backend '${backend.id}' is ${memfd.size} bytes, the backend ${backend.size}: not the same memory`, 'ERR_QEMU_MEMFD_MISMATCH');
      }
      if (!memfd.seals.includes('shrink')) {
        throw new GuestDmabufError(`the memfd of backend '${backend.id}' lacks F_SEAL_SHRINK, which udmabuf requires: memory-backend-memfd adds it unless started with seal=off (use seal=on, the default); for memory-backend-file on a memfd, seal it ('shrink') before starting QEMU`, 'ERR_MEMFD_SEALS');
      }
    }
    const deviceRam = otherRam.length === 0 ? [] : await findDeviceRam(qmp, pid === process.pid ? undefined : pid, otherRam, hvas, owned, signal);
    const regions: DiscoveredRegion[] = ramRanges.map((r) => ({ gpa: r.start, size: r.end - r.start, backend: r.region, offset: r.offset }));
    const memory = new GuestMemory([
      ...regions.map((r) => ({ gpa: r.gpa, size: r.size, memfd: memfds.get(r.backend)!, offset: r.offset, name: r.backend })),
      ...deviceRam.flatMap((d) => (d.memfd ? [{ gpa: d.gpa, size: d.size, memfd: d.memfd, offset: d.offset, name: d.region }] : [])),
    ]);
    return new DiscoveredGuestMemory({ memory, regions, backends, memfds, evidence, otherRam, deviceRam }, owned);
  } catch (err) {
    for (const memfd of owned) memfd.close();
    throw err;
  }
}

/** Device RAM's memfds; a refusal to read QEMU's fds becomes each region's reason, not a failure of discovery. */
async function findDeviceRam(qmp: QmpClient, pid: number | undefined, ranges: readonly FlatRange[], known: Map<string, bigint> | undefined, owned: Memfd[], signal: AbortSignal | undefined): Promise<DeviceRamRegion[]> {
  const hvas = known ?? parseRamblockHvas(await qmp.hmp('info ramblock', { signal }));
  if (pid === undefined || hvas.size === 0) return locateDeviceRam(pid, ranges, hvas, [], [], owned);
  try {
    return locateDeviceRam(pid, ranges, hvas, listMemfds(pid), readMappings(pid), owned);
  } catch (err) {
    if (!(err instanceof GuestDmabufError)) throw err;
    return ranges.map((r) => ({ gpa: r.start, size: r.end - r.start, region: r.region, offset: r.offset, reason: err.message }));
  }
}

function toMap(memfds: DiscoveryOptions['memfds']): Map<string, Memfd> {
  if (memfds === undefined) return new Map();
  if (memfds instanceof Map) return new Map(memfds);
  return new Map(Object.entries(memfds as Readonly<Record<string, Memfd>>));
}
