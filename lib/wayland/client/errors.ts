// Errors of a Wayland connection above the wire: the compositor's wl_display.error, and
// formats it does not offer.
import { GuestDmabufError } from '../../core/errors.js';

/**
 * The compositor sent wl_display.error: a protocol violation, fatal to the connection. Every
 * pending call on it rejects with this error.
 */
export class WaylandProtocolError extends GuestDmabufError {
  override name = 'WaylandProtocolError';
  /** The object the compositor blames. */
  readonly objectId: number;
  /** Its interface ("zwp_linux_buffer_params_v1"), or "unknown" when the id is not ours. */
  readonly interfaceName: string;
  /** The interface's error code. */
  readonly errorCode: number;
  /** The code's name in the interface's "error" enum ("invalid_format"), when the XML has one. */
  readonly errorName: string | undefined;
  /** The compositor's own words. */
  readonly description: string;
  constructor(objectId: number, interfaceName: string, errorCode: number, errorName: string | undefined, description: string) {
    super(
      `the compositor reported a protocol error on ${interfaceName}@${objectId}: ${errorName ?? 'code'} (${errorCode}): ${description}; the connection is closed, reconnect to go on`,
      'ERR_WAYLAND_PROTOCOL',
    );
    this.objectId = objectId;
    this.interfaceName = interfaceName;
    this.errorCode = errorCode;
    this.errorName = errorName;
    this.description = description;
  }
}

/** A dma-buf format/modifier pair the compositor did not advertise: nothing was sent. */
export class UnsupportedFormatError extends GuestDmabufError {
  override name = 'UnsupportedFormatError';
  readonly fourcc: number;
  readonly modifier: bigint;
  constructor(fourcc: number, modifier: bigint, offered: string) {
    super(`the compositor does not offer dma-buf format ${fourccName(fourcc)} (0x${fourcc.toString(16)}) with modifier 0x${modifier.toString(16)}; it offers ${offered}`, 'ERR_UNSUPPORTED_FORMAT');
    this.fourcc = fourcc;
    this.modifier = modifier;
  }
}

/** The connection to the compositor ended (it went away, or we closed it). */
export class WaylandDisconnectedError extends GuestDmabufError {
  override name = 'WaylandDisconnectedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_WAYLAND_DISCONNECTED', options);
  }
}

export function fourccName(fourcc: number): string {
  return String.fromCharCode(fourcc & 0xff, (fourcc >> 8) & 0xff, (fourcc >> 16) & 0xff, (fourcc >>> 24) & 0xff);
}
