// `guest-dmabuf capture` as a program against a real SidecarServer: framebuffers in guest memory
// (a memfd; the export is a stand-in, the host has no udmabuf) in XR24, AB24 and RG16 become PNGs
// whose pixels are what the guest wrote, decoded here from the bytes by each format's own layout;
// bad usage and a missing surface exit with what is wrong.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePng, FramebufferSource, SidecarServer } from '../../lib/index.js';
import { LogCatcher, mirrorExporter, Ram, tempSocketPath } from './fixtures/sidecar-rig.js';
import { collect, exited, openFdCount, pattern, warmUp } from './fixtures/support.js';

test.before(warmUp);

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'qemu-glue', 'cli.js');

const W = 40;
const H = 24;
/** Framebuffers at separate guest addresses, each with its stride padded past its row. */
const FRAMEBUFFERS = [
  { name: 'xr24', framebuffer: { gpa: 0x10000, width: W, height: H, stride: W * 4 + 64, format: 'XR24' } },
  { name: 'ab24', framebuffer: { gpa: 0x40000, width: W, height: H, stride: W * 4, format: 'AB24' } },
  { name: 'rg16', framebuffer: { gpa: 0x80000, width: W, height: H, stride: W * 2 + 32, format: 'RG16' } },
] as const;

/** RGBA of pixel (x, y) read from guest RAM the way each format lays it out. */
function expected(ram: Uint8Array, fb: (typeof FRAMEBUFFERS)[number]['framebuffer'], x: number, y: number): number[] {
  const at = fb.gpa + y * fb.stride;
  switch (fb.format) {
    case 'XR24': {
      const [b, g, r] = ram.subarray(at + 4 * x, at + 4 * x + 3);
      return [r!, g!, b!, 255];
    }
    case 'AB24': {
      const [r, g, b, a] = ram.subarray(at + 4 * x, at + 4 * x + 4);
      return [r!, g!, b!, a!];
    }
    case 'RG16': {
      const v = ram[at + 2 * x]! | (ram[at + 2 * x + 1]! << 8);
      const scale = (value: number, bits: number): number => Math.round((value * 255) / (2 ** bits - 1));
      return [scale(v >> 11, 5), scale((v >> 5) & 63, 6), scale(v & 31, 5), 255];
    }
  }
}

async function capture(t: ExecutionContext, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'capture', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = collect(child.stderr);
  const { code } = await exited(child);
  t.log(stderr().trim());
  return { code, stderr: stderr() };
}

test.serial('capture writes each framebuffer as a PNG of exactly the guest\'s pixels (RGB, or RGBA for a format with alpha)', async (t) => {
  const before = openFdCount();
  const ram = new Ram();
  ram.bytes.set(pattern(11, 0x100000), 0);
  const { exportSurface, live } = mirrorExporter();
  const source = new FramebufferSource(ram.memory, { exportSurface, framebuffers: FRAMEBUFFERS.map((f) => ({ name: f.name, framebuffer: f.framebuffer })) });
  const path = tempSocketPath(t);
  const server = await SidecarServer.listen(path, { sources: [source], log: new LogCatcher().log });
  const dir = mkdtempSync(join(tmpdir(), 'capture-'));
  try {
    for (const [i, { name, framebuffer }] of FRAMEBUFFERS.entries()) {
      const out = join(dir, `${name}.png`);
      const run = await capture(t, ['--sidecar', path, '--surface', String(i + 1), '--out', out]);
      t.is(run.code, 0, run.stderr);
      t.regex(run.stderr, new RegExp(`wrote .*${name}\\.png: surface ${i + 1} \\(${name}\\), ${W}×${H} ${framebuffer.format}`));
      const file = readFileSync(out);
      t.is(file[25], framebuffer.format === 'AB24' ? 6 : 2, 'colour type: RGBA only for a format with alpha');
      const image = decodePng(file);
      t.deepEqual([image.width, image.height], [W, H]);
      let differing = 0;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const want = expected(ram.bytes, framebuffer, x, y);
          const got = [...image.rgba.subarray((y * W + x) * 4, (y * W + x) * 4 + 4)];
          if (want.some((v, c) => v !== got[c])) differing++;
        }
      }
      t.is(differing, 0, `${name}: every pixel`);
    }
    t.is(live(), FRAMEBUFFERS.length, 'the captures released what they took: only the source\'s own exports are live');
  } finally {
    await server.close();
    ram[Symbol.dispose]();
    rmSync(dir, { recursive: true, force: true });
  }
  t.is(openFdCount(), before, 'no fd left in this process');
});

test.serial('capture: bad usage exits 64; no sidecar, or no such surface, exits 1 saying so', async (t) => {
  const ram = new Ram();
  const { exportSurface } = mirrorExporter();
  const source = new FramebufferSource(ram.memory, { exportSurface, framebuffers: [{ name: 'xr24', framebuffer: FRAMEBUFFERS[0].framebuffer }] });
  const path = tempSocketPath(t);
  const server = await SidecarServer.listen(path, { sources: [source], log: new LogCatcher().log });
  try {
    const noOut = await capture(t, ['--sidecar', path]);
    t.is(noOut.code, 64);
    t.regex(noOut.stderr, /--out is required/);
    const badSurface = await capture(t, ['--sidecar', path, '--surface', 'two', '--out', '/tmp/x.png']);
    t.is(badSurface.code, 64);
    t.regex(badSurface.stderr, /--surface must be a whole number, not "two"/);
    const missing = await capture(t, ['--sidecar', path, '--surface', '9', '--out', '/tmp/x.png']);
    t.is(missing.code, 1);
    t.regex(missing.stderr, /the sidecar serves no surface 9: it serves 1 \(xr24\) \(ERR_SIDECAR_NO_SURFACE\)/);
    const nobody = await capture(t, ['--sidecar', join(dirname(path), 'nothing.sock'), '--out', '/tmp/x.png', '--timeout', '2000']);
    t.is(nobody.code, 1);
  } finally {
    await server.close();
    ram[Symbol.dispose]();
  }
});
