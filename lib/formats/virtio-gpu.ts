// virtio-gpu's 2D formats (virtio_gpu.h), mapped to the DRM fourcc that describes the same
// bytes in memory.
import { SurfaceError } from '../core/errors.js';
import { drmFormat, type DrmFormat } from './drm.js';

/**
 * virtio-gpu's formats (virtio_gpu.h) name bytes in memory order, B8G8R8A8 being bytes B, G,
 * R, A; DRM's name channels of a little-endian word, so the same bytes are ARGB8888.
 */
export const VIRTIO_GPU_FORMATS: Readonly<Record<number, { name: string; drm: string }>> = {
  1: { name: 'B8G8R8A8_UNORM', drm: 'AR24' },
  2: { name: 'B8G8R8X8_UNORM', drm: 'XR24' },
  3: { name: 'A8R8G8B8_UNORM', drm: 'BA24' },
  4: { name: 'X8R8G8B8_UNORM', drm: 'BX24' },
  67: { name: 'R8G8B8A8_UNORM', drm: 'AB24' },
  68: { name: 'X8B8G8R8_UNORM', drm: 'RX24' },
  121: { name: 'A8B8G8R8_UNORM', drm: 'RA24' },
  134: { name: 'R8G8B8X8_UNORM', drm: 'XB24' },
};

/** The DRM format holding the bytes of a virtio-gpu format code. */
export function virtioGpuFormat(code: number): DrmFormat {
  const known = VIRTIO_GPU_FORMATS[code];
  if (!known) {
    const list = Object.entries(VIRTIO_GPU_FORMATS).map(([n, f]) => `${n} (${f.name})`).join(', ');
    throw new SurfaceError(`unknown virtio-gpu format ${code}: the 2D formats are ${list}`, 'ERR_UNKNOWN_FORMAT');
  }
  return drmFormat(known.drm);
}
