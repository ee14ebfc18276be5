// What management software learns about the back end without running a guest: the capability
// JSON of `--print-capabilities` and the vhost-user.json description file (type "gpu") that
// libvirt looks for in /usr/share/qemu/vhost-user, /etc/qemu/vhost-user and
// $XDG_CONFIG_HOME/qemu/vhost-user (QEMU's docs/interop/vhost-user.json).
import { accessSync, chmodSync, constants, mkdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** vhost-user.json's VHostUserBackendCapabilities for type "gpu". */
export interface GpuCapabilities {
  type: 'gpu';
  /** VHostUserBackendGPUFeature: 'render-node' and 'virgl' are the only ones defined; we have neither. */
  features: ('render-node' | 'virgl')[];
}

/** vhost-user.json's VhostUserBackend. */
export interface VhostUserBackendDescription {
  description: string;
  type: 'gpu';
  binary: string;
  tags?: string[];
}

/** Sorted before QEMU's own 50-qemu-gpu.json, so libvirt picks this back end when both are installed. */
export const DESCRIPTION_FILE_NAME = '50-guest-dmabuf-gpu.json';

export function gpuCapabilities(): GpuCapabilities {
  return { type: 'gpu', features: [] };
}

export function describeBackend(binary: string): VhostUserBackendDescription {
  return {
    description: 'guest-dmabuf vhost-user-gpu: virtio-gpu 2D, scanouts as zero-copy dma-bufs of guest memory (udmabuf)',
    type: 'gpu',
    binary,
    tags: ['virtio-gpu-2d', 'udmabuf'],
  };
}

/** The back-end program next to this module (dist/qemu-glue/vhost-user-gpu-cli.js), symlinks resolved. */
export function backendBinary(): string {
  return realpathSync(fileURLToPath(new URL('../vhost-user-gpu-cli.js', import.meta.url)));
}

/** Where a per-user description goes: $XDG_CONFIG_HOME/qemu/vhost-user (default ~/.config/qemu/vhost-user). */
export function userDescriptionDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'qemu', 'vhost-user');
}

export const SYSTEM_DESCRIPTION_DIR = '/etc/qemu/vhost-user';

/**
 * Writes the description for `binary` into `dir` (made if missing) and makes `binary`
 * executable, because libvirt executes it directly and tsc writes its output without the
 * execute bit. Returns the file written.
 */
export function installDescription(dir: string, binary: string = backendBinary()): string {
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    chmodSync(binary, statSync(binary).mode | 0o111);
  }
  mkdirSync(dir, { recursive: true });
  const file = join(dir, DESCRIPTION_FILE_NAME);
  writeFileSync(file, `${JSON.stringify(describeBackend(binary), null, 2)}\n`);
  return file;
}
