// The guest for the vhost-user-gpu tests: a busybox initramfs for a Debian kernel (which loads
// virtio-gpu as modules) or the GPU guest kernel (vm/gpu-guest-kernel.ts: all built in, no
// modules) that draws a known picture into /dev/fb0 with a small static C program (draw-fb.c)
// and says on the serial console what it drew, then reboots (run QEMU with -no-reboot to end
// there; init.sh has the command-line switches that let the host pick each boot's picture).
// Asked for `drm`, it runs draw-drm.c instead: a DRM dumb buffer the host drives command by
// command (what is drawn, which rectangle reaches the device, a moving picture, the buffer's end).
// Built into the cache (~/.cache/guest-dmabuf), keyed by every input: the programs' sources,
// /init, busybox and the module files.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { moduleLoadOrder, writeCpio } from './initramfs.js';
import type { Kernel } from './kernels.js';
import { hostCacheDir, PROJECT_ROOT } from './paths.js';

const BUSYBOX = '/bin/busybox';
const SOURCE_DIR = join(PROJECT_ROOT, 'vm', 'gpu-guest');
/** virtio-gpu and what it needs; modinfo adds the rest (drm, drm_kms_helper, virtio_dma_buf, ...). */
const GPU_MODULES = ['virtio_pci', 'virtio_gpu'];

/** What draw-fb prints: `draw-fb: drew 1280x800 stride 5120 format xrgb8888 picture gradient-xor fnv1a <hex>`. */
export const DRAW_REPORT = /draw-fb: drew (\d+)x(\d+) stride (\d+) format (\S+) picture (\S+) fnv1a ([0-9a-f]{16})/;

/** What draw-drm prints after `show`: `draw-drm: shown 1280x800 stride 5120 format xrgb8888 picture gradient-xor`. */
export const DRM_SHOWN = /^draw-drm: shown (\d+)x(\d+) stride (\d+) format (\S+) picture (\S+)$/;
/** What draw-drm prints after `move N` or `run SECONDS`: the frames, the seconds, the picture left shown. */
export const DRM_MOVED = /^draw-drm: moved (\d+) frames in ([\d.]+) s last (moving-\d+)$/;
/** draw-drm's report of a command it could not do. */
export const DRM_FAILED = /^draw-drm: .*(failed|cannot|no buffer|outside)/;

/**
 * The pictures: draw-fb knows the first two (the second differs from the first in every pixel);
 * draw-drm also draws `moving-N`, frame N of its moving picture: gradient-xor moved left by 4·N
 * pixels.
 */
export type Picture = 'gradient-xor' | 'gradient-xor-inverted' | `moving-${number}`;

/** The pixel the guest writes at (x, y), XRGB8888: for comparing a scanout with the picture. */
export function drawnPixel(x: number, y: number, picture: Picture = 'gradient-xor'): number {
  const flip = picture === 'gradient-xor-inverted' ? 0x00ffffff : 0;
  const moved = picture.startsWith('moving-') ? x + 4 * Number(picture.slice('moving-'.length)) : x;
  return ((0xff000000 | ((moved & 0xff) << 16) | ((y & 0xff) << 8) | ((moved ^ y) & 0xff)) ^ flip) >>> 0;
}

/** `picture` as an RGBA image of `width`×`height` (what a screenshot of it must show). */
export function drawnImage(width: number, height: number, picture: Picture): { width: number; height: number; rgba: Uint8Array } {
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = drawnPixel(x, y, picture);
      rgba.set([(p >>> 16) & 0xff, (p >>> 8) & 0xff, p & 0xff, 255], (y * width + x) * 4);
    }
  }
  return { width, height, rgba };
}

/** Pixels whose RGB differs between two RGBA images of the same size (alpha ignored). */
export function differingPixels(a: { rgba: Uint8Array }, b: { rgba: Uint8Array }): number {
  let differing = 0;
  for (let i = 0; i < a.rgba.length; i += 4) if (a.rgba[i] !== b.rgba[i] || a.rgba[i + 1] !== b.rgba[i + 1] || a.rgba[i + 2] !== b.rgba[i + 2]) differing++;
  return differing;
}

function hashFiles(files: readonly string[], extra: string): string {
  const hash = createHash('sha256').update(extra);
  for (const file of files) hash.update(file).update(readFileSync(file));
  return hash.digest('hex').slice(0, 12);
}

/** The guest's drawing programs (vm/gpu-guest/NAME.c). */
const PROGRAMS = ['draw-fb', 'draw-drm'] as const;

/** A static guest program, compiled once per source. */
function ensureProgram(name: (typeof PROGRAMS)[number], log: (line: string) => void): string {
  const source = join(SOURCE_DIR, `${name}.c`);
  const target = join(hostCacheDir(), `${name}-${hashFiles([source], 'gcc -static -O2')}`);
  if (existsSync(target)) return target;
  log(`compiling ${name} (static)`);
  mkdirSync(hostCacheDir(), { recursive: true });
  const tmp = `${target}.${process.pid}`;
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, source], { stdio: 'inherit' });
  renameSync(tmp, target);
  return target;
}

/**
 * The cached GPU-guest initramfs (uncompressed cpio: unpacking gzip costs seconds under TCG).
 * A kernel with builtinRootDrivers (the GPU guest kernel) gets no modules. `build: false` (in the
 * test VM, where the cache is on the read-only host root) throws when it is not cached.
 */
export function ensureGpuGuestInitramfs(kernel: Kernel, log: (line: string) => void = () => {}, options: { build?: boolean } = {}): string {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: install busybox-static`);
  const programs = PROGRAMS.map((name) => ensureProgram(name, log));
  const init = join(SOURCE_DIR, 'init.sh');
  const modules = kernel.builtinRootDrivers ? [] : moduleLoadOrder(kernel.version, GPU_MODULES);
  const key = hashFiles([...programs, init, BUSYBOX, ...modules], kernel.version);
  const target = join(hostCacheDir(), `gpu-guest-${kernel.version}-${key}.cpio`);
  if (existsSync(target)) return target;
  if (options.build === false) throw new Error(`the GPU guest initramfs for ${kernel.version} is not built: run \`node dist/vm/gpu-guest-cli.js\` on the host first (${target})`);
  log(`building the GPU guest initramfs for ${kernel.version}`);
  const stage = mkdtempSync(join(tmpdir(), 'guest-dmabuf-gpu-guest-'));
  try {
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev']) mkdirSync(join(stage, d));
    copyFileSync(BUSYBOX, join(stage, 'bin', 'busybox'));
    PROGRAMS.forEach((name, i) => copyFileSync(programs[i]!, join(stage, 'bin', name)));
    for (const file of modules) copyFileSync(file, join(stage, 'modules', basename(file)));
    // Empty for a kernel with everything built in: init.sh then loads nothing.
    writeFileSync(join(stage, 'modules.list'), modules.map((f) => `${basename(f)}\n`).join(''));
    copyFileSync(init, join(stage, 'init'));
    execFileSync('chmod', ['755', join(stage, 'init'), ...PROGRAMS.map((name) => join(stage, 'bin', name))]);
    writeCpio(stage, target);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return target;
}
