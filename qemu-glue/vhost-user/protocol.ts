// vhost-user's numbers (QEMU docs/interop/vhost-user.rst): the message header, request codes,
// feature and protocol-feature bits. Pure constants, shared by framing, messages and the back end.

/** Every message starts with {u32 request; u32 flags; u32 size}, little-endian. */
export const HEADER_SIZE = 12;

/** Version 1 lives in flags bits 0-1; a reply sets REPLY and nothing else besides the version. */
export const FLAG_VERSION = 0x1;
export const FLAG_VERSION_MASK = 0x3;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;

/**
 * The largest payload we accept. The biggest request we parse is SET_MEM_TABLE with 8 regions
 * (8 + 8 × 32 bytes) or GET/SET_CONFIG (12 + 256); libvhost-user bounds the payload at its
 * union's size the same way. A front end announcing more is refused before anything is read.
 */
export const MAX_PAYLOAD_SIZE = 4096;

/** Front-end requests (QEMU → back end) we know by name. */
export const Request = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;
export type RequestName = keyof typeof Request;

const NAMES = new Map<number, RequestName>(Object.entries(Request).map(([name, code]) => [code, name as RequestName]));

/** "SET_MEM_TABLE (5)", or "request 99" for one we do not know. */
export function requestName(code: number): string {
  const name = NAMES.get(code);
  return name ? `${name} (${code})` : `request ${code}`;
}

/** Virtio feature bits the vhost-user layer itself cares about (as bigint masks). */
export const Feature = {
  RING_INDIRECT_DESC: 1n << 28n,
  RING_EVENT_IDX: 1n << 29n,
  /** vhost-user's own: GET/SET_PROTOCOL_FEATURES exist, and rings start disabled. */
  PROTOCOL_FEATURES: 1n << 30n,
  VERSION_1: 1n << 32n,
} as const;

/** Protocol-feature bits (GET_PROTOCOL_FEATURES). */
export const ProtocolFeature = {
  MQ: 1n << 0n,
  REPLY_ACK: 1n << 3n,
  BACKEND_REQ: 1n << 5n,
  CONFIG: 1n << 9n,
  RESET_DEVICE: 1n << 13n,
  CONFIGURE_MEM_SLOTS: 1n << 15n,
  STATUS: 1n << 16n,
} as const;

/** SET_MEM_TABLE carries at most this many regions (VHOST_MEMORY_BASELINE_NREGIONS). */
export const MAX_MEM_TABLE_REGIONS = 8;
/** What GET_MAX_MEM_SLOTS answers (libvhost-user's VHOST_USER_MAX_RAM_SLOTS). */
export const MAX_MEM_SLOTS = 509;

/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 the queue index, bit 8 "no fd comes with it". */
export const VRING_INDEX_MASK = 0xff;
export const VRING_NOFD_MASK = 0x100;

/** GET/SET_CONFIG's region is at most 256 bytes (VHOST_USER_MAX_CONFIG_SIZE). */
export const MAX_CONFIG_SIZE = 256;
