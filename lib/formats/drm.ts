// DRM pixel formats: fourcc codes and names, bytes per pixel, alpha; modifiers.
import { InvalidArgumentError, SurfaceError } from '../core/errors.js';

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
    throw new InvalidArgumentError(`a fourcc code is four printable ASCII characters (like 'XR24'), not "${code}"`);
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
    throw new SurfaceError(`unknown DRM format ${shown}: use one of ${FORMATS.map((f) => f.code).join(', ')}`, 'ERR_UNKNOWN_FORMAT');
  }
  return found;
}
