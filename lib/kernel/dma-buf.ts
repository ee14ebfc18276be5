// DmaBuf: an owned dma-buf fd with CPU access helpers.
import { readFileSync, readlinkSync } from 'node:fs';
import { AbortError, errnoCode, GuestDmabufError, InvalidArgumentError, NotSupportedError } from '../core/errors.js';
import * as L from '../core/linux.js';
import { mapShared } from '../fd/mapping.js';
import { native } from '../core/native.js';
import { OwnedFd, type WaitOptions } from '../fd/owned-fd.js';
import { ReleaseNotice } from './release-notice.js';
import { SyncFile } from './sync-file.js';
import * as dmaBufAbi from './dma-buf-abi.js';

export type Access = 'read' | 'write' | 'rw';

const ACCESS_FLAGS: Record<Access, number> = {
  read: dmaBufAbi.DMA_BUF_SYNC_READ,
  write: dmaBufAbi.DMA_BUF_SYNC_WRITE,
  rw: dmaBufAbi.DMA_BUF_SYNC_RW,
};

function accessFlags(access: Access, what: string): number {
  const flags = ACCESS_FLAGS[access];
  if (flags === undefined) throw new InvalidArgumentError(`${what} access must be 'read', 'write' or 'rw', not "${String(access)}"`);
  return flags;
}

/** What the kernel reports about a dma-buf in /proc/self/fdinfo. */
export interface DmaBufInfo {
  size: bigint;
  /** Number of file references to the dma-buf. */
  count: number;
  exporter: string;
  name: string;
}

export class DmaBuf extends OwnedFd {
  protected readonly kind = 'dma-buf';
  readonly size: bigint;
  /** The driver's release notice, or why there is none. */
  readonly #release: ReleaseNotice | string;

  /**
   * Takes ownership of `fd`. `release` is the buffer's release notice; a dma-buf from elsewhere
   * has none, and `released` rejects.
   */
  constructor(fd: number, size: bigint, release: ReleaseNotice | string = 'this dma-buf was not created by guest_udmabuf with release notification') {
    // The notice counts its holders down however this one ends: close() (even a failing one)
    // or the collector.
    super(fd, release instanceof ReleaseNotice ? () => release.drop() : undefined);
    this.size = size;
    this.#release = release;
  }

  /**
   * Takes ownership of an fd that is already a dma-buf (received over a socket, or from another
   * exporter); its size comes from the file. It has no release notification.
   */
  static adopt(fd: number): DmaBuf {
    let link = 'not open';
    try {
      link = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // reported below
    }
    if (!link.startsWith('/dmabuf:')) throw new GuestDmabufError(`fd ${fd} is not a dma-buf (${link}): pass an fd a dma-buf exporter gave you`, 'ERR_NOT_A_DMABUF');
    return new DmaBuf(fd, native.fstat(fd).size);
  }

  /** `whenReleased()` without a signal. */
  get released(): Promise<void> {
    return this.whenReleased();
  }

  /**
   * Resolves once the kernel has finally released the buffer: every fd (in any process) closed,
   * every mmap gone, every importer detached, the pages unpinned. Closing this object does not
   * settle it. Ask before closing the last of our DmaBufs for the buffer (this one and its
   * dups): at that close the library lets go of the release eventfd unless someone is
   * waiting, so a buffer another process still holds then rejects a later call with
   * ClosedError. Rejects with NotSupportedError when the buffer has no release notification
   * (an upstream driver, or `releaseNotification: false`), with AbortError when `signal` aborts.
   */
  whenReleased({ signal }: WaitOptions = {}): Promise<void> {
    if (typeof this.#release === 'string') {
      return Promise.reject(new NotSupportedError(`release notification is not supported by this driver: ${this.#release}`));
    }
    return this.#release.whenReleased(signal);
  }

  /** A MAP_SHARED view of the whole buffer; read-only unless `write`. Release with `unmap()`. */
  map(options: { write?: boolean } = {}): Uint8Array {
    const prot = L.PROT_READ | (options.write ? L.PROT_WRITE : 0);
    return mapShared(this.fd, Number(this.size), prot, L.MAP_SHARED);
  }

