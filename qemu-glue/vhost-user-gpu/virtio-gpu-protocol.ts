// virtio-gpu's 2D command set (virtio spec §5.7, linux/virtio_gpu.h): numbers, request
// layouts and response encoders. Every decoder checks the request's size first: a short
// request is answered with ERR_UNSPEC, as QEMU's VIRTIO_GPU_FILL_CMD does.

export const Command = {
  GET_DISPLAY_INFO: 0x0100,
  RESOURCE_CREATE_2D: 0x0101,
  RESOURCE_UNREF: 0x0102,
  SET_SCANOUT: 0x0103,
  RESOURCE_FLUSH: 0x0104,
  TRANSFER_TO_HOST_2D: 0x0105,
  RESOURCE_ATTACH_BACKING: 0x0106,
  RESOURCE_DETACH_BACKING: 0x0107,
  GET_CAPSET_INFO: 0x0108,
  GET_CAPSET: 0x0109,
  GET_EDID: 0x010a,
  UPDATE_CURSOR: 0x0300,
  MOVE_CURSOR: 0x0301,
} as const;

export const Response = {
  OK_NODATA: 0x1100,
  OK_DISPLAY_INFO: 0x1101,
  OK_EDID: 0x1104,
  ERR_UNSPEC: 0x1200,
  ERR_OUT_OF_MEMORY: 0x1201,
  ERR_INVALID_SCANOUT_ID: 0x1202,
  ERR_INVALID_RESOURCE_ID: 0x1203,
  ERR_INVALID_CONTEXT_ID: 0x1204,
  ERR_INVALID_PARAMETER: 0x1205,
} as const;
export type ErrorResponse = Exclude<(typeof Response)[keyof typeof Response], 0x1100 | 0x1101 | 0x1104>;

/** Control header flags: FENCE asks for the fence id back once the command is done; RING_IDX carries ring_idx. */
export const FLAG_FENCE = 0x1;
export const FLAG_INFO_RING_IDX = 0x2;

/** The feature bit for GET_EDID. */
export const VIRTIO_GPU_F_EDID = 1n << 1n;

export const CTRL_HEADER_SIZE = 24;
export const MAX_SCANOUTS = 16;
export const DISPLAY_INFO_SIZE = CTRL_HEADER_SIZE + MAX_SCANOUTS * 24; // 408
export const EDID_RESPONSE_SIZE = CTRL_HEADER_SIZE + 8 + 1024; // 1056
export const MEM_ENTRY_SIZE = 16;
/** QEMU and contrib refuse ATTACH_BACKING with more entries than this. */
export const MAX_BACKING_ENTRIES = 16384;
export const CURSOR_SIZE = 64;

export interface CtrlHeader {
  type: number;
  flags: number;
  fenceId: bigint;
  ctxId: number;
  ringIdx: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A request shorter than its command's struct. */
export class ShortRequestError extends Error {
  constructor(readonly command: number, readonly got: number, readonly need: number) {
    super(`command 0x${command.toString(16)} is ${got} bytes, it needs ${need}`);
  }
}

/** Request sizes by command, header included (linux/virtio_gpu.h). */
export const REQUEST_SIZE: Readonly<Record<number, number>> = {
  [Command.GET_DISPLAY_INFO]: CTRL_HEADER_SIZE,
  [Command.RESOURCE_CREATE_2D]: CTRL_HEADER_SIZE + 16,
  [Command.RESOURCE_UNREF]: CTRL_HEADER_SIZE + 8,
  [Command.SET_SCANOUT]: CTRL_HEADER_SIZE + 24,
  [Command.RESOURCE_FLUSH]: CTRL_HEADER_SIZE + 24,
  [Command.TRANSFER_TO_HOST_2D]: CTRL_HEADER_SIZE + 32,
  [Command.RESOURCE_ATTACH_BACKING]: CTRL_HEADER_SIZE + 8,
  [Command.RESOURCE_DETACH_BACKING]: CTRL_HEADER_SIZE + 8,
  [Command.GET_CAPSET_INFO]: CTRL_HEADER_SIZE + 8,
  [Command.GET_CAPSET]: CTRL_HEADER_SIZE + 8,
  [Command.GET_EDID]: CTRL_HEADER_SIZE + 8,
  [Command.UPDATE_CURSOR]: CTRL_HEADER_SIZE + 32,
  [Command.MOVE_CURSOR]: CTRL_HEADER_SIZE + 32,
};

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeHeader(v: DataView): CtrlHeader {
  return { type: v.getUint32(0, true), flags: v.getUint32(4, true), fenceId: v.getBigUint64(8, true), ctxId: v.getUint32(16, true), ringIdx: v.getUint8(20) };
}

export function decodeRect(v: DataView, at: number): Rect {
  return { x: v.getUint32(at, true), y: v.getUint32(at + 4, true), width: v.getUint32(at + 8, true), height: v.getUint32(at + 12, true) };
}

export function encodeRect(v: DataView, at: number, r: Rect): void {
  v.setUint32(at, r.x, true);
  v.setUint32(at + 4, r.y, true);
  v.setUint32(at + 8, r.width, true);
  v.setUint32(at + 12, r.height, true);
}

/**
 * A response's header: its type, and the request's fence (and ring index) echoed, which is
 * what completes a fenced command for the driver.
 */
export function encodeResponseHeader(into: Uint8Array, type: number, request: CtrlHeader | null): void {
  const v = dataView(into);
  v.setUint32(0, type, true);
  const flags = request ? request.flags & (FLAG_FENCE | FLAG_INFO_RING_IDX) : 0;
  v.setUint32(4, flags, true);
  v.setBigUint64(8, flags & FLAG_FENCE ? request!.fenceId : 0n, true);
  v.setUint32(16, request?.ctxId ?? 0, true);
  v.setUint8(20, flags & FLAG_INFO_RING_IDX ? request!.ringIdx : 0);
}

/** One scanout as GET_DISPLAY_INFO reports it. */
export interface DisplayMode {
  rect: Rect;
  enabled: boolean;
  flags: number;
}

export function encodeDisplayInfo(into: Uint8Array, modes: readonly DisplayMode[]): void {
  const v = dataView(into);
  modes.slice(0, MAX_SCANOUTS).forEach((m, i) => {
    const at = CTRL_HEADER_SIZE + i * 24;
    encodeRect(v, at, m.rect);
    v.setUint32(at + 16, m.enabled ? 1 : 0, true);
    v.setUint32(at + 20, m.flags, true);
  });
}

export function decodeDisplayInfo(bytes: Uint8Array): DisplayMode[] {
  const v = dataView(bytes);
  return Array.from({ length: MAX_SCANOUTS }, (_, i) => {
    const at = CTRL_HEADER_SIZE + i * 24;
    return { rect: decodeRect(v, at), enabled: v.getUint32(at + 16, true) !== 0, flags: v.getUint32(at + 20, true) };
  });
}
