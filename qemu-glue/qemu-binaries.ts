// Which QEMU to run: the system's 7.2 (Debian 12) or bookworm-backports' 10.0, unpacked beside
// it by scripts/setup-host.sh. An unpacked QEMU finds its modules and firmware only when told:
// QEMU_MODULE_DIR for the modules, -L for the firmware (its own data, then the system SeaBIOS).
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { GuestDmabufError } from '../lib/core/errors.js';

export type QemuVersion = '7.2' | '10.0';

export interface QemuBinary {
  version: QemuVersion;
  /** The qemu-system-x86_64 executable. */
  binary: string;
  /** Variables to add to the environment QEMU runs in. */
  env: Record<string, string>;
  /** Arguments to put before any others (firmware search paths). */
  extraArgs: string[];
}

/** Default folder of the unpacked 10.0 (setup-host.sh's QEMU10_ROOT). */
export const QEMU_10_0_DEFAULT_ROOT = '/var/cache/guest-dmabuf/qemu-10.0';

/**
 * The QEMU of `version`. Overrides: GUEST_DMABUF_QEMU_7_2 (a qemu-system-x86_64 path) and
 * GUEST_DMABUF_QEMU_10_0_ROOT (the folder the 10.0 packages were unpacked into).
 */
export function findQemu(version: QemuVersion = '7.2', env: NodeJS.ProcessEnv = process.env): QemuBinary {
  if (version === '7.2') {
    const binary = env.GUEST_DMABUF_QEMU_7_2 || '/usr/bin/qemu-system-x86_64';
    requireExecutable(binary, version, 'install it with `apt-get install qemu-system-x86` (or run scripts/setup-host.sh), or set GUEST_DMABUF_QEMU_7_2');
    return { version, binary, env: {}, extraArgs: [] };
  }
  if (version === '10.0') {
    const root = env.GUEST_DMABUF_QEMU_10_0_ROOT || QEMU_10_0_DEFAULT_ROOT;
    const binary = join(root, 'usr/bin/qemu-system-x86_64');
    requireExecutable(binary, version, 'run scripts/setup-host.sh (it unpacks bookworm-backports\' QEMU there), or set GUEST_DMABUF_QEMU_10_0_ROOT to where it is unpacked');
    return {
      version,
      binary,
      env: { QEMU_MODULE_DIR: join(root, 'usr/lib/x86_64-linux-gnu/qemu') },
      extraArgs: ['-L', join(root, 'usr/share/qemu'), '-L', '/usr/share/seabios'],
    };
  }
  throw new GuestDmabufError(`unknown QEMU version "${String(version)}": use '7.2' or '10.0'`, 'ERR_INVALID_ARG_VALUE');
}

/**
 * QEMU's own vhost-user-gpu back end (contrib/vhost-user-gpu) from the unpacked 10.0 packages
 * (qemu-system-gui); it links libvirglrenderer1, which setup-host.sh installs.
 */
export function contribVhostUserGpu(env: NodeJS.ProcessEnv = process.env): string {
  const root = env.GUEST_DMABUF_QEMU_10_0_ROOT || QEMU_10_0_DEFAULT_ROOT;
  const binary = join(root, 'usr/lib/qemu/vhost-user-gpu');
  requireExecutable(binary, '10.0', 'run scripts/setup-host.sh (it unpacks bookworm-backports\' qemu-system-gui there), or set GUEST_DMABUF_QEMU_10_0_ROOT');
  return binary;
}

/** The QEMU versions this machine has, in ascending order. */
export function availableQemus(env: NodeJS.ProcessEnv = process.env): QemuBinary[] {
  const found: QemuBinary[] = [];
  for (const version of ['7.2', '10.0'] as const) {
    try {
      found.push(findQemu(version, env));
    } catch {
      // Not installed: the caller decides whether that matters.
    }
  }
  return found;
}

function requireExecutable(path: string, version: QemuVersion, hint: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch (err) {
    throw new GuestDmabufError(`QEMU ${version} is not at ${path}: ${hint}`, 'ERR_QEMU_NOT_FOUND', { cause: err });
  }
}
