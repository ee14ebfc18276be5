// A driver's module parameters, re-read on every use (root may change them at run time) but
// cheaply: each file is opened once, with the device, and re-read with pread at offset 0, which
// makes sysfs regenerate it. That is 1 syscall a value instead of open, fstat, read and close.
import { closeSync, openSync, readSync } from 'node:fs';
import { cleanUpWhenCollected, forgetCollected } from '../fd/collector.js';

function closeAll(fds: Map<string, number>): void {
  for (const fd of fds.values()) closeSync(fd);
  fds.clear();
}

export class ModuleParams {
  readonly path: string;
  /** The open parameter files; a parameter the module does not have is absent. */
  readonly #fds = new Map<string, number>();
  readonly #buffer = Buffer.alloc(32);

  /** Opens `names` in `path`, the module's parameters folder (`/sys/module/<name>/parameters`). */
  constructor(path: string, names: readonly string[]) {
    this.path = path;
    for (const name of names) {
      try {
        this.#fds.set(name, openSync(`${path}/${name}`, 'r'));
      } catch {
        // An older module without this parameter: readers get their fallback.
      }
    }
    // A device dropped without close() must not leave its parameter files open.
    const fds = this.#fds;
    cleanUpWhenCollected(this, () => closeAll(fds));
  }

  /** The parameter as a number, or `fallback` when the module has no such parameter. */
  number(name: string, fallback: number): number {
    const fd = this.#fds.get(name);
    if (fd === undefined) return fallback;
    const length = readSync(fd, this.#buffer, 0, this.#buffer.length, 0);
    const value = Number(this.#buffer.toString('latin1', 0, length).trim());
    return Number.isFinite(value) ? value : fallback;
  }

  close(): void {
    forgetCollected(this);
    closeAll(this.#fds);
  }
}
