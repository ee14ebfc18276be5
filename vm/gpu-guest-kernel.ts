// The GPU test guest's own kernel: Debian's linux-source-6.1 on tinyconfig plus
// vm/gpu-guest-kernel.config (virtio-gpu, fbdev and fbcon built in, no modules), booted nested as
// `-kernel vmlinux` through PVH. About 3× faster to the picture than Debian's kernel under nested
// TCG (shared/design.md §4). Built once by scripts/build-kernel.sh (vm/kernel-build.ts), cached in
// hostCacheDir()/gpu-guest-kernel/build-<key>/ by fragment and source version.
import { join } from 'node:path';
import { builtRelease, buildKernel, isBuilt, kernelCacheKey, SOURCE_PACKAGE, sourceVersion, type KernelBuildSpec } from './kernel-build.js';
import type { Kernel } from './kernels.js';
import { hostCacheDir, PROJECT_ROOT } from './paths.js';

export const GPU_GUEST_FRAGMENT = join(PROJECT_ROOT, 'vm', 'gpu-guest-kernel.config');
/** Bump when the recipe changes what it produces (the script's text is not hashed). */
const RECIPE = '1';
const NAME = 'gpu-guest-kernel';

function spec(): KernelBuildSpec & { key: string } {
  const version = sourceVersion();
  const key = kernelCacheKey(RECIPE, version, GPU_GUEST_FRAGMENT);
  return {
    key,
    name: NAME,
    fragment: GPU_GUEST_FRAGMENT,
    build: join(hostCacheDir(), NAME, `build-${key}`),
    version,
    target: 'vmlinux',
    outputs: ['vmlinux'],
    announce: `building the GPU guest kernel ${key} from ${SOURCE_PACKAGE} ${version} (about 7 CPU-minutes: 8–14 min wall on a busy 2-core machine)`,
  };
}

function asKernel(s: ReturnType<typeof spec>): Kernel {
  const release = builtRelease(s);
  return {
    version: `${release}-gpu-guest-${s.key}`,
    release,
    image: join(s.build, 'vmlinux'),
    headers: s.build,
    // Everything the guest needs is built in: the initramfs loads no modules.
    builtinRootDrivers: true,
  };
}

/** The GPU guest kernel, built first when the cache has none for this fragment and source. */
export function ensureGpuGuestKernel(log: (line: string) => void = () => {}): Kernel {
  const s = spec();
  buildKernel(s, log);
  return asKernel(s);
}

/**
 * The cached GPU guest kernel, never building: in the test VM the cache is on the read-only
 * host root, so it must have been built on the host (test/run-suites.ts, or
 * `node dist/vm/gpu-guest-cli.js`).
 */
export function cachedGpuGuestKernel(): Kernel {
  const s = spec();
  if (!isBuilt(s)) throw new Error(`the GPU guest kernel ${s.key} is not built: run \`node dist/vm/gpu-guest-cli.js\` on the host first (${s.build})`);
  return asKernel(s);
}
