// `info ramblock`: RAM block names and, from QEMU 8.x on, each block's host address (HVA),
// the strongest evidence of which mapping (and so which memfd) holds a backend. 7.2 prints no
// HVA column; the caller then falls back to sizes.

/** Block name → host virtual address, for the blocks that show one. */
export function parseRamblockHvas(text: string): Map<string, bigint> {
  const hvas = new Map<string, bigint>();
  const lines = text.split('\n');
  if (!lines[0]?.includes('HVA')) return hvas;
  for (const line of lines.slice(1)) {
    const tokens = line.trim().split(/\s+/);
    // name, page size (two tokens), offset, used, total, HVA, [RO]
    const hex = tokens.filter((t) => /^0x[0-9a-f]+$/i.test(t));
    if (tokens.length < 2 || hex.length < 4) continue;
    hvas.set(tokens[0]!, BigInt(hex[3]!));
  }
  return hvas;
}
