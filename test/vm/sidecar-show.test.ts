// The sidecar's end of the data path with every part real: framebuffers described in guest
// memory (XR24, AR24, XB24, AB24, RG16) exported through our udmabuf driver by a SidecarServer,
// `guest-dmabuf show` (a child process) subscribing and presenting them in a real weston 14
// (headless, GL on llvmpipe, kiosk), and weston-screenshooter's captures compared pixel by
// pixel; then a guest draw with damage shown without a re-import, `guest-dmabuf capture` of the
// same surface, SIGTERM, and everything back to baseline.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodePng, drmFormat, FramebufferSource, GuestMemory, Memfd, SidecarClient, SidecarServer, udmabufFramebufferExporter } from '../../lib/index.js';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { until } from './helpers/draw-drm.js';
import { devicesUnderTest } from './helpers/devices.js';
import { compare, expected, paint, type Picture } from './helpers/screen-pictures.js';
import { Weston } from './helpers/weston.js';

const W = 640;
const H = 480;
const RAM = 16 << 20;
const FORMATS = ['XR24', 'AR24', 'XB24', 'AB24', 'RG16'] as const;
const CLI = join(PROJECT_ROOT, 'dist', 'qemu-glue', 'cli.js');

let weston: Weston;
let ram: Memfd;
let view: Uint8Array;
let server: SidecarServer;
let source: FramebufferSource;
let socketDir: string;
let socketPath: string;
let client: SidecarClient;
let buffersBefore: number;
const surfaceIds = new Map<string, number>();

/** Each format in its own 2 MiB of guest RAM, 0x2a4 bytes into a page, 40 bytes of padding per line. */
function pictureOf(i: number): Picture & { gpa: number } {
  const bpp = drmFormat(FORMATS[i]!).bytesPerPixel;
  const at = (i + 1) * (2 << 20) + 0x2a4;
  return { view, at, gpa: at, stride: W * bpp + 40, bpp, width: W, height: H };
}

test.before(async (t) => {
  buffersBefore = ourBuffers().filter((b) => b.creatorPid === process.pid).length;
  ram = Memfd.create('guest-ram', RAM, { seals: ['shrink', 'grow'] });
  view = ram.map();
  const memory = new GuestMemory([{ gpa: 0, size: RAM, memfd: ram, offset: 0, name: 'ram' }]);
  const ours = devicesUnderTest()[0]!;
  const framebuffers = FORMATS.map((format, i) => {
    const p = pictureOf(i);
    paint(p, i * 11);
    return { name: format.toLowerCase(), framebuffer: { gpa: p.gpa, width: W, height: H, stride: p.stride, format } };
  });
  source = new FramebufferSource(memory, { exportSurface: udmabufFramebufferExporter(ours.path), framebuffers });
  socketDir = mkdtempSync(join(tmpdir(), 'sidecar-show-'));
  socketPath = join(socketDir, 'sidecar.sock');
  server = await SidecarServer.listen(socketPath, { sources: [source], log: (line) => t.log(`sidecar: ${line}`) });
  client = await SidecarClient.connect(socketPath);
  for (const s of await client.list()) surfaceIds.set(s.name, s.surface);
});

// A weston per test. Seen once in six runs of this file: after one test's show was ended by
// SIGTERM, weston closed the next client's connection at once (weston gone or going); a weston
// of its own keeps each test about its own show. What weston did is logged when it died.
test.beforeEach(async (t) => {
  weston = await Weston.start({ width: W, height: H });
  t.log(`weston started in ${Math.round(weston.startMs)} ms`);
});

test.afterEach.always(async (t) => {
  const alive = weston.process.exitCode === null && weston.process.signalCode === null;
  if (!t.passed || !alive) t.log(`weston ${alive ? 'is running' : `exited (${weston.process.exitCode ?? weston.process.signalCode})`}; its log ends:\n${weston.log.slice(-3000)}`);
  await weston.stop();
});

