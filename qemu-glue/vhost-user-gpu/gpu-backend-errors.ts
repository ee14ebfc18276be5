// Errors of the public vhost-user-gpu back end (VhostUserGpuBackend), in the library's error
// model: a GuestDmabufError with a stable `code` to switch on.
import { GuestDmabufError } from '../../lib/core/errors.js';

export type VhostUserGpuBackendErrorCode =
  /** listen(): a live server already answers on the socket path. */
  | 'ERR_VHOST_USER_SOCKET_IN_USE'
  /** listen(): something other than a socket is at the path; it is left alone. */
  | 'ERR_VHOST_USER_SOCKET_PATH'
  /** fromFd(): the fd is not a connected unix stream socket (a listening one, a file, nothing). */
  | 'ERR_VHOST_USER_BAD_FD'
  /** A second front end connected while one is served; it was disconnected (see 'rejected'). */
  | 'ERR_VHOST_USER_BUSY'
  /** The back end was closed. */
  | 'ERR_VHOST_USER_BACKEND_CLOSED';

export class VhostUserGpuBackendError extends GuestDmabufError {
  override name = 'VhostUserGpuBackendError';
  declare readonly code: VhostUserGpuBackendErrorCode;
  constructor(message: string, code: VhostUserGpuBackendErrorCode, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}
