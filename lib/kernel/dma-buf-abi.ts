// The dma-buf ioctl ABI (linux/dma-buf.h): numbers and struct encodings.
import { ioc } from '../core/linux.js';

export const DMA_BUF_SYNC_READ = 1;
export const DMA_BUF_SYNC_WRITE = 2;
export const DMA_BUF_SYNC_RW = 3;
export const DMA_BUF_SYNC_START = 0;
export const DMA_BUF_SYNC_END = 4;
export const DMA_BUF_IOCTL_SYNC = ioc('w', 'b', 0, 8);
export const DMA_BUF_SET_NAME = ioc('w', 'b', 1, 8);
export const DMA_BUF_IOCTL_EXPORT_SYNC_FILE = ioc('rw', 'b', 2, 8);
export const DMA_BUF_NAME_LEN = 32;

export function encodeSync(flags: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(flags), true);
  return bytes;
}
