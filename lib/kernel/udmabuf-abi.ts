// The udmabuf ioctl ABI (upstream's and guest_udmabuf's extensions): numbers and struct encodings.
import { ioc } from '../core/linux.js';

export const UDMABUF_FLAGS_CLOEXEC = 0x01;
export const UDMABUF_CREATE = ioc('w', 'u', 0x42, 24);
export const UDMABUF_CREATE_LIST = ioc('w', 'u', 0x43, 8);

// guest_udmabuf extensions (udmabuf/include/uapi/guest_udmabuf.h); other drivers answer ENOTTY.
export const UDMABUF_GET_FEATURES = ioc('r', 'u', 0x80, 32);
export const UDMABUF_CREATE_NOTIFY = ioc('w', 'u', 0x81, 16);
export const UDMABUF_FEATURE_RELEASE_EVENTFD = 1n << 0n;
export const UDMABUF_FEATURE_ACCOUNTING = 1n << 1n;

export interface CreateItem {
  memfd: number;
  offset: bigint;
  size: bigint;
}

/** struct udmabuf_create { u32 memfd; u32 flags; u64 offset; u64 size; } */
export function encodeCreate(flags: number, item: CreateItem): Uint8Array {
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, item.memfd, true);
  view.setUint32(4, flags, true);
  view.setBigUint64(8, item.offset, true);
  view.setBigUint64(16, item.size, true);
  return bytes;
}

/** struct udmabuf_create_list { u32 flags; u32 count; struct udmabuf_create_item list[]; } */
export function encodeCreateList(flags: number, items: readonly CreateItem[], count = items.length): Uint8Array {
  return encodeItems(8, flags, count, items);
}

/** struct udmabuf_create_notify { u32 flags; u32 count; s32 eventfd; u32 pad; struct udmabuf_create_item list[]; } */
export function encodeCreateNotify(flags: number, eventfd: number, items: readonly CreateItem[], count = items.length): Uint8Array {
  const bytes = encodeItems(16, flags, count, items);
  new DataView(bytes.buffer).setInt32(8, eventfd, true);
  return bytes;
}

function encodeItems(headSize: number, flags: number, count: number, items: readonly CreateItem[]): Uint8Array {
  const bytes = new Uint8Array(headSize + 24 * items.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, flags, true);
  view.setUint32(4, count, true);
  items.forEach((item, i) => {
    const at = headSize + 24 * i;
    view.setUint32(at, item.memfd, true);
    view.setUint32(at + 4, 0, true);
    view.setBigUint64(at + 8, item.offset, true);
    view.setBigUint64(at + 16, item.size, true);
  });
  return bytes;
}