  /**
   * Brackets `fn` with DMA_BUF_IOCTL_SYNC START and END; END runs even when `fn` throws. START
   * waits, blocking the thread, for the buffer's fences: use syncAsync when an importer may be
   * busy with it, or when `fn` is async. A callback that returns a promise is refused (END
   * would run before its work): END runs, then this throws an InvalidArgumentError.
   */
  sync<T>(access: Access, fn: () => T): T {
    const flags = accessFlags(access, 'sync');
    this.#syncIoctl(flags | dmaBufAbi.DMA_BUF_SYNC_START);
    let result: T;
    try {
      result = fn();
    } finally {
      this.#syncIoctl(flags | dmaBufAbi.DMA_BUF_SYNC_END);
    }
    if (isThenable(result)) {
      result.then(undefined, () => {}); // its failure must not become an unhandled rejection
      throw new InvalidArgumentError('sync: the callback returned a promise, so END ran before its work finished: use syncAsync for async work');
    }
    return result;
  }

  /**
   * Like sync, for async work and without blocking: first waits (abortably, on the epoll
   * thread) for the fences of `access` through exportSyncFile, then START, awaits `fn`, then
   * END, which runs even when `fn` fails. Rejects with AbortError when `signal` aborts before
   * START (`fn` has then not run).
   */
  async syncAsync<T>(access: Access, fn: () => T | PromiseLike<T>, { signal }: WaitOptions = {}): Promise<T> {
    const flags = accessFlags(access, 'sync');
    let fence: SyncFile | undefined;
    try {
      fence = this.exportSyncFile(access);
    } catch (err) {
      // A kernel before 6.0 has no EXPORT_SYNC_FILE: START alone still waits, if blocking.
      if (errnoCode(err) !== 'ENOTTY') throw err;
    }
    if (fence !== undefined) {
      try {
        await fence.wait({ signal });
      } finally {
        fence.close();
      }
    }
    if (signal?.aborted) throw new AbortError('waiting for the dma-buf fences', signal.reason);
    this.#syncIoctl(flags | dmaBufAbi.DMA_BUF_SYNC_START);
    try {
      return await fn();
    } finally {
      this.#syncIoctl(flags | dmaBufAbi.DMA_BUF_SYNC_END);
    }
  }

  #syncIoctl(flags: number): void {
    native.ioctl(this.fd, dmaBufAbi.DMA_BUF_IOCTL_SYNC, dmaBufAbi.encodeSync(flags));
  }

  /** Names the buffer for debugging (fdinfo, debugfs); at most 31 bytes. */
  setName(name: string): void {
    const bytes = Buffer.from(`${name}\0`, 'utf8');
    if (bytes.length > dmaBufAbi.DMA_BUF_NAME_LEN) {
      throw new GuestDmabufError(`dma-buf name "${name}" is ${bytes.length - 1} bytes; the kernel keeps at most ${dmaBufAbi.DMA_BUF_NAME_LEN - 1}`, 'ERR_OUT_OF_RANGE');
    }
    native.ioctl(this.fd, dmaBufAbi.DMA_BUF_SET_NAME, bytes);
  }

  /**
   * A sync_file holding the buffer's current fences for `access` (DMA_BUF_IOCTL_EXPORT_SYNC_FILE):
   * wait on it before touching what an importer may still be writing ('read') or reading ('write').
   */
  exportSyncFile(access: Access): SyncFile {
    const flags = accessFlags(access, 'sync-file');
    const arg = new Uint8Array(8);
    const view = new DataView(arg.buffer);
    view.setUint32(0, flags, true);
    view.setInt32(4, -1, true);
    native.ioctl(this.fd, dmaBufAbi.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg);
    return new SyncFile(view.getInt32(4, true));
  }

  info(): DmaBufInfo {
    const text = readFileSync(`/proc/self/fdinfo/${this.fd}`, 'utf8');
    const field = (key: string): string => new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
    return { size: BigInt(field('size') || '0'), count: Number(field('count') || '0'), exporter: field('exp_name'), name: field('name') };
  }

  /** A second, independently owned fd for the same buffer. */
  dup(): DmaBuf {
    const fd = native.dup(this.fd);
    return new DmaBuf(fd, this.size, typeof this.#release === 'string' ? this.#release : this.#release.share());
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
