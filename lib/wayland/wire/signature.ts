// What the wire layer knows of a message: its argument types, in order. Interfaces and
// names belong to the generated tables above it.

export type ArgType = 'int' | 'uint' | 'fixed' | 'string' | 'object' | 'new_id' | 'array' | 'fd';

export interface ArgSignature {
  readonly type: ArgType;
  /** string and object arguments that may be null (0 / zero length on the wire). */
  readonly nullable?: boolean;
  /** For new_id: absent means untyped (wl_registry.bind), which travels as string, uint, id. */
  readonly interface?: string;
}

/** An untyped new_id's value: the interface and version travel before the id. */
export interface UntypedNewId {
  interface: string;
  version: number;
  id: number;
}

/**
 * One argument's value on the wire: int/uint/fixed/object/new_id/fd as numbers (object ids,
 * fds; fixed as a JS number), strings as string | null, arrays as bytes, untyped new_id as
 * UntypedNewId.
 */
export type WireValue = number | string | null | Uint8Array | UntypedNewId;

/** The 8-byte header: sender object id, then size << 16 | opcode. */
export const HEADER_SIZE = 8;
/**
 * The largest message either side sends or accepts. libwayland's WL_MAX_MESSAGE_SIZE is 4096
 * and weston sends nothing bigger; a larger length is a broken or hostile peer.
 */
export const MAX_MESSAGE_SIZE = 4096;
/** libwayland's MAX_FDS_OUT: a receiver takes at most this many fds from one recvmsg. */
export const MAX_FDS_PER_SEND = 28;
/** Received fds not yet claimed by a message: more means the peer sends fds without messages. */
export const MAX_QUEUED_FDS = 256;
