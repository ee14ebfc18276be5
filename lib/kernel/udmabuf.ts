// Udmabuf: the misc device that turns memfd ranges into dma-bufs (ours or upstream's).
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { DmaBuf } from './dma-buf.js';
import { ClosedError, CreateError, DeviceUnavailableError, errnoCode, GuestDmabufError } from '../core/errors.js';
import { EventFd } from '../fd/eventfd.js';
import { exceededLimit, type DriverLimits } from './driver-limits.js';
import * as L from '../core/linux.js';
import { Memfd } from './memfd.js';
import { ModuleParams } from './module-params.js';
import { libraryError, native } from '../core/native.js';
import { OwnedFd } from '../fd/owned-fd.js';
import { ReleaseNotice } from './release-notice.js';
import { hex, toBigInt, type Size } from '../core/integers.js';
import * as abi from './udmabuf-abi.js';

export interface MemfdRange {
  memfd: Memfd | number;
  offset: Size;
  size: Size;
}


/** What the driver offers beyond upstream's ABI, as the driver itself reports it. */
export interface DriverExtensions {
  /** Buffers can carry a release eventfd (`DmaBuf.whenReleased` works). */
  releaseNotification: boolean;
  /** Pinned pages are charged to the creator's RLIMIT_MEMLOCK (create fails with ENOMEM over it). */
  accounting: boolean;
}

export interface CreateOptions {
  /** Close-on-exec on the new fd. Default true. */
  cloexec?: boolean;
  /** Ask the driver to report the final release (`DmaBuf.whenReleased`). Default: when the driver can. */
  releaseNotification?: boolean;
}

/** One prepared create ioctl. */
interface CreateRequest {
  items: abi.CreateItem[];
  request: number;
  arg: Uint8Array;
  size: bigint;
  /** The release eventfd, or why the buffer has none. */
  release: EventFd | string;
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

interface MemfdFacts {
  /** F_SEAL_* bits. */
  seals: number;
  end: bigint;
}

/** Seals and size of a range's memfd; a raw fd that is not an open memfd fails the range. */
function describeMemfd(memfd: Memfd | number, fail: (what: string, code?: string) => never): MemfdFacts {
  if (memfd instanceof Memfd) return { seals: native.getSeals(memfd.fd), end: memfd.size };
  let bits: number;
  try {
    bits = native.getSeals(memfd);
  } catch (err) {
    if (errnoCode(err) === 'EBADF') fail(`fd ${memfd} is not open`, 'EBADF');
    fail(`fd ${memfd} is not a memfd (F_GET_SEALS failed with ${errnoCode(err)}): pass a Memfd or a memfd_create fd with MFD_ALLOW_SEALING`, 'ERR_NOT_A_MEMFD');
  }
  return { seals: bits, end: native.fstat(memfd).size };
}

export class Udmabuf extends OwnedFd {
  protected readonly kind = 'udmabuf device';
  readonly path: string;
  /** `guest_udmabuf` (ours) or `udmabuf` (the in-tree driver). */
  readonly module: string;
  #releaseNotification: boolean | undefined;
  readonly #params: ModuleParams;

  private constructor(fd: number, path: string) {
    super(fd);
    this.path = path;
    this.module = moduleOf(path);
    this.#params = new ModuleParams(`/sys/module/${this.module}/parameters`, ['list_limit', 'size_limit_mb']);
  }

