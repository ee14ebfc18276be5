// Wire-level failures: bytes that are not a valid message for the signature, or a peer that
// breaks the protocol's framing. Each one ends the connection.
import { GuestDmabufError } from '../../core/errors.js';

export type WireErrorCode = 'ERR_WAYLAND_WIRE' | 'ERR_WAYLAND_MESSAGE_TOO_LARGE' | 'ERR_WAYLAND_FDS';

export class WaylandWireError extends GuestDmabufError {
  override name = 'WaylandWireError';
  constructor(message: string, code: WireErrorCode = 'ERR_WAYLAND_WIRE') {
    super(message, code);
  }
}
