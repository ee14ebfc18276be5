// QEMU's ramfb: the guest writes its framebuffer's place and layout to the fw_cfg file
// `etc/ramfb` as one big-endian struct { u64 addr; u32 fourcc, flags, width, height, stride; }.
import { SurfaceError } from '../core/errors.js';
import { drmFormat } from '../formats/drm.js';
import type { FramebufferDescriptor } from './surface.js';

export const RAMFB_CONFIG_SIZE = 28;

/** The framebuffer a ramfb config describes. A stride of 0 means packed lines, as QEMU reads it. */
export function parseRamfbConfig(bytes: Uint8Array): FramebufferDescriptor {
  if (bytes.length !== RAMFB_CONFIG_SIZE) {
    throw new SurfaceError(`a ramfb config is ${RAMFB_CONFIG_SIZE} bytes (u64 addr, u32 fourcc, flags, width, height, stride, big-endian), not ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const gpa = view.getBigUint64(0);
  const fourcc = view.getUint32(8);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const stride = view.getUint32(24);
  const format = drmFormat(fourcc); // throws naming the unknown fourcc
  if (width === 0 || height === 0) throw new SurfaceError(`the ramfb config has a ${width}x${height} framebuffer: the guest has not set a mode (or cleared it)`);
  return { gpa, width, height, stride: stride || width * format.bytesPerPixel, format: fourcc };
}
