// Finding the Debian kernels the VM can boot, and their headers for building the module.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEBUG_SELECTOR, ensureDebugKernel } from './debug-kernel.js';

export interface Kernel {
  /** The full release string, e.g. `6.12.95+deb12-amd64`. */
  readonly version: string;
  readonly image: string;
  /** The headers tree the module builds against. */
  readonly headers: string;
  /** `uname -r` in the guest when it differs from `version` (the debug kernel). */
  readonly release?: string;
  /** virtio-pci and 9p are built in: the initramfs loads no modules. */
  readonly builtinRootDrivers?: boolean;
  /** A host directory the guest sees as /lib/modules/<release> (modules.builtin for modprobe). */
  readonly modulesDir?: string;
  /** Extra kernel command-line arguments. */
  readonly cmdline?: readonly string[];
  /** A kernel built for catching bugs (KASAN, lockdep, kmemleak, fault injection). */
  readonly debug?: boolean;
}

const BOOT = '/boot';

function installedVersions(): string[] {
  if (!existsSync(BOOT)) return [];
  return readdirSync(BOOT)
    .filter((f) => f.startsWith('vmlinuz-'))
    .map((f) => f.slice('vmlinuz-'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

function headersFor(version: string): string {
  for (const dir of [`/usr/src/linux-headers-${version}`, `/lib/modules/${version}/build`]) {
    if (existsSync(join(dir, 'Makefile'))) return dir;
  }
  return `/usr/src/linux-headers-${version}`;
}

/**
 * Resolves `6.1`, `6.12` (the newest installed of that series) or an exact release string.
 * Without a selector, the newest installed kernel. `debug` is the debug kernel built from
 * linux-source-6.1 (vm/debug-kernel.ts), built first when not cached.
 */
export function resolveKernel(selector?: string, log?: (line: string) => void): Kernel {
  if (selector === DEBUG_SELECTOR) return ensureDebugKernel(log);
  const versions = installedVersions();
  if (versions.length === 0) {
    throw new Error(`no kernel image in ${BOOT}: run \`npm run setup\` to install Debian's kernels`);
  }
  let version: string | undefined;
  if (!selector) {
    version = versions[versions.length - 1];
  } else if (versions.includes(selector)) {
    version = selector;
  } else {
    const series = versions.filter((v) => v.startsWith(`${selector}.`) || v.startsWith(`${selector}-`) || v.startsWith(`${selector}+`));
    version = series[series.length - 1];
  }
  if (!version) {
    throw new Error(`no installed kernel matches "${selector}"; installed: ${versions.join(', ')}. ` +
      'Use 6.1, 6.12 or one of those exact versions (npm run setup installs 6.1 and 6.12).');
  }
  return { version, image: join(BOOT, `vmlinuz-${version}`), headers: headersFor(version) };
}
