// Where the project and its build products live, whatever directory the runner starts in.
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: this file is at dist/vm/paths.js. */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MODULE_SOURCE = join(PROJECT_ROOT, 'udmabuf');
/** Module builds, one folder per kernel (build/ belongs to cmake-js). */
export const BUILD_DIR = join(PROJECT_ROOT, 'kbuild');

export function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'guest-dmabuf');
}

/**
 * The host's cache as the test VM sees it: read-only there, and not cacheDir() (the guest's HOME is
 * its own), so the runner passes the host's path as GUEST_DMABUF_HOST_CACHE. On the host,
 * cacheDir(). For what the host builds for the guest (the nested GPU guests).
 */
export function hostCacheDir(): string {
  return process.env.GUEST_DMABUF_HOST_CACHE || cacheDir();
}
