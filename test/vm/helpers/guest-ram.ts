// A stand-in for a VM's guest RAM inside the test VM: real memfds laid out the way QEMU's q35
// lays them out (RAM split around the PCI hole below 4 GiB, one memfd for both halves) plus a
// hot-plugged DIMM in a memfd of its own. Guest-physical bytes are read back through the
// memfds' own mappings, independently of GuestMemory, as the reference the dma-buf must match.
import { GuestMemory, Memfd, unmap } from '../../../lib/index.js';
import { fillPattern } from './raw.js';

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;

interface Block {
  gpa: number;
  size: number;
  view: Uint8Array;
  offset: number;
  name: string;
}

export class GuestRam implements Disposable {
  readonly memory: GuestMemory;
  readonly main: Memfd;
  readonly dimm: Memfd;
  /** Sizes of the two halves of the main memfd and of the DIMM. */
  readonly below: number;
  readonly above: number;
  readonly dimmSize: number;
  /** Guest-physical address of the first byte past the below-4G half (the PCI hole starts here). */
  readonly lowEnd = 2 * GiB;
  readonly dimmGpa: number;
  readonly #views: Uint8Array[];
  readonly #blocks: Block[];

  /** `below` bytes under 2 GiB and `above` bytes at 4 GiB in one memfd; a DIMM of `dimmSize`. */
  constructor(below: number, above: number, dimmSize: number, options: { hugetlb?: boolean } = {}) {
    const hugetlb = options.hugetlb ? ({ hugetlb: '2M' } as const) : {};
    this.below = below;
    this.above = above;
    this.dimmSize = dimmSize;
    this.dimmGpa = 4 * GiB + above + GiB; // a gap before the DIMM, as the device-memory region has
    this.main = Memfd.create('guest-ram', below + above, { ...hugetlb, seals: ['shrink', 'grow'] });
    this.dimm = Memfd.create('guest-dimm', dimmSize, { ...hugetlb, seals: ['shrink', 'grow'] });
    const mainView = this.main.map();
    const dimmView = this.dimm.map();
    fillPattern(mainView, 0x5eed);
    fillPattern(dimmView, 0xd144);
    this.#views = [mainView, dimmView];
    this.#blocks = [
      { gpa: this.lowEnd - below, size: below, view: mainView, offset: 0, name: 'ram below 4g' },
      { gpa: 4 * GiB, size: above, view: mainView, offset: below, name: 'ram above 4g' },
      { gpa: this.dimmGpa, size: dimmSize, view: dimmView, offset: 0, name: 'dimm0' },
    ];
    this.memory = new GuestMemory([
      { gpa: this.lowEnd - below, size: below, memfd: this.main, offset: 0, name: 'ram below 4g' },
      { gpa: 4 * GiB, size: above, memfd: this.main, offset: below, name: 'ram above 4g' },
      { gpa: this.dimmGpa, size: dimmSize, memfd: this.dimm, offset: 0, name: 'dimm0' },
    ]);
  }

  /** Every guest page's address, in GPA order. */
  pages(): number[] {
    const out: number[] = [];
    for (const b of this.#blocks) for (let at = 0; at < b.size; at += 4096) out.push(b.gpa + at);
    return out;
  }

  /** A copy of `length` guest-physical bytes at `gpa` (within one block). */
  read(gpa: number, length: number): Buffer {
    return Buffer.from(this.view(gpa, length));
  }

  /** A writable view of `length` guest bytes at `gpa` (within one block). */
  view(gpa: number, length: number): Uint8Array {
    const b = this.#blocks.find((block) => gpa >= block.gpa && gpa + length <= block.gpa + block.size);
    if (!b) throw new Error(`test bug: ${gpa.toString(16)}+${length.toString(16)} is not inside one RAM block`);
    const at = b.offset + (gpa - b.gpa);
    return b.view.subarray(at, at + length);
  }

  [Symbol.dispose](): void {
    for (const view of this.#views) unmap(view);
    this.main.close();
    this.dimm.close();
  }
}
