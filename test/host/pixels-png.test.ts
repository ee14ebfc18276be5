// Pixel layouts read by toRgba, checked against bytes written by hand from drm_fourcc.h's
// definitions (channels named from the most significant bit of a little-endian word), and PNG
// encoding read back by the decoder.
import test from 'ava';
import { decodePng, encodePng, toRgba } from '../../lib/index.js';

const CASES: [string, number[], number[]][] = [
  // format, one pixel's bytes in memory, RGBA expected
  ['XR24', [0x11, 0x22, 0x33, 0x44], [0x33, 0x22, 0x11, 255]],
  ['AR24', [0x11, 0x22, 0x33, 0x44], [0x33, 0x22, 0x11, 0x44]],
  ['XB24', [0x11, 0x22, 0x33, 0x44], [0x11, 0x22, 0x33, 255]],
  ['AB24', [0x11, 0x22, 0x33, 0x44], [0x11, 0x22, 0x33, 0x44]],
  ['BX24', [0x11, 0x22, 0x33, 0x44], [0x22, 0x33, 0x44, 255]],
  ['BA24', [0x11, 0x22, 0x33, 0x44], [0x22, 0x33, 0x44, 0x11]],
  ['RX24', [0x11, 0x22, 0x33, 0x44], [0x44, 0x33, 0x22, 255]],
  ['RA24', [0x11, 0x22, 0x33, 0x44], [0x44, 0x33, 0x22, 0x11]],
  ['RG24', [0x11, 0x22, 0x33], [0x33, 0x22, 0x11, 255]],
  ['BG24', [0x11, 0x22, 0x33], [0x11, 0x22, 0x33, 255]],
  ['RG16', [0x00, 0xf8], [255, 0, 0, 255]], // R in the top 5 bits
  ['RG16', [0xe0, 0x07], [0, 255, 0, 255]], // G in the middle 6
  ['RG16', [0x10, 0x84], [132, 130, 132, 255]], // 16/31, 32/63, 16/31 of full scale, rounded
  ['BG16', [0x00, 0xf8], [0, 0, 255, 255]],
  ['XR30', [0x00, 0x00, 0xf0, 0x3f], [255, 0, 0, 255]],
  ['AR30', [0xff, 0x03, 0x00, 0xc0], [0, 0, 255, 255]],
  ['AB30', [0xff, 0x03, 0x00, 0x40], [255, 0, 0, 85]], // alpha 1 of 3
];

for (const [format, bytes, rgba] of CASES) {
  test(`toRgba reads ${format} ${bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ')} as RGBA ${rgba.join(',')}`, (t) => {
    // Two rows of one pixel each, the second at a padded stride and an offset, to check both.
    const stride = bytes.length + 3;
    const buffer = new Uint8Array(5 + 2 * stride);
    buffer.set(bytes, 5);
    buffer.set(bytes, 5 + stride);
    const image = toRgba({ bytes: buffer, format, width: 1, height: 2, stride, offset: 5 });
    t.deepEqual([...image.rgba], [...rgba, ...rgba]);
  });
}

test('toRgba refuses a buffer too short for the image, naming the sizes', (t) => {
  t.throws(() => toRgba({ bytes: new Uint8Array(100), format: 'XR24', width: 10, height: 3, stride: 40 }), { instanceOf: RangeError, message: /needs 120 bytes, the buffer has 100/ });
});

test('encodePng writes RGBA and RGB images the decoder reads back exactly; a wrong pixel count is refused', (t) => {
  const width = 7;
  const height = 5;
  const rgba = Uint8Array.from({ length: width * height * 4 }, (_, i) => (i * 37 + 11) & 0xff);
  t.deepEqual(decodePng(encodePng({ width, height, rgba })).rgba, rgba);
  const opaque = rgba.map((v, i) => (i % 4 === 3 ? 255 : v));
  const rgb = encodePng({ width, height, rgba }, { alpha: false });
  t.is(rgb[25], 2, 'colour type 2: RGB');
  t.deepEqual(decodePng(rgb).rgba, opaque, 'alpha left out, read back as opaque');
  t.throws(() => encodePng({ width, height, rgba: rgba.subarray(4) }), { instanceOf: RangeError, message: /needs 140 RGBA bytes, not 136/ });
});
