// The pictures the Wayland suites show and how weston-screenshooter must see them: a picture
// painted into guest memory per format, the RGB weston composites for each stored pixel, and a
// whole-screen comparison.
import type { Image } from '../../../lib/formats/png.js';

export interface Picture {
  /** Guest memory as this process maps it. */
  view: Uint8Array;
  /** Where the surface's first pixel is in `view`. */
  at: number;
  stride: number;
  bpp: number;
  width: number;
  height: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Fills `rect` (default: all) of the surface with a picture that depends on `seed`. */
export function paint(p: Picture, seed: number, rect: Rect = { x: 0, y: 0, width: p.width, height: p.height }): void {
  const { view, at, stride, bpp } = p;
  for (let y = rect.y; y < rect.y + rect.height; y++) {
    for (let x = rect.x; x < rect.x + rect.width; x++) {
      const o = at + y * stride + x * bpp;
      if (bpp === 2) {
        const v = ((x * 7 + seed) & 0xffff) ^ ((y * 13) << 5);
        view[o] = v & 0xff;
        view[o + 1] = (v >> 8) & 0xff;
      } else {
        const a = 0x40 + ((x + y + seed) % 0xc0); // alpha ≥ colour: valid premultiplied pixels
        view[o] = (x + seed) % a;
        view[o + 1] = (y * 3 + seed) % a;
        view[o + 2] = (x ^ y ^ seed) % a;
        view[o + 3] = a;
      }
    }
  }
}

/**
 * What the screenshot shows for the pixel stored at `o`: RGB as weston composites it. Kiosk
 * shell puts fullscreen surfaces over an opaque black curtain, and Wayland alpha is
 * premultiplied, so src + (1 − α)·black = the stored colour for every format here.
 */
export function expected(view: Uint8Array, code: string, o: number): [number, number, number] {
  switch (code) {
    case 'XR24':
    case 'AR24':
      return [view[o + 2]!, view[o + 1]!, view[o]!];
    case 'XB24':
    case 'AB24':
      return [view[o]!, view[o + 1]!, view[o + 2]!];
    case 'RG16': {
      const v = view[o]! | (view[o + 1]! << 8);
      const r = v >> 11;
      const g = (v >> 5) & 63;
      const b = v & 31;
      return [Math.round((r * 255) / 31), Math.round((g * 255) / 63), Math.round((b * 255) / 31)];
    }
  }
  throw new Error(code);
}

/** Pixels of the surface's area in `shot` differing by more than `tolerance` in any channel, and the first one. */
export function compare(shot: Image, p: Picture, code: string, tolerance = 0): { bad: number; first?: string; maxDiff: number } {
  let bad = 0;
  let first: string | undefined;
  let maxDiff = 0;
  for (let y = 0; y < p.height; y++) {
    for (let x = 0; x < p.width; x++) {
      const want = expected(p.view, code, p.at + y * p.stride + x * p.bpp);
      const i = (y * shot.width + x) * 4;
      const got = [shot.rgba[i]!, shot.rgba[i + 1]!, shot.rgba[i + 2]!];
      const diff = Math.max(...want.map((w, c) => Math.abs(w - got[c]!)));
      maxDiff = Math.max(maxDiff, diff);
      if (diff > tolerance) {
        bad++;
        first ??= `(${x}, ${y}): want ${want}, got ${got}`;
      }
    }
  }
  return { bad, first, maxDiff };
}