  /** Opens the device: `path`, else $GUEST_DMABUF_DEVICE, else /dev/udmabuf. */
  static open(path: string = process.env.GUEST_DMABUF_DEVICE || '/dev/udmabuf'): Udmabuf {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR);
    } catch (err) {
      throw new DeviceUnavailableError(path, err);
    }
    // Only open(2) failing means the device is unavailable; anything after it is reported as
    // itself, and the fd is closed now rather than left to the garbage collector.
    try {
      return new Udmabuf(fd, path);
    } catch (err) {
      closeSync(fd);
      throw libraryError(err);
    }
  }

  /** The driver's limits, read now (root can change them at run time). */
  get limits(): Required<DriverLimits> {
    if (this.closed) throw new ClosedError(this.kind);
    const params = this.#params;
    return { listLimit: params.number('list_limit', 1024), sizeLimitBytes: BigInt(params.number('size_limit_mb', 64)) << 20n, parametersPath: params.path };
  }

  override close(): void {
    this.#params.close();
    super.close();
  }

  /**
   * What the driver offers beyond upstream, probed with UDMABUF_GET_FEATURES (a driver without
   * extensions answers ENOTTY). Probed on every read: accounting is a writable module parameter.
   */
  get extensions(): DriverExtensions {
    const reply = new Uint8Array(32);
    try {
      native.ioctl(this.fd, abi.UDMABUF_GET_FEATURES, reply);
    } catch (err) {
      if (errnoCode(err) === 'ENOTTY') return { releaseNotification: false, accounting: false };
      throw err;
    }
    const features = new DataView(reply.buffer).getBigUint64(0, true);
    return {
      releaseNotification: (features & abi.UDMABUF_FEATURE_RELEASE_EVENTFD) !== 0n,
      accounting: (features & abi.UDMABUF_FEATURE_ACCOUNTING) !== 0n,
    };
  }

  /**
   * Creates a dma-buf over `ranges`, in order. One range uses UDMABUF_CREATE, several
   * UDMABUF_CREATE_LIST, and with release notification guest_udmabuf's UDMABUF_CREATE_NOTIFY.
   * What can be checked here is checked first, naming the range.
   */
  create(ranges: readonly MemfdRange[], options: CreateOptions = {}): DmaBuf {
    const prepared = this.#prepare(ranges, options);
    let fd: number;
    try {
      fd = native.ioctl(this.fd, prepared.request, prepared.arg);
    } catch (err) {
      throw this.#failed(prepared, err, ranges);
    }
    return this.#wrap(fd, prepared);
  }

  /**
   * `create` with the kernel's work (pinning every page) done on a worker thread. The device
   * and every memfd are duplicated at the call, so the buffer is made of the files they are
   * now, whatever the caller closes before the worker runs; the dups are closed when it settles.
   */
  async createAsync(ranges: readonly MemfdRange[], options: CreateOptions = {}): Promise<DmaBuf> {
    const held = new Map<number, number>(); // the caller's fd -> our dup of it
    const hold = (fd: number): number => {
      let dup = held.get(fd);
      if (dup === undefined) held.set(fd, (dup = native.dup(fd)));
      return dup;
    };
    try {
      const device = hold(this.fd);
      const prepared = this.#prepare(ranges, options, hold);
      let fd: number;
      try {
        fd = await native.ioctlAsync(device, prepared.request, prepared.arg);
      } catch (err) {
        throw this.#failed(prepared, err, ranges);
      }
      return this.#wrap(fd, prepared);
    } finally {
      for (const dup of held.values()) native.close(dup);
    }
  }

  /** `memfdFd` maps each range's memfd fd to the fd the request names (createAsync's dups). */
  #prepare(ranges: readonly MemfdRange[], options: CreateOptions, memfdFd: (fd: number) => number = (fd) => fd): CreateRequest {
    const items = this.#validate(ranges, memfdFd);
    const flags = options.cloexec === false ? 0 : abi.UDMABUF_FLAGS_CLOEXEC;
    const size = items.reduce((sum, item) => sum + item.size, 0n);
    // Built into the driver, so probed once (accounting, a module parameter, is not cached).
    const supported = (this.#releaseNotification ??= this.extensions.releaseNotification);
    if (options.releaseNotification ?? supported) {
      if (!supported) {
        throw new CreateError(`${this.path} (${this.module}) has no release notification: load guest_udmabuf, or create without releaseNotification`, 'ERR_NOT_SUPPORTED');
      }
      const eventfd = EventFd.create();
      return { items, request: abi.UDMABUF_CREATE_NOTIFY, arg: abi.encodeCreateNotify(flags, eventfd.fd, items), size, release: eventfd };
    }
    const release = supported
      ? 'this buffer was created with releaseNotification: false'
      : `${this.path} is driven by ${this.module}, which has no release notification: load guest_udmabuf`;
    return items.length === 1
      ? { items, request: abi.UDMABUF_CREATE, arg: abi.encodeCreate(flags, items[0]!), size, release }
      : { items, request: abi.UDMABUF_CREATE_LIST, arg: abi.encodeCreateList(flags, items), size, release };
  }

  #wrap(fd: number, prepared: CreateRequest): DmaBuf {
    const release = typeof prepared.release === 'string' ? prepared.release : new ReleaseNotice(prepared.release);
    return new DmaBuf(fd, prepared.size, release);
  }

  #failed(prepared: CreateRequest, err: unknown, ranges: readonly MemfdRange[]): GuestDmabufError {
    if (typeof prepared.release !== 'string') prepared.release.close();
    // The driver refuses a list over its limits with EINVAL before touching a page. Reading the
    // limits (two sysfs reads) only then keeps them off every successful create.
    if (errnoCode(err) === 'EINVAL' && !this.closed) {
      const overLimit = this.#overLimit(prepared.items);
      if (overLimit) return overLimit;
    }
    return this.#kernelError(err, ranges);
  }

  /** The CreateError for `items` when they exceed the driver's limits as they are now. */
  #overLimit(items: readonly abi.CreateItem[]): CreateError | undefined {
    const limits = this.limits;
    const excess = exceededLimit(items, limits);
    if (excess?.limit === 'list_limit') {
      const message = `${excess.count} ranges exceed the driver's list_limit of ${limits.listLimit}: merge adjacent ranges or raise ${limits.parametersPath}/list_limit`;
      return new CreateError(message, 'ERR_DRIVER_LIMIT', { limit: 'list_limit' });
    }
    if (excess?.limit === 'size_limit_mb') {
      const message = `range ${excess.index}: the buffer would reach ${excess.total} bytes, over the driver's size_limit_mb (${limits.sizeLimitBytes >> 20n} MiB): raise ${limits.parametersPath}/size_limit_mb`;
      return new CreateError(message, 'ERR_DRIVER_LIMIT', { rangeIndex: excess.index, limit: 'size_limit_mb' });
    }
    return undefined;
  }

  /** Checks what can be checked here (not the driver's limits: see #failed), naming the range. */
  #validate(ranges: readonly MemfdRange[], memfdFd: (fd: number) => number): abi.CreateItem[] {
    if (ranges.length === 0) throw new CreateError('no ranges: a dma-buf needs at least one memfd range', 'ERR_INVALID_RANGE');
    const page = BigInt(L.PAGE_SIZE);
    const describeOf = new Map<Memfd | number, MemfdFacts>(); // a list may name one memfd a thousand times
    return ranges.map((range, i) => {
      const fail = (what: string, code = 'ERR_INVALID_RANGE'): never => {
        throw new CreateError(`range ${i}: ${what}`, code, { rangeIndex: i });
      };
      const offset = toBigInt(range.offset, `range ${i} offset`);
      const size = toBigInt(range.size, `range ${i} size`);
      if (offset % page) fail(`offset ${hex(offset)} is not page-aligned (${L.PAGE_SIZE})`);
      if (size === 0n) fail('size is 0: every range needs at least one page');
      if (size % page) fail(`size ${hex(size)} is not a multiple of the page size (${L.PAGE_SIZE})`);
      const memfd = range.memfd;
      if (memfd instanceof Memfd && memfd.closed) fail('the memfd is closed', 'ERR_CLOSED');
      const { seals, end } = describeOf.get(memfd) ?? describeMemfd(memfd, fail);
      describeOf.set(memfd, { seals, end });
      if (offset + size > end) fail(`${hex(offset)}+${hex(size)} runs past the memfd's end (${hex(end)})`);
      if (!(seals & L.F_SEAL_SHRINK)) {
        // With F_SEAL_SEAL (a memfd made without MFD_ALLOW_SEALING has it from birth) nobody can add it.
        fail(seals & L.F_SEAL_SEAL ? "the memfd lacks the 'shrink' seal and cannot get it (it is sealed against new seals: its creator made it without MFD_ALLOW_SEALING, as QEMU does for aux-ram-share device RAM); only its creator can fix that" : "the memfd lacks the 'shrink' seal: add it with memfd.addSeals(['shrink'])", 'ERR_MEMFD_SEALS');
      }
      if (seals & (L.F_SEAL_WRITE | L.F_SEAL_FUTURE_WRITE)) fail("the memfd has a 'write' or 'future-write' seal: udmabuf needs writable memory", 'ERR_MEMFD_SEALS');
      return { memfd: memfdFd(memfd instanceof Memfd ? memfd.fd : memfd), offset, size };
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
      ENOMEM: !this.closed && this.extensions.accounting
        ? "pinning these pages would exceed your RLIMIT_MEMLOCK (guest_udmabuf charges pinned pages to it): raise it (ulimit -l, systemd LimitMEMLOCK), close other buffers, or grant CAP_IPC_LOCK"
        : 'the kernel could not pin or allocate the pages (out of memory)',
      EFAULT: 'the kernel could not find a page of the range (a hole in a hugetlb memfd?)',
    };
    return new CreateError(`${where}udmabuf create failed with ${code}: ${why[code] ?? 'see the kernel log'}`, code, { rangeIndex: single, errno, cause: err });
  }
}
