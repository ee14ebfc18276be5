// Building (and caching per kernel) the VM's initramfs: static busybox, the 9p and virtio
// modules of that kernel in dependency order, and /init.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { GUEST_INIT } from './guest-init.js';
import type { Kernel } from './kernels.js';
import { cacheDir } from './paths.js';

const BUSYBOX = '/bin/busybox';
/** What the guest needs to mount the host over 9p; dependencies are added by modinfo. */
const ROOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];

function modinfo(version: string, field: string, name: string): string {
  return execFileSync('/sbin/modinfo', ['-k', version, '-F', field, name], { encoding: 'utf8' }).trim();
}

/** Module files for `names` and their dependencies, dependencies first; built-ins skipped. */
export function moduleLoadOrder(version: string, names: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    let file: string;
    try {
      file = modinfo(version, 'filename', name);
    } catch {
      throw new Error(`kernel ${version} has no module ${name}: is linux-image-${version} fully installed?`);
    }
    if (!file.startsWith('/')) return; // (builtin)
    const deps = modinfo(version, 'depends', name).split(',').filter(Boolean);
    for (const dep of deps) visit(dep);
    order.push(file);
  };
  for (const name of names) visit(name);
  return order;
}

/** Returns the cached initramfs for `kernel`, building it when missing. */
export function ensureInitramfs(kernel: Kernel, log: (line: string) => void = () => {}): string {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: run \`npm run setup\` (busybox-static)`);
  const modules = kernel.builtinRootDrivers ? [] : moduleLoadOrder(kernel.version, ROOT_MODULES);
  const key = createHash('sha256').update(GUEST_INIT).update(modules.join('\n')).digest('hex').slice(0, 12);
  const dir = cacheDir();
  const target = join(dir, `initramfs-${kernel.version}-${key}.cpio`);
  if (existsSync(target)) return target;

  log(`building the initramfs for ${kernel.version}`);
  mkdirSync(dir, { recursive: true });
  const stage = mkdtempSync(join(tmpdir(), 'guest-dmabuf-initramfs-'));
  try {
    for (const d of ['bin', 'sbin', 'modules', 'proc', 'sys', 'dev', 'newroot']) mkdirSync(join(stage, d));
    copyFileSync(BUSYBOX, join(stage, 'bin', 'busybox'));
    const names: string[] = [];
    for (const file of modules) {
      copyFileSync(file, join(stage, 'modules', basename(file)));
      names.push(basename(file));
    }
    writeFileSync(join(stage, 'modules.list'), names.join('\n') + '\n');
    writeFileSync(join(stage, 'init'), GUEST_INIT, { mode: 0o755 });
    writeCpio(stage, target);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return target;
}

/** Packs `stage` as an uncompressed newc cpio at `target`, atomically (a rename), for the cache. */
export function writeCpio(stage: string, target: string): void {
  const cpio = execFileSync('sh', ['-c', 'find . | cpio -o -H newc --quiet'], { cwd: stage, maxBuffer: 1 << 30 });
  const tmp = `${target}.${process.pid}`;
  writeFileSync(tmp, cpio);
  renameSync(tmp, target);
}
