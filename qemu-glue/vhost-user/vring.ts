// One vring's state as the front end configures it (NUM, ADDR, BASE, KICK, CALL, ERR, ENABLE)
// and, once started, the SplitVirtqueue over it. Owns the kick, call and err eventfds.
import { EventFd } from '../../lib/fd/eventfd.js';
import type { RingAddresses } from './split-virtqueue.js';
import { SplitVirtqueue } from './split-virtqueue.js';

export class Vring implements Disposable {
  readonly index: number;
  size = 0;
  addresses: RingAddresses | null = null;
  base = 0;
  enabled = false;
  kick: EventFd | null = null;
  call: EventFd | null = null;
  err: EventFd | null = null;
  queue: SplitVirtqueue | null = null;
  /** Bumped at every stop, so a kick loop of an earlier start knows it is stale. */
  generation = 0;

  constructor(index: number) {
    this.index = index;
  }

  setKick(fd: EventFd | null): void {
    this.kick?.close();
    this.kick = fd;
  }

  setCall(fd: EventFd | null): void {
    this.call?.close();
    this.call = fd;
  }

  setErr(fd: EventFd | null): void {
    this.err?.close();
    this.err = fd;
  }

  /** Stops the ring (GET_VRING_BASE): returns the next available index; the kick and call fds close. */
  stop(): number {
    const next = this.queue?.lastAvailIndex ?? this.base;
    this.queue = null;
    this.base = next;
    this.generation++;
    this.setKick(null);
    this.setCall(null);
    return next;
  }

  /**
   * Back to the state before vring setup (RESET_DEVICE). The err fd stays: QEMU 10.0 sends
   * SET_VRING_ERR once at realize, then RESET_DEVICE, and never again.
   */
  reset(): void {
    this.stop();
    this.size = 0;
    this.addresses = null;
    this.base = 0;
    this.enabled = false;
  }

  [Symbol.dispose](): void {
    this.reset();
    this.setErr(null);
  }
}
