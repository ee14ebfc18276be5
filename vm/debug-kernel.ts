// The debug kernel (`--kernel debug`): Debian's linux-source-6.1 configured for a QEMU guest with
// KASAN, lockdep, kmemleak, DMA-API debugging, page-alloc debugging and fault injection, built
// once by scripts/build-kernel.sh (through vm/kernel-build.ts) and cached by configuration and
// source version.
//
// Cache layout under cacheDir()/debug-kernel/:
//   src-<source version>/   the unpacked source (the build tree refers to it)
//   build-<key>/            the O= build tree: arch/x86/boot/bzImage (booted), vmlinux, System.map,
//                           Module.symvers, and everything `make -C build-<key> M=…` needs
//   build-<key>/modroot/lib/modules/<release>/   modules.builtin + depmod output, shown to the
//                           guest as /lib/modules/<release> so `modprobe vgem` (built in) succeeds
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtRelease, buildKernel, kernelCacheKey, requireTarball, SOURCE_PACKAGE, sourceDir, sourceVersion, type KernelBuildSpec } from './kernel-build.js';
import type { Kernel } from './kernels.js';
import { cacheDir, PROJECT_ROOT } from './paths.js';

export const DEBUG_SELECTOR = 'debug';
export const DEBUG_FRAGMENT = join(PROJECT_ROOT, 'vm', 'debug-kernel.config');
/** Marker names in the build tree (.debug-kernel-done, .debug-kernel-release): fixed, cached trees have them. */
const NAME = 'debug-kernel';
// vm/debug-kernel.config names scripts/build-debug-kernel.sh (now scripts/build-kernel.sh) in a
// comment that stays: the fragment's bytes are in the cache key, and a new key rebuilds the debug
// kernel on every machine.
/** Bump when the build recipe changes what it produces (the script's text is not hashed). */
const RECIPE = '1';

/**
 * Kernel command line for the debug kernel: every KASAN report (not only the first), real
 * pointers in reports, page-alloc debugging on (the config's default, stated), a 16 MiB log buffer
 * (128 KiB wrapped during a full suite plus the fail-nth sweep, losing the suites' part of the log
 * the runner checks). kmemleak is on by
 * default and scanned once by the guest init at the end of the run (no auto-scan thread).
 */
export const DEBUG_CMDLINE = ['kasan_multi_shot', 'no_hash_pointers', 'debug_pagealloc=on', 'log_buf_len=16M'];

/**
 * The in-tree udmabuf is built in for side-by-side runs, but 6.1's maps hugetlb subpages with
 * get_page() in its fault handler (upstream fixed it in 6.12 with VM_PFNMAP): the conformance
 * suite's "in-tree: the same over a 2 MiB hugetlb memfd" ends in `kernel BUG at mm/hugetlb.c:1926`
 * (free_huge_page: VM_BUG_ON_FOLIO(folio_mapcount(folio))) when the memfd is closed, which kills
 * the run. So by default it is kept from registering, and ours is /dev/udmabuf as on Debian's 6.1;
 * GUEST_DMABUF_DEBUG_IN_TREE=1 lets it register (ours is then /dev/guest-udmabuf).
 */
/**
 * Without ACPI the guest has no HPET or PM timer to calibrate the TSC against, and the PIT
 * calibration fails under TCG, so the kernel fell back to the jiffies clocksource: 4 ms clock
 * resolution and no vDSO (every clock_gettime a real syscall, which also puts Node's clock reads
 * in the way of fail-nth). TCG's TSC runs at the host's TSC rate: hand that over.
 */
function clockArgs(): string[] {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
  return mhz ? [`tsc_early_khz=${Math.round(Number(mhz) * 1000)}`, 'tsc=reliable'] : [];
}

function inTreeArgs(): string[] {
  return process.env.GUEST_DMABUF_DEBUG_IN_TREE === '1' ? [] : ['initcall_blacklist=udmabuf_dev_init'];
}

export interface DebugKernelBuild {
  key: string;
  sourceVersion: string;
  source: string;
  build: string;
}

export function debugKernelPaths(): DebugKernelBuild {
  const version = sourceVersion();
  const key = kernelCacheKey(RECIPE, version, DEBUG_FRAGMENT);
  return { key, sourceVersion: version, source: sourceDir(version), build: join(cacheDir(), 'debug-kernel', `build-${key}`) };
}

/** The modules.builtin tree `modprobe` needs to answer "built in" for vgem, vivid, udmabuf. */
function ensureModulesDir(build: string, release: string): string {
  const root = join(build, 'modroot');
  const dir = join(root, 'lib', 'modules', release);
  if (existsSync(join(dir, 'modules.builtin.bin'))) return dir;
  mkdirSync(dir, { recursive: true });
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    if (existsSync(join(build, f))) copyFileSync(join(build, f), join(dir, f));
  }
  execFileSync('/sbin/depmod', ['-b', root, release], { stdio: ['ignore', 'ignore', 'pipe'] });
  return dir;
}

/**
 * Returns the debug kernel, building it first when the cache has none for this configuration and
 * source version (minutes: nice 19, GUEST_DMABUF_KERNEL_JOBS jobs, default 3).
 */
export function ensureDebugKernel(log: (line: string) => void = () => {}): Kernel {
  requireTarball();
  const paths = debugKernelPaths();
  const spec: KernelBuildSpec = {
    name: NAME,
    fragment: DEBUG_FRAGMENT,
    build: paths.build,
    version: paths.sourceVersion,
    target: 'all',
    outputs: ['vmlinux', 'System.map', 'Module.symvers', 'arch/x86/boot/bzImage', 'scripts/mod/modpost'],
    announce: `building the debug kernel ${paths.key} from ${SOURCE_PACKAGE} ${paths.sourceVersion} (about 14 min of CPU; 25 min wall on a loaded 2-core machine)`,
  };
  buildKernel(spec, log);
  const release = builtRelease(spec);
  return {
    version: `${release}-debug-${paths.key}`,
    release,
    // Through SeaBIOS: this KASAN kernel dies before its first console line when entered through
    // PVH (`-kernel vmlinux`), so the bzImage it is.
    image: join(paths.build, 'arch', 'x86', 'boot', 'bzImage'),
    headers: paths.build,
    builtinRootDrivers: true,
    modulesDir: ensureModulesDir(paths.build, release),
    cmdline: [...DEBUG_CMDLINE, ...clockArgs(), ...inTreeArgs()],
    debug: true,
  };
}
