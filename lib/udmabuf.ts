// Udmabuf: the misc device that turns memfd ranges into dma-bufs (ours or upstream's).
import { constants, existsSync, openSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { DmaBuf } from './dmabuf.js';
import { CreateError, DeviceUnavailableError, errnoCode, GuestDmabufError } from './errors.js';
import { PAGE_SIZE } from './linux.js';
import { Memfd, type Seal } from './memfd.js';
import { native } from './native.js';
import { OwnedFd } from './owned-fd.js';
import { hex, toBigInt, type Size } from './sizes.js';
import * as abi from './udmabuf-abi.js';

export interface MemfdRange {
  memfd: Memfd | number;
  offset: Size;
  size: Size;
}

export interface DriverLimits {
  /** Most ranges in one create. */
  listLimit: number;
  /** Largest buffer in bytes. */
  sizeLimitBytes: bigint;
  /** The sysfs folder holding these parameters (where to raise them). */
  parametersPath: string;
}

const OURS = 'guest_udmabuf';
const UPSTREAM = 'udmabuf';

/** Which module drives a device node: ours registers with a `devname` parameter. */
function moduleOf(path: string): string {
  const name = basename(path);
  const ours = `/sys/module/${OURS}/parameters/devname`;
  if (existsSync(ours) && readFileSync(ours, 'utf8').trim() === name) return OURS;
  return UPSTREAM;
}

export class Udmabuf extends OwnedFd {
  protected readonly kind = 'udmabuf device';
  readonly path: string;
  /** `guest_udmabuf` (ours) or `udmabuf` (the in-tree driver). */
  readonly module: string;

  private constructor(fd: number, path: string) {
    super(fd);
    this.path = path;
    this.module = moduleOf(path);
  }

  /** Opens the device: `path`, else $GUEST_DMABUF_DEVICE, else /dev/udmabuf. */
  static open(path: string = process.env.GUEST_DMABUF_DEVICE || '/dev/udmabuf'): Udmabuf {
    try {
      return new Udmabuf(openSync(path, constants.O_RDWR), path);
    } catch (err) {
      throw new DeviceUnavailableError(path, err);
    }
  }

  get limits(): DriverLimits {
    const dir = `/sys/module/${this.module}/parameters`;
    const read = (name: string, fallback: number): number =>
      existsSync(`${dir}/${name}`) ? Number(readFileSync(`${dir}/${name}`, 'utf8').trim()) : fallback;
    return { listLimit: read('list_limit', 1024), sizeLimitBytes: BigInt(read('size_limit_mb', 64)) << 20n, parametersPath: dir };
  }

  /**
   * Creates a dma-buf over `ranges`, in order. One range uses UDMABUF_CREATE, several
   * UDMABUF_CREATE_LIST. What can be checked here is checked first, naming the range.
   */
  create(ranges: readonly MemfdRange[], options: { cloexec?: boolean } = {}): DmaBuf {
    const items = this.#validate(ranges);
    const flags = options.cloexec === false ? 0 : abi.UDMABUF_FLAGS_CLOEXEC;
    const [request, arg] =
      items.length === 1 ? [abi.UDMABUF_CREATE, abi.encodeCreate(flags, items[0]!)] : [abi.UDMABUF_CREATE_LIST, abi.encodeCreateList(flags, items)];
    let fd: number;
    try {
      fd = native.ioctl(this.fd, request, arg);
    } catch (err) {
      throw this.#kernelError(err, ranges);
    }
    return new DmaBuf(fd, items.reduce((sum, item) => sum + item.size, 0n));
  }

  #validate(ranges: readonly MemfdRange[]): abi.CreateItem[] {
    const limits = this.limits;
    if (ranges.length === 0) throw new CreateError('no ranges: a dma-buf needs at least one memfd range', 'EINVAL');
    if (ranges.length > limits.listLimit) {
      throw new CreateError(`${ranges.length} ranges exceed the driver's list_limit of ${limits.listLimit}: merge adjacent ranges or raise ${limits.parametersPath}/list_limit`, 'EINVAL');
    }
    const page = BigInt(PAGE_SIZE);
    const sealsOf = new Map<Memfd, Seal[]>(); // a list may name one memfd a thousand times
    let total = 0n;
    return ranges.map((range, i) => {
      const fail = (what: string, code = 'EINVAL'): never => {
        throw new CreateError(`range ${i}: ${what}`, code, i);
      };
      const offset = toBigInt(range.offset, `range ${i} offset`);
      const size = toBigInt(range.size, `range ${i} size`);
      if (offset % page) fail(`offset ${hex(offset)} is not page-aligned (${PAGE_SIZE})`);
      if (size === 0n) fail('size is 0: every range needs at least one page');
      if (size % page) fail(`size ${hex(size)} is not a multiple of the page size (${PAGE_SIZE})`);
      const memfd = range.memfd;
      if (memfd instanceof Memfd) {
        if (memfd.closed) fail('the memfd is closed', 'EBADF');
        if (offset + size > memfd.size) fail(`${hex(offset)}+${hex(size)} runs past the memfd's end (${hex(memfd.size)})`);
        const seals = sealsOf.get(memfd) ?? memfd.seals;
        sealsOf.set(memfd, seals);
        if (!seals.includes('shrink')) fail("the memfd lacks the 'shrink' seal: add it with memfd.addSeals(['shrink'])");
        if (seals.includes('write') || seals.includes('future-write')) fail("the memfd has a 'write' or 'future-write' seal: udmabuf needs writable memory");
      }
      total += size;
      if (total > limits.sizeLimitBytes) {
        fail(`the buffer would reach ${total} bytes, over the driver's size_limit_mb (${limits.sizeLimitBytes >> 20n} MiB): raise ${limits.parametersPath}/size_limit_mb`);
      }
      return { memfd: memfd instanceof Memfd ? memfd.fd : memfd, offset, size };
    });
  }

  #kernelError(err: unknown, ranges: readonly MemfdRange[]): GuestDmabufError {
    const code = errnoCode(err) ?? 'EIO';
    const errno = (err as { errno?: number }).errno;
    const single = ranges.length === 1 ? 0 : undefined;
    const where = single === 0 ? 'range 0: ' : '';
    const why: Record<string, string> = {
      EBADFD: 'a memfd is not a memfd (shmem or hugetlbfs file) or not an open fd',
      EBADF: 'a memfd is not an open fd',
      EINVAL: 'the kernel refused the ranges (seals: need shrink, refuse write/future-write; ranges within the memfd; limits)',
      ENOMEM: 'the kernel could not pin or allocate the pages (memory or locked-memory limit)',
      EPERM: 'the locked-memory limit (RLIMIT_MEMLOCK) does not allow pinning this much',
      EFAULT: 'the kernel could not find a page of the range (a hole in a hugetlb memfd?)',
    };
    return new CreateError(`${where}udmabuf create failed with ${code}: ${why[code] ?? 'see the kernel log'}`, code, single, errno, err);
  }
}
