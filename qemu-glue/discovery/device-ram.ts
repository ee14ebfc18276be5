// Device RAM: guest RAM that belongs to a device rather than a memory backend, such as VGA
// VRAM once the firmware maps its BAR. QEMU 7.2 keeps it in anonymous memory; QEMU 10.0 with
// `-machine aux-ram-share=on` puts each such RAM block in a memfd of its own, named after the
// block (`/memfd:0000:00:02.0/vga.vram`). `info mtree -f` names the region ('vga.vram'),
// `info ramblock` the block ('0000:00:02.0/vga.vram') and its host address, which falls in
// QEMU's shared mapping of that memfd: the same evidence as for backends, checked by name too.
// A region that cannot be placed gets a reason instead; nothing here throws for it.
import { errnoCode } from '../../lib/core/errors.js';
import type { Memfd, Seal } from '../../lib/kernel/memfd.js';
import type { FlatRange } from './mtree.js';
import { takeMemfd, type ProcMapping, type ProcMemfd } from './proc-fds.js';

/** A RAM range of a device: guest-physical [gpa, gpa + size) is `region` from `offset`. */
export interface DeviceRamRegion {
  gpa: bigint;
  size: bigint;
  /** The memory region's name, e.g. 'vga.vram'. */
  region: string;
  offset: bigint;
  /** QEMU's RAM block, e.g. '0000:00:02.0/vga.vram', when `info ramblock` names one. */
  block?: string;
  /** Its memfd, when QEMU keeps it in one (10.0 with aux-ram-share=on). Discovery owns it. */
  memfd?: Memfd;
  seals?: Seal[];
  /** Why a dma-buf cannot be made of it; undefined when one can. */
  reason?: string;
}

const NOT_SHARED = "QEMU keeps it in private memory: start QEMU 10.0 or later with `-machine aux-ram-share=on`, which puts device RAM in memfds";

/** Finds each device RAM range's memfd in QEMU (`pid`); `taken` receives the memfds taken. */
export function locateDeviceRam(
  pid: number | undefined,
  ranges: readonly FlatRange[],
  hvas: ReadonlyMap<string, bigint>,
  memfds: readonly ProcMemfd[],
  mappings: readonly ProcMapping[],
  taken: Memfd[],
): DeviceRamRegion[] {
  const byBlock = new Map<string, Memfd>();
  return ranges.map((range) => {
    const region: DeviceRamRegion = { gpa: range.start, size: range.end - range.start, region: range.region, offset: range.offset };
    const blocks = [...hvas.keys()].filter((name) => name === range.region || name.endsWith(`/${range.region}`));
    if (blocks.length === 0) return { ...region, reason: hvas.size === 0 ? `this QEMU's \`info ramblock\` shows no host addresses (QEMU before 8.0), so device RAM cannot be found; ${NOT_SHARED}` : `no RAM block of this QEMU is named after region '${range.region}'` };
    if (blocks.length > 1) return { ...region, reason: `RAM blocks ${blocks.join(', ')} are all named after region '${range.region}': cannot tell which is mapped here` };
    const block = blocks[0]!;
    if (pid === undefined) return { ...region, block, reason: "QEMU's pid is unknown (the QMP peer is this process): pass { pid }" };
    const hva = hvas.get(block)!;
    const mapping = mappings.find((m) => m.shared && m.start <= hva && hva < m.end);
    const found = mapping && memfds.find((m) => m.ino === mapping.ino && m.name.startsWith(`/memfd:${block}`));
    if (!found) return { ...region, block, reason: NOT_SHARED };
    let memfd = byBlock.get(block);
    if (!memfd) {
      try {
        memfd = takeMemfd(pid, found.fd);
      } catch (err) {
        return { ...region, block, reason: `its memfd (fd ${found.fd} of QEMU) could not be taken (${errnoCode(err) ?? 'error'}): ${(err as Error).message}` };
      }
      taken.push(memfd);
      byBlock.set(block, memfd);
    }
    const seals = memfd.seals;
    if (!seals.includes('shrink')) {
      return { ...region, block, memfd, seals, reason: `QEMU made its memfd without F_SEAL_SHRINK${seals.includes('seal') ? ' and sealed it against adding seals (created without MFD_ALLOW_SEALING)' : ''}, and udmabuf refuses memfds that could shrink: its bytes can be read and written through the memfd, not exported as a dma-buf` };
    }
    return { ...region, block, memfd, seals };
  });
}
