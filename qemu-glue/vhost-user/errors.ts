// vhost-user's errors, in the library's error model (GuestDmabufError with a `code`).
import { GuestDmabufError } from '../../lib/core/errors.js';

export type VhostUserErrorCode =
  /** The front end sent bytes that are not a well-formed vhost-user message. */
  | 'ERR_VHOST_USER_FRAMING'
  /** A well-formed message whose payload or fds do not fit its request. */
  | 'ERR_VHOST_USER_MESSAGE'
  /** A request that is not valid in the back end's state (a ring index past the last queue, an unnegotiated feature). */
  | 'ERR_VHOST_USER_STATE'
  /** The front end closed the socket. */
  | 'ERR_VHOST_USER_CLOSED';

/** The vhost-user connection broke or the front end broke the protocol. */
export class VhostUserError extends GuestDmabufError {
  override name = 'VhostUserError';
  declare readonly code: VhostUserErrorCode;
  constructor(message: string, code: VhostUserErrorCode) {
    super(message, code);
  }
}

export type VirtqueueErrorCode =
  /** A descriptor, ring or index the driver wrote is invalid: the ring is broken (virtio: NEEDS_RESET). */
  'ERR_VIRTQUEUE_BROKEN';

/**
 * The guest driver put something into a virtqueue that no valid driver would: a descriptor
 * out of guest RAM, a loop, a chain longer than the ring, an avail index that runs ahead of
 * the ring. The queue stops; the guest gets nothing more from it until a reset.
 */
export class VirtqueueError extends GuestDmabufError {
  override name = 'VirtqueueError';
  declare readonly code: VirtqueueErrorCode;
  readonly queue: number;
  constructor(queue: number, message: string) {
    super(`virtqueue ${queue}: ${message}`, 'ERR_VIRTQUEUE_BROKEN');
    this.queue = queue;
  }
}
