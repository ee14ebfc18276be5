// Which dma-buf format/modifier pairs the compositor takes. zwp_linux_dmabuf_v1 v3 lists
// them as `modifier` events after bind; v4 and later put them in a format table (an fd to
// mmap: 16-byte entries { u32 format; u32 pad; u64 modifier }) that feedback tranches index
// with u16s. Both end as one map: fourcc → modifiers.
import { MAP_PRIVATE, PROT_READ } from '../../core/linux.js';
import { native } from '../../core/native.js';
import { WaylandWireError } from '../wire/errors.js';
import type { ZwpLinuxDmabufV1 } from '../protocol/linux-dmabuf-v1.js';
import type { WaylandConnection } from './connection.js';

export type FormatMap = Map<number, bigint[]>;

function add(map: FormatMap, format: number, modifier: bigint): void {
  const list = map.get(format) ?? [];
  if (!list.includes(modifier)) list.push(modifier);
  map.set(format, list);
}

/** v3: collects `modifier` (and the older `format`) events until a round trip completes. */
export async function formatsFromEvents(wl: WaylandConnection, dmabuf: ZwpLinuxDmabufV1, signal?: AbortSignal): Promise<FormatMap> {
  const map: FormatMap = new Map();
  const offModifier = dmabuf.on('modifier', (format, hi, lo) => add(map, format, (BigInt(hi) << 32n) | BigInt(lo)));
  try {
    await wl.roundtrip({ signal });
  } finally {
    offModifier();
  }
  return map;
}

/** The format table's entries, read from its fd (which this closes). */
export function readFormatTable(fd: number, size: number): { format: number; modifier: bigint }[] {
  try {
    if (size % 16 !== 0 || size === 0) throw new WaylandWireError(`the compositor's dma-buf format table is ${size} bytes, not a non-empty multiple of 16`);
    const mapping = native.mmap(fd, size, PROT_READ, MAP_PRIVATE, 0);
    try {
      const view = new DataView(mapping);
      const entries: { format: number; modifier: bigint }[] = [];
      for (let at = 0; at < size; at += 16) entries.push({ format: view.getUint32(at, true), modifier: view.getBigUint64(at + 8, true) });
      return entries;
    } finally {
      native.munmap(mapping);
    }
  } finally {
    native.close(fd);
  }
}

/** v4+: the default feedback's table and tranches, up to its `done`. */
export async function formatsFromFeedback(wl: WaylandConnection, dmabuf: ZwpLinuxDmabufV1, signal?: AbortSignal): Promise<FormatMap> {
  const feedback = dmabuf.getDefaultFeedback();
  let table: { format: number; modifier: bigint }[] = [];
  const map: FormatMap = new Map();
  let problem: Error | undefined;
  feedback.on('format_table', (fd, size) => {
    try {
      table = readFormatTable(fd, size);
    } catch (err) {
      problem = err as Error;
    }
  });
  feedback.on('tranche_formats', (indices) => {
    const view = new DataView(indices.buffer, indices.byteOffset, indices.byteLength);
    for (let at = 0; at + 2 <= indices.byteLength; at += 2) {
      const entry = table[view.getUint16(at, true)];
      if (entry) add(map, entry.format, entry.modifier);
    }
  });
  try {
    await wl.wait<void>('the default dma-buf feedback', signal, (resolve, reject) => feedback.on('done', () => (problem ? reject(problem) : resolve())));
  } finally {
    if (!wl.closed) feedback.destroy();
  }
  return map;
}
