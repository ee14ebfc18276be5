// The guest for the vhost-user-gpu tests: a busybox initramfs for a Debian kernel (which loads
// virtio-gpu as modules) or the GPU guest kernel (vm/gpu-guest-kernel.ts: all built in, no
// modules) that draws a known picture into /dev/fb0 with a small static C program (draw-fb.c)
// and says on the serial console what it drew, then reboots (run QEMU with -no-reboot to end
// there; init.sh has the command-line switches that let the host pick each boot's picture).
// Built into the cache (~/.cache/guest-dmabuf), keyed by every input: the program's source,
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

/** The pictures draw-fb knows; the second differs from the first in every pixel. */
export const PICTURES = ['gradient-xor', 'gradient-xor-inverted'] as const;
export type Picture = (typeof PICTURES)[number];

/** The pixel draw-fb writes at (x, y), XRGB8888: for comparing a scanout with the picture. */
export function drawnPixel(x: number, y: number, picture: Picture = 'gradient-xor'): number {
  const flip = picture === 'gradient-xor-inverted' ? 0x00ffffff : 0;
  return ((0xff000000 | ((x & 0xff) << 16) | ((y & 0xff) << 8) | ((x ^ y) & 0xff)) ^ flip) >>> 0;
}

function hashFiles(files: readonly string[], extra: string): string {
  const hash = createHash('sha256').update(extra);
  for (const file of files) hash.update(file).update(readFileSync(file));
  return hash.digest('hex').slice(0, 12);
}

/** The static draw-fb binary, compiled once per source. */
export function ensureDrawProgram(log: (line: string) => void = () => {}): string {
  const source = join(SOURCE_DIR, 'draw-fb.c');
  const target = join(hostCacheDir(), `draw-fb-${hashFiles([source], 'gcc -static -O2')}`);
  if (existsSync(target)) return target;
  log('compiling draw-fb (static)');
  mkdirSync(hostCacheDir(), { recursive: true });
  const tmp = `${target}.${process.pid}`;
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-Werror', '-o', tmp, source], { stdio: 'inherit' });
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
  const draw = ensureDrawProgram(log);
  const init = join(SOURCE_DIR, 'init.sh');
  const modules = kernel.builtinRootDrivers ? [] : moduleLoadOrder(kernel.version, GPU_MODULES);
  const key = hashFiles([draw, init, BUSYBOX, ...modules], kernel.version);
  const target = join(hostCacheDir(), `gpu-guest-${kernel.version}-${key}.cpio`);
  if (existsSync(target)) return target;
  if (options.build === false) throw new Error(`the GPU guest initramfs for ${kernel.version} is not built: run \`node dist/vm/gpu-guest-cli.js\` on the host first (${target})`);
  log(`building the GPU guest initramfs for ${kernel.version}`);
  const stage = mkdtempSync(join(tmpdir(), 'guest-dmabuf-gpu-guest-'));
  try {
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev']) mkdirSync(join(stage, d));
    copyFileSync(BUSYBOX, join(stage, 'bin', 'busybox'));
    copyFileSync(draw, join(stage, 'bin', 'draw-fb'));
    for (const file of modules) copyFileSync(file, join(stage, 'modules', basename(file)));
    // Empty for a kernel with everything built in: init.sh then loads nothing.
    writeFileSync(join(stage, 'modules.list'), modules.map((f) => `${basename(f)}\n`).join(''));
    copyFileSync(init, join(stage, 'init'));
    execFileSync('chmod', ['755', join(stage, 'init'), join(stage, 'bin', 'draw-fb')]);
    writeCpio(stage, target);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return target;
}
