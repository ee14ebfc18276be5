// DRM pixel formats: fourcc codes and names, bytes per pixel, alpha; wl_shm's two exceptions;
// modifiers; and the virtio-gpu formats a guest names, mapped to the fourcc that describes the
// same bytes in memory.
import { SurfaceError } from './errors.js';

export interface DrmFormat {
  /** The fourcc code (`XR24` is 0x34325258). */
  fourcc: number;
  /** The four characters of the code: `XR24`. */
  code: string;
  /** The drm_fourcc.h name without its prefix: `XRGB8888`. */
  name: string;
  bytesPerPixel: number;
  hasAlpha: boolean;
}

/** The buffer is a plain row-major array of pixels, `stride` bytes per line. */
export const DRM_FORMAT_MOD_LINEAR = 0n;
/** "No modifier given": an importer must assume an implicit layout. We always give LINEAR. */
export const DRM_FORMAT_MOD_INVALID = 0x00ffffffffffffffn;

/** fourcc('X','R','2','4'): the four characters packed little-endian, as drm_fourcc.h does. */
export function fourcc(code: string): number {
  if (code.length !== 4 || !/^[\x20-\x7e]{4}$/.test(code)) {
    throw new SurfaceError(`a fourcc code is four printable ASCII characters (like 'XR24'), not "${code}"`);
  }
  return (code.charCodeAt(0) | (code.charCodeAt(1) << 8) | (code.charCodeAt(2) << 16) | (code.charCodeAt(3) << 24)) >>> 0;
}

/** The four characters of a fourcc code (`0x34325258` → `XR24`). */
export function fourccCode(value: number): string {
  return String.fromCharCode(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff);
}

const FORMATS: readonly DrmFormat[] = (
  [
    // code, name, bytes per pixel, alpha. Names give channels from the most significant bit of
    // a little-endian word: XRGB8888 is bytes B, G, R, X in memory.
    ['XR24', 'XRGB8888', 4, false],
    ['AR24', 'ARGB8888', 4, true],
    ['XB24', 'XBGR8888', 4, false],
    ['AB24', 'ABGR8888', 4, true],
    ['BX24', 'BGRX8888', 4, false],
    ['BA24', 'BGRA8888', 4, true],
    ['RX24', 'RGBX8888', 4, false],
    ['RA24', 'RGBA8888', 4, true],
    ['RG16', 'RGB565', 2, false],
    ['BG16', 'BGR565', 2, false],
    ['RG24', 'RGB888', 3, false],
    ['BG24', 'BGR888', 3, false],
    ['XR30', 'XRGB2101010', 4, false],
    ['AR30', 'ARGB2101010', 4, true],
    ['XB30', 'XBGR2101010', 4, false],
    ['AB30', 'ABGR2101010', 4, true],
  ] as const
).map(([code, name, bytesPerPixel, hasAlpha]) => ({ fourcc: fourcc(code), code, name, bytesPerPixel, hasAlpha }));

const BY_FOURCC = new Map(FORMATS.map((f) => [f.fourcc, f]));
const BY_TEXT = new Map(FORMATS.flatMap((f) => [[f.code, f] as const, [f.name, f] as const]));

/** Every format the library knows. */
export const drmFormats: readonly DrmFormat[] = FORMATS;

/** A format by fourcc value, four-character code (`'XR24'`) or name (`'XRGB8888'`). */
export function drmFormat(format: number | string): DrmFormat {
  const found = typeof format === 'number' ? BY_FOURCC.get(format) : BY_TEXT.get(format) ?? BY_TEXT.get(format.toUpperCase());
  if (!found) {
    const shown = typeof format === 'number' ? `0x${format.toString(16)} ('${fourccCode(format)}')` : `"${format}"`;
    throw new SurfaceError(`unknown DRM format ${shown}: use one of ${FORMATS.map((f) => f.code).join(', ')}`);
  }
  return found;
}

// wl_shm names ARGB8888 and XRGB8888 0 and 1 (they predate fourccs); every other wl_shm
// format code is the DRM fourcc.
const WL_SHM_ARGB8888 = 0;
const WL_SHM_XRGB8888 = 1;

/** The wl_shm format code for a DRM fourcc. */
export function wlShmFormat(drmFourcc: number): number {
  if (drmFourcc === fourcc('AR24')) return WL_SHM_ARGB8888;
  if (drmFourcc === fourcc('XR24')) return WL_SHM_XRGB8888;
  return drmFourcc;
}

/** The DRM fourcc for a wl_shm format code. */
export function fromWlShmFormat(code: number): number {
  if (code === WL_SHM_ARGB8888) return fourcc('AR24');
  if (code === WL_SHM_XRGB8888) return fourcc('XR24');
  return code;
}

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
    throw new SurfaceError(`unknown virtio-gpu format ${code}: the 2D formats are ${list}`);
  }
  return drmFormat(known.drm);
}
