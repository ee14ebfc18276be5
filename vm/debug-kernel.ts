// The debug kernel (`--kernel debug`): Debian's linux-source-6.1 configured for a QEMU guest with
// KASAN, lockdep, kmemleak, DMA-API debugging, page-alloc debugging and fault injection, built
// once by scripts/build-debug-kernel.sh and cached by configuration and source version.
//
// Cache layout under cacheDir()/debug-kernel/:
//   src-<source version>/   the unpacked source (the build tree refers to it)
//   build-<key>/            the O= build tree: arch/x86/boot/bzImage (booted), vmlinux, System.map,
//                           Module.symvers, and everything `make -C build-<key> M=…` needs
//   build-<key>/modroot/lib/modules/<release>/   modules.builtin + depmod output, shown to the
//                           guest as /lib/modules/<release> so `modprobe vgem` (built in) succeeds
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernel } from './kernels.js';
import { cacheDir, PROJECT_ROOT } from './paths.js';

export const DEBUG_SELECTOR = 'debug';
const SOURCE_PACKAGE = 'linux-source-6.1';
const TARBALL = '/usr/src/linux-source-6.1.tar.xz';
export const DEBUG_FRAGMENT = join(PROJECT_ROOT, 'vm', 'debug-kernel.config');
const BUILD_SCRIPT = join(PROJECT_ROOT, 'scripts', 'build-debug-kernel.sh');
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

function sourceVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', SOURCE_PACKAGE], { encoding: 'utf8' }).trim();
  } catch {
    if (!existsSync(TARBALL)) {
      throw new Error(`${TARBALL} is missing: run \`npm run setup\` (package ${SOURCE_PACKAGE})`);
    }
    const st = statSync(TARBALL);
    return `tar-${st.size}-${Math.floor(st.mtimeMs)}`;
  }
}

export interface DebugKernelBuild {
  key: string;
  sourceVersion: string;
  source: string;
  build: string;
}

export function debugKernelPaths(): DebugKernelBuild {
  const version = sourceVersion();
  const key = createHash('sha256')
    .update(`recipe ${RECIPE}\nsource ${version}\n`)
    .update(readFileSync(DEBUG_FRAGMENT))
    .digest('hex')
    .slice(0, 12);
  const base = join(cacheDir(), 'debug-kernel');
  return { key, sourceVersion: version, source: join(base, `src-${version}`), build: join(base, `build-${key}`) };
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
  if (!existsSync(TARBALL)) throw new Error(`${TARBALL} is missing: run \`npm run setup\` (package ${SOURCE_PACKAGE})`);
  const paths = debugKernelPaths();
  const done = join(paths.build, '.debug-kernel-done');
  if (!existsSync(done)) {
    const jobs = process.env.GUEST_DMABUF_KERNEL_JOBS ?? '3';
    log(`building the debug kernel ${paths.key} from ${SOURCE_PACKAGE} ${paths.sourceVersion} into ${paths.build}`);
    const started = Date.now();
    const r = spawnSync('bash', [BUILD_SCRIPT, TARBALL, paths.source, DEBUG_FRAGMENT, paths.build, jobs], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (r.status !== 0 || !existsSync(done)) {
      throw new Error(`building the debug kernel failed (exit ${r.status ?? r.signal}); the build tree is ${paths.build}`);
    }
    log(`debug kernel built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const release = readFileSync(join(paths.build, '.debug-kernel-release'), 'utf8').trim();
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
