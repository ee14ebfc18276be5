// How the GPU test guest boots nested: which kernel image (an uncompressed vmlinux through PVH
// where there is one: ~100 s to the first scanout for Debian's 6.1 against ~135 s through
// SeaBIOS and the bzImage), which initramfs, which command line. `prepare` builds everything on
// the host; in the test VM (the cache is on the read-only host root) `build: false` only looks.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_KERNEL_ARGS } from './accel.js';
import { ensureGpuGuestInitramfs } from './gpu-guest.js';
import { cachedGpuGuestKernel, ensureGpuGuestKernel } from './gpu-guest-kernel.js';
import { sourceDir, sourceVersion } from './kernel-build.js';
import { resolveKernel, type Kernel } from './kernels.js';
import { hostCacheDir } from './paths.js';

/** `tiny`: the GPU guest kernel; anything else: a Debian kernel selector (`6.1`, `6.12`, a release). */
export type GpuGuestKernelChoice = string;
export const TINY = 'tiny';

export interface GpuGuestBoot {
  kernel: Kernel;
  /** What `-kernel` gets. */
  image: string;
  /** `pvh` (an ELF vmlinux) or `bzimage` (through SeaBIOS). */
  entry: 'pvh' | 'bzimage';
  initramfs: string;
  /** Without the test's own switches (gpu_guest.*). */
  cmdline: string[];
}

/** The Debian kernel's vmlinux, extracted from its bzImage with the kernel source's own script; null when there is none. */
function debianVmlinux(kernel: Kernel, build: boolean): string | null {
  const target = join(hostCacheDir(), 'gpu-guest-vmlinux', `vmlinux-${kernel.version}`);
  if (existsSync(target) || !build) return existsSync(target) ? target : null;
  const script = join(sourceDir(sourceVersion()), 'scripts', 'extract-vmlinux');
  if (!existsSync(script)) return null;
  mkdirSync(join(hostCacheDir(), 'gpu-guest-vmlinux'), { recursive: true });
  const elf = execFileSync('sh', [script, kernel.image], { maxBuffer: 512 << 20 });
  const tmp = `${target}.${process.pid}`;
  writeFileSync(tmp, elf);
  renameSync(tmp, target);
  return target;
}

export function gpuGuestBoot(choice: GpuGuestKernelChoice, options: { build?: boolean; log?: (line: string) => void } = {}): GpuGuestBoot {
  const build = options.build ?? true;
  const log = options.log ?? (() => {});
  const kernel = choice === TINY ? (build ? ensureGpuGuestKernel(log) : cachedGpuGuestKernel()) : resolveKernel(choice, log);
  const vmlinux = choice === TINY ? kernel.image : debianVmlinux(kernel, build);
  return {
    kernel,
    image: vmlinux ?? kernel.image,
    entry: vmlinux ? 'pvh' : 'bzimage',
    initramfs: ensureGpuGuestInitramfs(kernel, log, { build }),
    // vt.global_cursor_default=0: fbcon's cursor would blink into the picture.
    cmdline: [...GUEST_KERNEL_ARGS, 'vt.global_cursor_default=0', ...(kernel.cmdline ?? [])],
  };
}

/** Builds on the host what the VM suite's GPU tests boot: the GPU guest kernel and the guests for `choices`. */
export function prepareGpuGuests(choices: readonly GpuGuestKernelChoice[], log: (line: string) => void): GpuGuestBoot[] {
  return choices.map((choice) => gpuGuestBoot(choice, { build: true, log }));
}

export interface GpuGuestQemuOptions {
  image: string;
  initramfs: string;
  cmdline: readonly string[];
  /** Without it a guest's `reboot -f` ends QEMU (-no-reboot); with it the guest restarts (the reboot tests). */
  reboot?: boolean;
}

/**
 * QEMU 10.0's arguments (after its own `extraArgs`) for the GPU guest on the display device
 * `device` (its -device and what that needs): q35 under TCG, 512 MiB of shared, sealed memfd RAM
 * (vhost-user maps it, udmabuf wraps it), no display (tests look at dma-bufs and screendumps),
 * the serial console on stdio.
 */
export function gpuGuestQemuArgs(device: readonly string[], options: GpuGuestQemuOptions): string[] {
  return [
    '-machine', 'q35,accel=tcg,memory-backend=ram',
    '-object', 'memory-backend-memfd,id=ram,size=512M,share=on',
    '-m', '512M', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
    ...(options.reboot ? [] : ['-no-reboot']),
    ...device,
    '-serial', 'stdio',
    '-kernel', options.image, '-initrd', options.initramfs,
    '-append', options.cmdline.join(' '),
  ];
}

/**
 * gpuGuestQemuArgs on `-device vhost-user-gpu-pci` served at `socketPath`; `display` sets the
 * mode QEMU reports to the guest (its xres/yres; default 1280×800).
 */
export function vhostUserGpuQemuArgs(options: GpuGuestQemuOptions & { socketPath: string; display?: { width: number; height: number } }): string[] {
  const mode = options.display ? `,xres=${options.display.width},yres=${options.display.height}` : '';
  return gpuGuestQemuArgs(['-chardev', `socket,id=vgpu,path=${options.socketPath.replaceAll(',', ',,')}`, '-device', `vhost-user-gpu-pci,chardev=vgpu${mode}`], options);
}
