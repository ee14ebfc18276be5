// The sidecar protocol's errors, in the library's error model (a GuestDmabufError with a
// stable `code`). Two kinds, because a caller acts on them differently:
// - SidecarError: the sidecar answered a request with an error (or sent one about a
//   subscription); the connection is still good, only that request or subscription failed.
// - SidecarConnectionError: the connection itself ended or broke; every pending call fails.
import { GuestDmabufError, SystemError } from '../../lib/core/errors.js';

/** Codes the sidecar sends in `error` messages (PROTOCOL.md lists what each means). */
export type SidecarErrorCode =
  /** A message that is not JSON, not an object, or has a field of the wrong type or range (`field` names it). */
  | 'ERR_SIDECAR_BAD_MESSAGE'
  /** A `type` this protocol version does not have. */
  | 'ERR_SIDECAR_UNKNOWN_TYPE'
  /** The first message was not `hello`, or `hello` came twice. */
  | 'ERR_SIDECAR_HELLO_FIRST'
  /** No protocol version both sides speak. */
  | 'ERR_SIDECAR_VERSION'
  /** A peer has as many wait-surface requests outstanding as the sidecar allows. */
  | 'ERR_SIDECAR_WAIT_CAP'
  /** A peer sent fds; no request carries any. They were closed. */
  | 'ERR_SIDECAR_UNEXPECTED_FDS'
  /** No surface with that id (never was, or withdrawn). */
  | 'ERR_SIDECAR_NO_SURFACE'
  /** subscribe to a surface already subscribed, or unsubscribe from one that is not. */
  | 'ERR_SIDECAR_SUBSCRIPTION'
  /** release of a buffer the peer does not hold. */
  | 'ERR_SIDECAR_NO_BUFFER'
  /** Sending a buffer would put the peer over its cap on live buffers: release some. */
  | 'ERR_SIDECAR_BUFFER_CAP'
  /** Sending a buffer would put the peer over its cap on pinned bytes: release some. */
  | 'ERR_SIDECAR_PINNED_CAP'
  /** export-framebuffer: the sidecar has no guest memory (no --qmp), or the peer has too many exports. */
  | 'ERR_SIDECAR_EXPORT_UNAVAILABLE'
  /** export-framebuffer: the library refused the descriptor or the kernel the export (`cause` names the library's code). */
  | 'ERR_SIDECAR_EXPORT_FAILED'
  /** The peer's uid is not allowed (SO_PEERCRED): run as the sidecar's user or ask for --allow-uid. */
  | 'ERR_SIDECAR_PEER_REFUSED'
  /** The sidecar serves as many peers as it allows. */
  | 'ERR_SIDECAR_TOO_MANY_PEERS'
  /** A frame over the size cap, a frame left unfinished, or too many bad messages: the sidecar drops the peer after this. */
  | 'ERR_SIDECAR_FRAMING';

export class SidecarError extends GuestDmabufError {
  override name = 'SidecarError';
  declare readonly code: SidecarErrorCode;
  /** The message field at fault, when one is ("framebuffer.stride"). */
  readonly field: string | undefined;
  /** The library error code behind an export failure ("ERR_MEMFD_SEALS"). */
  readonly causeCode: string | undefined;
  constructor(message: string, code: SidecarErrorCode, details: { field?: string; causeCode?: string; cause?: unknown } = {}) {
    super(message, code, { cause: details.cause });
    this.field = details.field;
    this.causeCode = details.causeCode;
  }
}

export type SidecarConnectionErrorCode =
  /** The sidecar closed the connection, or close() was called. */
  | 'ERR_SIDECAR_CLOSED'
  /** The sidecar sent something that is not this protocol (bad framing, an unknown reply). */
  | 'ERR_SIDECAR_PROTOCOL'
  /** No answer in time. */
  | 'ERR_SIDECAR_TIMEOUT';

export class SidecarConnectionError extends GuestDmabufError {
  override name = 'SidecarConnectionError';
  declare readonly code: SidecarConnectionErrorCode;
  constructor(message: string, code: SidecarConnectionErrorCode, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

/**
 * Why a peer's socket failed, for the log: EPIPE on a send or ECONNRESET on a read only say
 * that the peer closed its end with our messages unread, an ordinary disconnect.
 */
export function socketFailure(err: unknown, what: string): string {
  if (err instanceof SystemError && (err.code === 'EPIPE' || err.code === 'ECONNRESET')) return 'it disconnected with messages of ours unread';
  return `${what}: ${(err as Error).message}`;
}
