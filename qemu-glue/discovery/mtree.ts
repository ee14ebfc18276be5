// A parser for `info mtree -f`: QEMU's flattened view of each address space. Guest RAM is the
// `ram` ranges of the flat view that address space "memory" (the CPUs' view) renders. Each
// range names its memory region (for a memory backend: the backend's id) and, after `@`, the
// offset into that region; no `@` means offset 0. The parser is pure: tests run it on outputs
// captured from real QEMUs (test/host/fixtures/mtree/).
import { GuestDmabufError } from '../../lib/core/errors.js';

/** One range of a flat view: guest-physical [start, end) mapped to `region` at `offset`. */
export interface FlatRange {
  start: bigint;
  /** Exclusive. */
  end: bigint;
  priority: number;
  /** 'ram', 'rom', 'romd', 'i/o', 'ramd' ... as QEMU prints it. */
  type: string;
  /** The memory region's name: a memory backend's id for backend RAM ('ram0', 'dimm0'). */
  region: string;
  /** Offset into the region. */
  offset: bigint;
}

export interface FlatView {
  /** The address spaces that render this view, e.g. ['memory', 'cpu-memory-0']. */
  addressSpaces: string[];
  root: string;
  ranges: FlatRange[];
}

// "  0000000100000000-00000001ffffffff (prio 0, ram): ram0 @0000000080000000 KVM"
const RANGE = /^\s+([0-9a-f]+)-([0-9a-f]+) \(prio (-?\d+), ([^)]+)\): (.+?)(?: @([0-9a-f]+))?(?: [A-Z][A-Za-z]*)*\s*$/;
const ADDRESS_SPACE = /^ AS "([^"]*)", root: (.*)$/;
const ROOT = /^ Root memory region: (.*)$/;

/** Every flat view in `info mtree -f` output. */
export function parseFlatViews(text: string): FlatView[] {
  const views: FlatView[] = [];
  let view: FlatView | undefined;
  for (const [index, rawLine] of text.split('\n').entries()) {
    const line = rawLine.replace(/\r$/, '');
    if (line.startsWith('FlatView #')) {
      view = { addressSpaces: [], root: '', ranges: [] };
      views.push(view);
      continue;
    }
    if (view === undefined || line.trim() === '') continue;
    const as = ADDRESS_SPACE.exec(line);
    if (as) {
      view.addressSpaces.push(as[1]!);
      continue;
    }
    const root = ROOT.exec(line);
    if (root) {
      view.root = root[1]!;
      continue;
    }
    if (line.trim() === 'No rendered FlatView') continue;
    const range = RANGE.exec(line);
    if (!range) throw new GuestDmabufError(`cannot parse line ${index + 1} of \`info mtree -f\`: ${JSON.stringify(line)}`, 'ERR_QMP_MTREE_FORMAT');
    view.ranges.push({
      start: BigInt(`0x${range[1]}`),
      end: BigInt(`0x${range[2]}`) + 1n,
      priority: Number(range[3]),
      type: range[4]!,
      region: range[5]!,
      offset: range[6] === undefined ? 0n : BigInt(`0x${range[6]}`),
    });
  }
  return views;
}

/** The RAM ranges the CPUs see: the `ram` ranges of the view address space "memory" renders. */
export function guestRamRanges(text: string): FlatRange[] {
  const view = parseFlatViews(text).find((v) => v.addressSpaces.includes('memory'));
  if (!view) throw new GuestDmabufError('`info mtree -f` has no flat view for address space "memory": is this QEMU output?', 'ERR_QMP_MTREE_FORMAT');
  return view.ranges.filter((r) => r.type === 'ram');
}
