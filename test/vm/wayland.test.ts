// End to end against a real weston 14 (headless, GL renderer on llvmpipe, kiosk shell): guest
// surfaces exported from guest memory, imported with zwp_linux_dmabuf_v1 and shown
// fullscreen, checked pixel by pixel in weston-screenshooter captures. One weston for the file.
import test from 'ava';
import {
  DRM_FORMAT_MOD_LINEAR,
  drmFormat,
  exportFramebuffer,
  GuestMemory,
  Memfd,
  Udmabuf,
  UnsupportedFormatError,
  WaylandClient,
  WaylandDisconnectedError,
  WaylandProtocolError,
  unmap,
  type ExportedSurface,
  type WaylandWindow,
} from '../../lib/index.js';
import { baselineGuard } from './helpers/baseline.js';
import { compare, expected, paint, type Picture } from './helpers/screen-pictures.js';
import { Weston } from './helpers/weston.js';

const W = 640;
const H = 480;
const RAM = 16 << 20;
const checkBaseline = baselineGuard(test);

let weston: Weston;
let wl: WaylandClient;
let win: WaylandWindow;
let ram: Memfd;
let view: Uint8Array;
let memory: GuestMemory;
let dev: Udmabuf;

test.before(async (t) => {
  weston = await Weston.start({ width: W, height: H });
  t.log(`weston started in ${Math.round(weston.startMs)} ms`);
  ram = Memfd.create('guest-ram', RAM, { seals: ['shrink', 'grow'] });
  view = ram.map();
  memory = new GuestMemory([{ gpa: 0x1000_0000, size: RAM, memfd: ram, offset: 0, name: 'ram' }]);
  dev = Udmabuf.open();
  wl = await WaylandClient.connect(weston.path);
  win = await wl.createWindow({ title: 'guest-dmabuf test', width: W, height: H, fullscreen: true });
});

// Only when a test failed before the last ones: they tear down in order themselves.
test.after.always(async () => {
  wl?.close();
  for (const s of surfaces) s[Symbol.dispose]();
  dev?.close();
  if (view) unmap(view);
  ram?.close();
  await weston?.stop();
});

const picture = (at: number, stride: number, bpp: number): Picture => ({ view, at, stride, bpp, width: W, height: H });

const surfaces: ExportedSurface[] = [];
function surfaceAt(code: string, at: number, extraStride: number): { surface: ExportedSurface; stride: number; bpp: number } {
  const bpp = drmFormat(code).bytesPerPixel;
  const stride = W * bpp + extraStride;
  const surface = exportFramebuffer(dev, memory, { gpa: 0x1000_0000 + at, width: W, height: H, stride, format: code });
  surfaces.push(surface);
  return { surface, stride, bpp };
}

test.serial('the compositor offers XR24, AR24, XB24, AB24 and RG16 with the LINEAR modifier', (t) => {
  t.log(`zwp_linux_dmabuf_v1 version ${wl.dmabufVersion}, ${wl.dmabufFormats.size} formats`);
  for (const code of ['XR24', 'AR24', 'XB24', 'AB24', 'RG16']) {
    t.true(wl.dmabufFormats.get(drmFormat(code).fourcc)?.includes(DRM_FORMAT_MOD_LINEAR), code);
  }
});

for (const [i, code] of ['XR24', 'AR24', 'XB24', 'AB24', 'RG16'].entries()) {
  test.serial(`${code} at an unaligned plane offset with a padded stride is shown pixel-exact, fullscreen`, async (t) => {
    // Each format in its own megabyte, starting 0x2a4 bytes into a page; 40 bytes of padding per line.
    const at = (i + 1) * (2 << 20) + 0x2a4;
    const { surface, stride, bpp } = surfaceAt(code, at, 40);
    t.is(surface.planes[0].offset, 0x2a4);
    paint(picture(at, stride, bpp), i * 11);
    await win.present(surface);
    const shot = weston.screenshot();
    t.is(shot.width, W);
    t.is(shot.height, H);
    // RGB565 expands to 8 bits in the GPU: allow rounding by one step.
    const result = compare(shot, picture(at, stride, bpp), code, code === 'RG16' ? 1 : 0);
    t.log(`${code}: ${result.bad} of ${W * H} pixels differ, largest channel difference ${result.maxDiff}`);
    t.is(result.bad, 0, result.first);
  });
}

