// What the kernels built from Debian's linux-source-6.1 share (the debug kernel, the GPU test
// guest's kernel): the source version, the cache key, the one unpacked source tree, and running
// scripts/build-kernel.sh (tinyconfig + a fragment, every option checked, nice 19, progress).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, PROJECT_ROOT } from './paths.js';

export const SOURCE_PACKAGE = 'linux-source-6.1';
export const TARBALL = '/usr/src/linux-source-6.1.tar.xz';
const BUILD_SCRIPT = join(PROJECT_ROOT, 'scripts', 'build-kernel.sh');

export function requireTarball(): void {
  if (!existsSync(TARBALL)) throw new Error(`${TARBALL} is missing: run \`npm run setup\` (package ${SOURCE_PACKAGE})`);
}

/** The package's version, or (no dpkg record) the tarball's size and time. */
export function sourceVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', SOURCE_PACKAGE], { encoding: 'utf8' }).trim();
  } catch {
    requireTarball();
    const st = statSync(TARBALL);
    return `tar-${st.size}-${Math.floor(st.mtimeMs)}`;
  }
}

/**
 * The cache key of a build: recipe, source version and the fragment's bytes. The debug kernel's
 * keys were made this way before this module existed; changing the text hashed here rebuilds
 * every cached debug kernel (15+ minutes per machine).
 */
export function kernelCacheKey(recipe: string, version: string, fragment: string): string {
  return createHash('sha256').update(`recipe ${recipe}\nsource ${version}\n`).update(readFileSync(fragment)).digest('hex').slice(0, 12);
}

/**
 * Where the source is unpacked, once for every kernel built from it. Under debug-kernel/ because
 * that is where the first builder put it, and existing debug build trees refer to it by path.
 */
export function sourceDir(version: string): string {
  return join(cacheDir(), 'debug-kernel', `src-${version}`);
}

export interface KernelBuildSpec {
  /** Log prefix and marker names: BUILD/.NAME-done, BUILD/.NAME-release. */
  name: string;
  fragment: string;
  build: string;
  version: string;
  /** `all` or `vmlinux`. */
  target: string;
  /** Files under `build` the build must produce. */
  outputs: readonly string[];
  /** Said before a build starts: what is built and about how long it takes. */
  announce: string;
}

export const isBuilt = (spec: Pick<KernelBuildSpec, 'name' | 'build'>): boolean => existsSync(join(spec.build, `.${spec.name}-done`));

export function builtRelease(spec: Pick<KernelBuildSpec, 'name' | 'build'>): string {
  return readFileSync(join(spec.build, `.${spec.name}-release`), 'utf8').trim();
}

/** Builds unless built (GUEST_DMABUF_KERNEL_JOBS jobs, default 3); returns the build's seconds, 0 when cached. */
export function buildKernel(spec: KernelBuildSpec, log: (line: string) => void): number {
  if (isBuilt(spec)) return 0;
  requireTarball();
  const jobs = process.env.GUEST_DMABUF_KERNEL_JOBS ?? '3';
  log(`${spec.announce}; ${jobs} jobs under nice 19, into ${spec.build}`);
  const started = Date.now();
  const r = spawnSync('bash', [BUILD_SCRIPT, spec.name, TARBALL, sourceDir(spec.version), spec.fragment, spec.build, jobs, spec.target, ...spec.outputs], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0 || !isBuilt(spec)) {
    throw new Error(`building ${spec.name} failed (exit ${r.status ?? r.signal}); the build tree is ${spec.build}`);
  }
  const seconds = (Date.now() - started) / 1000;
  log(`${spec.name} built in ${seconds.toFixed(0)} s`);
  return seconds;
}
