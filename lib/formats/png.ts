// PNG, small: the encoder writes 8-bit RGBA or RGB, unfiltered, deflated with node:zlib
// (`guest-dmabuf capture`); the decoder reads 8-bit RGB or RGBA, non-interlaced, every filter
// (what cairo writes for weston-screenshooter, what QEMU's screendump writes). Images are RGBA.
import { crc32, deflateSync, inflateSync } from 'node:zlib';

export interface Image {
  width: number;
  height: number;
  /** width × height × 4 bytes, R G B A. */
  rgba: Uint8Array;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Buffer.from(type, 'latin1'), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A PNG of `image`: RGBA, or RGB when `alpha` is false (the alpha bytes are left out). */
export function encodePng(image: Image, { alpha = true }: { alpha?: boolean } = {}): Uint8Array {
  const { width, height, rgba } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || rgba.length !== width * height * 4) {
    throw new RangeError(`encodePng: a ${width}×${height} image needs ${width * height * 4} RGBA bytes, not ${rgba.length}`);
  }
  const channels = alpha ? 4 : 3;
  const lineBytes = width * channels;
  const raw = new Uint8Array(height * (lineBytes + 1));
  for (let y = 0; y < height; y++) {
    const line = y * (lineBytes + 1) + 1; // filter byte 0: none
    if (alpha) raw.set(rgba.subarray(y * width * 4, (y + 1) * width * 4), line);
    else for (let x = 0; x < width; x++) raw.set(rgba.subarray((y * width + x) * 4, (y * width + x) * 4 + 3), line + x * 3);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, alpha ? 6 : 2, 0, 0, 0], 8);
  return Buffer.concat([Uint8Array.from(SIGNATURE), chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

export function decodePng(file: Uint8Array): Image {
  if (!SIGNATURE.every((b, i) => file[i] === b)) throw new Error('not a PNG: the signature is wrong');
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let width = 0;
  let height = 0;
  let colorType = -1;
  const idat: Uint8Array[] = [];
  for (let at = 8; at + 8 <= file.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...file.subarray(at + 4, at + 8));
    const data = file.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const depth = data[8];
      colorType = data[9]!;
      if (depth !== 8 || (colorType !== 2 && colorType !== 6) || data[12] !== 0) throw new Error(`PNG with depth ${depth}, colour type ${colorType}, interlace ${data[12]}: only 8-bit RGB/RGBA, non-interlaced, is supported`);
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + length;
  }
  const channels = colorType === 6 ? 4 : 3;
  const raw = inflateSync(Buffer.concat(idat));
  const lineBytes = width * channels;
  const out = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(lineBytes);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (lineBytes + 1)]!;
    const line = raw.subarray(y * (lineBytes + 1) + 1, (y + 1) * (lineBytes + 1));
    const cur = new Uint8Array(lineBytes);
    for (let i = 0; i < lineBytes; i++) {
      const a = i >= channels ? cur[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      let p: number;
      switch (filter) {
        case 0: p = 0; break;
        case 1: p = a; break;
        case 2: p = b; break;
        case 3: p = (a + b) >> 1; break;
        case 4: {
          const pa = Math.abs(b - c);
          const pb = Math.abs(a - c);
          const pc = Math.abs(a + b - 2 * c);
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`PNG line ${y} has unknown filter ${filter}`);
      }
      cur[i] = (line[i]! + p) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      out.set(cur.subarray(x * channels, x * channels + 3), (y * width + x) * 4);
      out[(y * width + x) * 4 + 3] = channels === 4 ? cur[x * 4 + 3]! : 255;
    }
    prev = cur;
  }
  return { width, height, rgba: out };
}