test.after.always(async () => {
  client?.close();
  await server?.close();
  ram?.close();
  if (socketDir) rmSync(socketDir, { recursive: true, force: true });
});

interface Show {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function show(t: ExecutionContext, surface: number): Show {
  const child = spawn(process.execPath, [CLI, 'show', '--sidecar', socketPath, '--surface', String(surface), '--fullscreen'], {
    env: { ...process.env, XDG_RUNTIME_DIR: weston.runtimeDir, WAYLAND_DISPLAY: weston.socket },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    text += s;
    for (const line of s.split('\n').filter(Boolean)) t.log(line);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { child, stderr: () => text, exited };
}


for (const [i, format] of FORMATS.entries()) {
  test.serial(`${format}: \`guest-dmabuf show\` puts the sidecar's dma-buf on screen pixel-exact, and exits 0 on SIGTERM`, async (t) => {
    const surface = surfaceIds.get(format.toLowerCase());
    if (surface === undefined) return t.fail(`the sidecar does not serve ${format}`);
    const p = pictureOf(i);
    const shown = show(t, surface);
    try {
      t.true(await until(() => /showing buffer/.test(shown.stderr()), 60_000), 'show presented the buffer');
      // RGB565 expands to 8 bits in the GPU: allow rounding by one step.
      const result = compare(weston.screenshot(), p, format, format === 'RG16' ? 1 : 0);
      t.log(`${format}: ${result.bad} of ${W * H} pixels differ, largest channel difference ${result.maxDiff}`);
      t.is(result.bad, 0, result.first);
    } finally {
      shown.child.kill('SIGTERM');
    }
    t.is(await shown.exited, 0, shown.stderr());
    t.regex(shown.stderr(), /SIGTERM: closing/);
  });
}

test.serial('a guest draw with damage reaches the screen through the same buffer; capture writes the same pixels', async (t) => {
  const surface = surfaceIds.get('xr24')!;
  const p = pictureOf(0);
  const shown = show(t, surface);
  try {
    t.true(await until(() => /showing buffer/.test(shown.stderr()), 60_000));
    const rect = { x: 100, y: 50, width: 200, height: 120 };
    paint(p, 77, rect);
    source.damage('fb-0', [rect]); // framebuffer 0 of the source's list: XR24
    // The damage goes sidecar → show → weston: wait for the next repaint that has it.
    let bad = -1;
    for (let tries = 0; tries < 20 && bad !== 0; tries++) {
      if (tries > 0) await sleep(500);
      bad = compare(weston.screenshot(), p, 'XR24').bad;
    }
    t.is(bad, 0, 'the damaged rectangle shows the guest\'s new pixels');
  } finally {
    shown.child.kill('SIGTERM');
  }
  t.is(await shown.exited, 0);
  t.regex(shown.stderr(), /: ([2-9]|\d{2,}) commits, 1 imports;/, 'one import, then commits of the same buffer');

  const out = join(socketDir, 'xr24.png');
  const capture = spawn(process.execPath, [CLI, 'capture', '--sidecar', socketPath, '--surface', String(surface), '--out', out], { stdio: 'ignore' });
  t.is(await new Promise((resolve) => capture.on('exit', resolve)), 0);
  const image = decodePng(readFileSync(out));
  let differing = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const want = expected(view, 'XR24', p.at + y * p.stride + x * p.bpp);
      const k = (y * W + x) * 4;
      if (want.some((v, c) => v !== image.rgba[k + c])) differing++;
    }
  }
  t.is(differing, 0, 'capture: every pixel as stored');
});

test.serial('after every show and capture ended: our driver holds only the sidecar\'s own exports', (t) => {
  const mine = ourBuffers().filter((b) => b.creatorPid === process.pid).length;
  t.is(mine - buffersBefore, FORMATS.length, 'one buffer per described framebuffer, nothing more');
});
