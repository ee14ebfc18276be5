// Building the udmabuf module for one kernel, in a per-kernel copy of the sources so that
// builds for 6.1 and 6.12 never share objects. Rebuilds only when a source is newer.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Kernel } from './kernels.js';
import { BUILD_DIR, MODULE_SOURCE } from './paths.js';

export const MODULE_NAME = 'guest_udmabuf';

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(c|h)$|^(Kbuild|Makefile)$/.test(entry.name)) out.push(path);
  }
  return out;
}

function newestMtime(files: string[]): number {
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

/** Returns the path of the built `.ko` for `kernel`, building it first if stale. */
export function buildModule(kernel: Kernel, log: (line: string) => void = () => {}): string {
  if (!existsSync(join(kernel.headers, 'Makefile'))) {
    throw new Error(`no kernel headers for ${kernel.version} at ${kernel.headers}: run \`npm run setup\``);
  }
  const dir = join(BUILD_DIR, 'module', kernel.version);
  const ko = join(dir, `${MODULE_NAME}.ko`);
  const sources = sourceFiles(MODULE_SOURCE);
  if (existsSync(ko) && statSync(ko).mtimeMs >= newestMtime(sources)) return ko;

  log(`building ${MODULE_NAME}.ko for ${kernel.version}`);
  rmSync(dir, { recursive: true, force: true });
  for (const file of sources) {
    const target = join(dir, relative(MODULE_SOURCE, file));
    mkdirSync(join(target, '..'), { recursive: true });
    cpSync(file, target);
  }
  try {
    execFileSync('make', ['-s', '-C', kernel.headers, `M=${dir}`, 'W=1', 'modules'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`building the module for ${kernel.version} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  return ko;
}