test.serial('a later write into guest memory and a damaged commit of the same buffer show in the next screenshot (llvmpipe samples the pages live: no copy at import)', async (t) => {
  const at = 1 * (2 << 20) + 0x2a4; // the XR24 surface
  const { surface, stride, bpp } = { surface: surfaces[0]!, stride: W * 4 + 40, bpp: 4 };
  await win.present(surface);
  // New pixels everywhere, but only a rectangle damaged.
  paint(picture(at, stride, bpp), 99);
  const rect = { x: 100, y: 50, width: 200, height: 120 };
  await win.present(surface, { damage: [rect] });
  const shot = weston.screenshot();
  let insideBad = 0;
  let outsideNew = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const want = expected(view, 'XR24', at + y * stride + x * bpp);
      const k = (y * W + x) * 4;
      const same = want[0] === shot.rgba[k] && want[1] === shot.rgba[k + 1] && want[2] === shot.rgba[k + 2];
      const inside = x >= rect.x && x < rect.x + rect.width && y >= rect.y && y < rect.y + rect.height;
      if (inside && !same) insideBad++;
      if (!inside && same) outsideNew++;
    }
  }
  t.is(insideBad, 0, 'the damaged rectangle shows the new pixels without a re-import');
  t.log(`outside the damage, ${outsideNew} of ${W * H - rect.width * rect.height} pixels already show the new picture`);
  // A whole-surface damage brings everything up to date.
  await win.present(surface);
  t.is(compare(weston.screenshot(), picture(at, stride, bpp), 'XR24').bad, 0);
});

test.serial('a buffer the compositor holds is not released until another replaces it', async (t) => {
  const a = surfaces[0]!;
  const b = surfaces[2]!;
  await win.present(a);
  await wl.roundtrip();
  t.true(win.isBusy(a), 'the attached buffer is held');
  const released = win.released(a).then(() => 'released');
  const early = await Promise.race([released, new Promise((r) => setTimeout(() => r('held'), 500))]);
  t.is(early, 'held');
  await win.present(b);
  await wl.roundtrip();
  t.is(await released, 'released');
  t.false(win.isBusy(a));
  t.true(win.isBusy(b));
});

test.serial('an unadvertised format/modifier throws UnsupportedFormatError before anything is sent; the connection stays usable', async (t) => {
  const real = surfaces[0]!;
  const vendor: ExportedSurface = { ...real, modifier: 0x0100_0000_0000_0001n, [Symbol.dispose]() {} };
  const err = await t.throwsAsync(win.present(vendor), { instanceOf: UnsupportedFormatError });
  t.is(err!.code, 'ERR_UNSUPPORTED_FORMAT');
  t.regex(err!.message, /XR24 \(0x34325258\) with modifier 0x100000000000001/);
  const unknown: ExportedSurface = { ...real, fourcc: 0x20203859 /* 'Y8  ' */, [Symbol.dispose]() {} };
  await t.throwsAsync(win.present(unknown), { instanceOf: UnsupportedFormatError });
  await wl.roundtrip();
  await win.present(real);
  t.false(wl.connection.closed);
});

test.serial('a buffer the compositor rejects gives WaylandProtocolError naming zwp_linux_buffer_params_v1 and the code', async (t) => {
  // A connection of its own: a protocol error ends the connection.
  using other = await WaylandClient.connect(weston.path);
  using w2 = await other.createWindow({ width: W, height: H });
  const real = surfaces[0]!;
  // A stride that puts the last line past the end of the dma-buf.
  const outOfBounds: ExportedSurface = { ...real, planes: [{ offset: real.planes[0].offset, stride: W * 4 * 8 }], [Symbol.dispose]() {} };
  const err = await t.throwsAsync(w2.present(outOfBounds), { instanceOf: WaylandProtocolError });
  t.log(err!.message);
  t.is(err!.interfaceName, 'zwp_linux_buffer_params_v1');
  t.is(err!.errorName, 'out_of_bounds');
  t.is(err!.errorCode, 6);
  t.true(other.connection.closed);
  // The first connection is unaffected.
  await wl.roundtrip();
});

test.serial('a stride below width × bytes per pixel, which weston and llvmpipe would accept, is refused before sending', async (t) => {
  const real = surfaces[0]!;
  const narrow: ExportedSurface = { ...real, planes: [{ offset: real.planes[0].offset, stride: W * 2 }], [Symbol.dispose]() {} };
  await t.throwsAsync(win.present(narrow), { code: 'ERR_INVALID_ARG_VALUE', message: /below its width 640 × 4/ });
  await wl.roundtrip();
  t.false(wl.connection.closed);
});

test.serial('weston going away rejects pending calls with WaylandDisconnectedError', async (t) => {
  const held = surfaces[0]!; // presented last: weston holds it
  t.true(win.isBusy(held));
  const pending = win.released(held);
  const roundtrip = wl.roundtrip();
  weston.process.kill('SIGKILL');
  await t.throwsAsync(pending, { instanceOf: WaylandDisconnectedError });
  await t.throwsAsync(roundtrip.then(() => wl.roundtrip()), { instanceOf: WaylandDisconnectedError });
  await t.throwsAsync(win.present(held), { instanceOf: WaylandDisconnectedError });
});

test.serial('closing the window, client, surfaces and guest memory after the compositor left throws nothing', async (t) => {
  win.close();
  wl.close();
  for (const s of surfaces) s[Symbol.dispose]();
  unmap(view);
  ram.close();
  dev.close();
  await weston.stop();
  t.pass();
});

checkBaseline();
