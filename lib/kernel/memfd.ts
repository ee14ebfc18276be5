// Memfd: an anonymous shmem or hugetlbfs file, the memory udmabuf exports.
import { GuestDmabufError, InvalidArgumentError } from '../core/errors.js';
import * as L from '../core/linux.js';
import { mapShared } from '../fd/mapping.js';
import { native } from '../core/native.js';
import { OwnedFd } from '../fd/owned-fd.js';
import { toBigInt, type Size } from '../core/integers.js';

export type Seal = 'seal' | 'shrink' | 'grow' | 'write' | 'future-write';
export type HugePageSize = '2M' | '1G';

const SEAL_BITS: Record<Seal, number> = {
  seal: L.F_SEAL_SEAL,
  shrink: L.F_SEAL_SHRINK,
  grow: L.F_SEAL_GROW,
  write: L.F_SEAL_WRITE,
  'future-write': L.F_SEAL_FUTURE_WRITE,
};

export function sealBits(seals: readonly Seal[]): number {
  return seals.reduce((bits, seal) => {
    const bit = SEAL_BITS[seal];
    if (bit === undefined) throw new InvalidArgumentError(`unknown seal "${String(seal)}": use ${Object.keys(SEAL_BITS).join(', ')}`);
    return bits | bit;
  }, 0);
}

export function sealNames(bits: number): Seal[] {
  return (Object.keys(SEAL_BITS) as Seal[]).filter((s) => bits & SEAL_BITS[s]);
}

export interface MemfdOptions {
  hugetlb?: HugePageSize;
  /** Seals added after sizing. udmabuf needs 'shrink' and refuses 'write'/'future-write'. */
  seals?: Seal[];
}

export class Memfd extends OwnedFd {
  protected readonly kind = 'memfd';
  readonly size: bigint;
  readonly hugetlb: HugePageSize | undefined;

  private constructor(fd: number, size: bigint, hugetlb: HugePageSize | undefined) {
    super(fd);
    this.size = size;
    this.hugetlb = hugetlb;
  }

  /** Creates a sealable memfd of `size` bytes (a multiple of the huge page size for hugetlb). */
  static create(name: string, size: Size, options: MemfdOptions = {}): Memfd {
    const bytes = toBigInt(size, 'memfd size');
    let flags = L.MFD_CLOEXEC | L.MFD_ALLOW_SEALING;
    if (options.hugetlb) flags |= L.MFD_HUGETLB | (options.hugetlb === '1G' ? L.MFD_HUGE_1GB : L.MFD_HUGE_2MB);
    const fd = native.memfdCreate(name, flags);
    try {
      native.ftruncate(fd, bytes);
      if (options.seals?.length) native.addSeals(fd, sealBits(options.seals));
    } catch (err) {
      native.close(fd);
      throw err;
    }
    return new Memfd(fd, bytes, options.hugetlb);
  }

  /**
   * Takes ownership of an fd that is already a memfd: QEMU's guest RAM received over a socket
   * or taken with pidfd_getfd. Its size is read from the file.
   */
  static adopt(fd: number): Memfd {
    try {
      native.getSeals(fd);
    } catch (err) {
      throw new GuestDmabufError(`fd ${fd} is not a memfd (F_GET_SEALS: ${(err as Error).message}): pass an fd from memfd_create`, 'ERR_NOT_A_MEMFD', { cause: err });
    }
    const stat = native.fstat(fd);
    const hugetlb = stat.blksize >= 1 << 30 ? '1G' : stat.blksize >= 2 << 20 ? '2M' : undefined;
    return new Memfd(fd, stat.size, hugetlb);
  }

  get seals(): Seal[] {
    return sealNames(native.getSeals(this.fd));
  }

  addSeals(seals: Seal[]): void {
    native.addSeals(this.fd, sealBits(seals));
  }

  /** A shared read-write view of the whole file. Release it with `unmap()`. */
  map(): Uint8Array {
    return mapShared(this.fd, Number(this.size), L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED);
  }

  /** Frees the pages of a range (FALLOC_FL_PUNCH_HOLE): later reads see zeros. */
  punchHole(offset: Size, length: Size): void {
    native.fallocate(this.fd, L.FALLOC_FL_PUNCH_HOLE | L.FALLOC_FL_KEEP_SIZE, toBigInt(offset, 'offset'), toBigInt(length, 'length'));
  }
}
