// Reading the pixels of a linear buffer in any of the library's DRM formats as 8-bit RGBA: what a
// screenshot of a guest surface needs (`guest-dmabuf capture`). A DRM format names its channels
// from the most significant bit of one little-endian word per pixel, so each format is its
// channels' shifts and widths within that word.
import { drmFormat, type DrmFormat } from './drm.js';
import type { Image } from './png.js';

/** [shift, bits] of a channel within the pixel's little-endian word. */
type Channel = readonly [number, number];

interface Layout {
  r: Channel;
  g: Channel;
  b: Channel;
  a?: Channel;
}

const C8 = (shift: number): Channel => [shift, 8];
const LAYOUTS: Record<string, Layout> = {
  XR24: { r: C8(16), g: C8(8), b: C8(0) },
  AR24: { r: C8(16), g: C8(8), b: C8(0), a: C8(24) },
  XB24: { r: C8(0), g: C8(8), b: C8(16) },
  AB24: { r: C8(0), g: C8(8), b: C8(16), a: C8(24) },
  BX24: { r: C8(8), g: C8(16), b: C8(24) },
  BA24: { r: C8(8), g: C8(16), b: C8(24), a: C8(0) },
  RX24: { r: C8(24), g: C8(16), b: C8(8) },
  RA24: { r: C8(24), g: C8(16), b: C8(8), a: C8(0) },
  RG16: { r: [11, 5], g: [5, 6], b: [0, 5] },
  BG16: { r: [0, 5], g: [5, 6], b: [11, 5] },
  RG24: { r: C8(16), g: C8(8), b: C8(0) },
  BG24: { r: C8(0), g: C8(8), b: C8(16) },
  XR30: { r: [20, 10], g: [10, 10], b: [0, 10] },
  AR30: { r: [20, 10], g: [10, 10], b: [0, 10], a: [30, 2] },
  XB30: { r: [0, 10], g: [10, 10], b: [20, 10] },
  AB30: { r: [0, 10], g: [10, 10], b: [20, 10], a: [30, 2] },
};

/** A channel's value scaled to 0..255, rounded. */
function component(word: number, [shift, bits]: Channel): number {
  const max = 2 ** bits - 1;
  const value = Math.floor(word / 2 ** shift) % (max + 1);
  return bits === 8 ? value : Math.round((value * 255) / max);
}

export interface LinearPixels {
  /** The buffer's bytes (a mapping of the dma-buf). */
  bytes: Uint8Array;
  format: number | string | DrmFormat;
  width: number;
  height: number;
  stride: number;
  /** Where the first pixel is in `bytes`. */
  offset?: number;
}

/** The pixels as 8-bit RGBA (alpha 255 for formats without alpha). */
export function toRgba({ bytes, format, width, height, stride, offset = 0 }: LinearPixels): Image {
  const info = typeof format === 'object' ? format : drmFormat(format);
  const layout = LAYOUTS[info.code];
  if (!layout) throw new RangeError(`toRgba: no pixel layout for ${info.code}`);
  const bpp = info.bytesPerPixel;
  const last = offset + (height - 1) * stride + width * bpp;
  if (height > 0 && last > bytes.length) throw new RangeError(`toRgba: a ${width}×${height} ${info.code} image with stride ${stride} at offset ${offset} needs ${last} bytes, the buffer has ${bytes.length}`);
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    let at = offset + y * stride;
    for (let x = 0; x < width; x++, at += bpp) {
      let word = 0;
      for (let i = bpp - 1; i >= 0; i--) word = word * 256 + bytes[at + i]!;
      const out = (y * width + x) * 4;
      rgba[out] = component(word, layout.r);
      rgba[out + 1] = component(word, layout.g);
      rgba[out + 2] = component(word, layout.b);
      rgba[out + 3] = layout.a ? component(word, layout.a) : 255;
    }
  }
  return { width, height, rgba };
}
