// DRM formats: fourcc codes, lookups, bytes per pixel and alpha, wl_shm codes, modifiers, and the virtio-gpu mapping checked byte by byte.
import test from 'ava';
import { InvalidArgumentError } from '../../lib/core/errors.js';
import {
  DRM_FORMAT_MOD_INVALID,
  DRM_FORMAT_MOD_LINEAR,
  SurfaceError,
  VIRTIO_GPU_FORMATS,
  drmFormat,
  drmFormats,
  fourcc,
  fourccCode,
  fromWlShmFormat,
  virtioGpuFormat,
  wlShmFormat,
} from '../../lib/index.js';

test('fourcc packs four characters little-endian, as drm_fourcc.h does', (t) => {
  t.is(fourcc('XR24'), 0x34325258);
  t.is(fourcc('AR24'), 0x34325241);
  t.is(fourcc('XB24'), 0x34324258);
  t.is(fourcc('AB24'), 0x34324241);
  t.is(fourcc('RG16'), 0x36314752);
  t.is(fourcc('~~~~'), 0x7e7e7e7e, 'the high byte stays unsigned');
  for (const code of ['XR24', 'AR24', 'RG16', 'XR30', 'NV12']) t.is(fourccCode(fourcc(code)), code);
  t.is(fourccCode(0x34325258), 'XR24');
  for (const bad of ['XR2', 'XR245', '', 'XR2\n']) t.throws(() => fourcc(bad), { instanceOf: InvalidArgumentError });
});

test('drmFormat finds a format by value, code and name (any case)', (t) => {
  const xr24 = drmFormat(0x34325258);
  t.deepEqual(xr24, { fourcc: 0x34325258, code: 'XR24', name: 'XRGB8888', bytesPerPixel: 4, hasAlpha: false });
  t.is(drmFormat('XR24'), xr24);
  t.is(drmFormat('XRGB8888'), xr24);
  t.is(drmFormat('xrgb8888'), xr24);
  t.is(drmFormat('xr24'), xr24);
  t.is(drmFormat('ARGB8888').fourcc, 0x34325241);
  t.is(drmFormat('RGB565').code, 'RG16');
});

test('bytes per pixel and alpha for each format', (t) => {
  const expected: [string, number, boolean][] = [
    ['XR24', 4, false],
    ['AR24', 4, true],
    ['XB24', 4, false],
    ['AB24', 4, true],
    ['BX24', 4, false],
    ['BA24', 4, true],
    ['RX24', 4, false],
    ['RA24', 4, true],
    ['RG16', 2, false],
    ['BG16', 2, false],
    ['RG24', 3, false],
    ['BG24', 3, false],
    ['XR30', 4, false],
  ];
  for (const [code, bytesPerPixel, hasAlpha] of expected) {
    const format = drmFormat(code);
    t.is(format.bytesPerPixel, bytesPerPixel, code);
    t.is(format.hasAlpha, hasAlpha, code);
    t.is(format.fourcc, fourcc(code), code);
    t.is(drmFormat(format.name), format, `${code} by name ${format.name}`);
  }
  for (const code of expected.map(([c]) => c)) t.true(drmFormats.some((f) => f.code === code), code);
  t.is(new Set(drmFormats.map((f) => f.fourcc)).size, drmFormats.length, 'no fourcc listed twice');
});

test('unknown formats throw a SurfaceError listing the known codes', (t) => {
  const byName = t.throws(() => drmFormat('NV12'), { instanceOf: SurfaceError });
  t.is(byName?.code, 'ERR_UNKNOWN_FORMAT');
  t.true(byName?.message.includes('"NV12"'), byName?.message);
  t.true(byName?.message.includes('XR24, AR24, XB24'), byName?.message);
  const byValue = t.throws(() => drmFormat(fourcc('NV12')), { instanceOf: SurfaceError });
  t.true(byValue?.message.includes("0x3231564e ('NV12')"), byValue?.message);
  t.true(byValue?.message.includes('RG16'), byValue?.message);
  t.throws(() => drmFormat(0), { instanceOf: SurfaceError });
});

test('wl_shm: ARGB8888 and XRGB8888 are 0 and 1, the rest are fourccs', (t) => {
  t.is(wlShmFormat(fourcc('AR24')), 0);
  t.is(wlShmFormat(fourcc('XR24')), 1);
  t.is(wlShmFormat(fourcc('AB24')), 0x34324241);
  t.is(wlShmFormat(fourcc('RG16')), 0x36314752);
  t.is(fromWlShmFormat(0), 0x34325241);
  t.is(fromWlShmFormat(1), 0x34325258);
  t.is(fromWlShmFormat(0x34324258), 0x34324258);
  for (const f of drmFormats) t.is(fromWlShmFormat(wlShmFormat(f.fourcc)), f.fourcc, f.code);
});

test('modifiers', (t) => {
  t.is(DRM_FORMAT_MOD_LINEAR, 0n);
  t.is(DRM_FORMAT_MOD_INVALID, 0x00ff_ffff_ffff_ffffn);
  t.is(DRM_FORMAT_MOD_INVALID, (1n << 56n) - 1n);
});

test('virtio-gpu formats map to the DRM formats of virtio_gpu.h', (t) => {
  const expected: Record<number, string> = { 1: 'AR24', 2: 'XR24', 3: 'BA24', 4: 'BX24', 67: 'AB24', 68: 'RX24', 121: 'RA24', 134: 'XB24' };
  t.deepEqual(Object.keys(VIRTIO_GPU_FORMATS).map(Number).sort((a, b) => a - b), [1, 2, 3, 4, 67, 68, 121, 134]);
  for (const [n, code] of Object.entries(expected)) t.is(virtioGpuFormat(Number(n)).code, code, `virtio-gpu format ${n}`);
  for (const unknown of [0, 5, 66, 200]) {
    const err = t.throws(() => virtioGpuFormat(unknown), { instanceOf: SurfaceError });
    t.true(err?.message.includes(`unknown virtio-gpu format ${unknown}`), err?.message);
    t.true(err?.message.includes('1 (B8G8R8A8_UNORM)'), err?.message);
    t.true(err?.message.includes('134 (R8G8B8X8_UNORM)'), err?.message);
  }
});

test('virtio-gpu names give bytes in memory order; reversing the DRM channels gives the same bytes', (t) => {
  // B8G8R8A8_UNORM: memory bytes B, G, R, A. ARGB8888: A is the most significant byte of a
  // little-endian word, so memory bytes are B, G, R, A: the reverse of the DRM letters.
  const virtioBytes = (name: string): string => [...name.matchAll(/([RGBAX])8/g)].map((m) => m[1]).join('');
  const drmChannels = (name: string): string => /^([RGBAX]+)8888$/.exec(name)?.[1] ?? '';
  t.is(virtioBytes('B8G8R8A8_UNORM'), 'BGRA');
  t.is(drmChannels('ARGB8888'), 'ARGB');
  for (const [n, known] of Object.entries(VIRTIO_GPU_FORMATS)) {
    const format = virtioGpuFormat(Number(n));
    t.is(format.code, known.drm);
    const memory = virtioBytes(known.name);
    const channels = drmChannels(format.name);
    t.is(memory.length, 4, known.name);
    t.is(channels.length, 4, format.name);
    t.is([...channels].reverse().join(''), memory, `virtio-gpu ${n} ${known.name} vs ${format.name}`);
    t.is(format.hasAlpha, memory.includes('A'), `${known.name}: alpha iff the virtio format has an A byte`);
    t.is(format.bytesPerPixel, 4);
  }
});
