// EventFd: a kernel counter as an fd, for waking a waiter in this or another process (pass
// the fd to a child, or over a UnixSocket). signal() adds to the counter; read() and wait()
// take it, all of it, or 1 at a time in semaphore mode.
import { readlinkSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { bigIntegerIn, integerIn } from '../core/integers.js';
import { native } from '../core/native.js';
import { OwnedFd, type WaitOptions } from './owned-fd.js';

export interface EventFdOptions {
  /** Each read takes 1 from the counter instead of all of it. */
  semaphore?: boolean;
}

// The counter holds at most 2^64 - 2.
const MAX_COUNT = 0xffff_ffff_ffff_fffen;

export class EventFd extends OwnedFd {
  protected readonly kind = 'eventfd';
  readonly semaphore: boolean;

  private constructor(fd: number, semaphore: boolean) {
    super(fd);
    this.semaphore = semaphore;
  }

  /** A non-blocking, close-on-exec eventfd whose counter starts at `initial` (0 to 2^32 - 1). */
  static create(initial = 0, { semaphore = false }: EventFdOptions = {}): EventFd {
    integerIn(initial, 0, 0xffff_ffff, 'eventfd initial count');
    return new EventFd(native.eventfd(initial, semaphore), semaphore);
  }

  /**
   * Takes ownership of an eventfd received from elsewhere (a vhost-user kick or call fd) and
   * makes it close-on-exec. Throws when `fd` is not an eventfd; on error the caller still owns it.
   */
  static adopt(fd: number, { semaphore = false }: EventFdOptions = {}): EventFd {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch (err) {
      throw new InvalidArgumentError(`fd ${fd} cannot be adopted as an eventfd: ${(err as Error).message}`);
    }
    if (target !== 'anon_inode:[eventfd]') throw new InvalidArgumentError(`fd ${fd} is ${target}, not an eventfd`);
    native.setCloseOnExec(fd, true);
    return new EventFd(fd, semaphore);
  }

  /**
   * Adds `n` (at least 1) to the counter, waking waiters. Throws code 'EAGAIN' when the
   * counter would pass 2^64 - 2, i.e. nobody is reading.
   */
  signal(n: number | bigint = 1): void {
    native.eventfdWrite(this.fd, bigIntegerIn(n, 1n, MAX_COUNT, 'eventfd signal count'));
  }

  /** Takes the count (1 in semaphore mode) without waiting; null when it is zero. */
  read(): bigint | null {
    return native.eventfdRead(this.fd);
  }

  /**
   * Waits until the counter is non-zero, then takes it like read(). Rejects with ClosedError
   * when the eventfd is closed meanwhile, with AbortError when `signal` aborts.
   */
  async wait({ signal }: WaitOptions = {}): Promise<bigint> {
    for (;;) {
      const count = this.read();
      if (count !== null) return count;
      // Readable can be stale by the time we read (another reader, in this process or
      // another, took the count first): read again and wait again.
      await this.waitReadable(signal);
    }
  }
}
