// A driver's module parameters, re-read on every use (root may change them at run time) but
// cheaply: each file stays open and is re-read with pread at offset 0, which makes sysfs
// regenerate it. That is 1 syscall a value instead of open, fstat, read and close.
import { closeSync, openSync, readSync } from 'node:fs';

// A device dropped without close() must not leave its parameter files open.
const collector = new FinalizationRegistry<Map<string, number | null>>(closeAll);

function closeAll(fds: Map<string, number | null>): void {
  for (const fd of fds.values()) if (fd !== null) closeSync(fd);
  fds.clear();
}

export class ModuleParams {
  readonly path: string;
  readonly #fds = new Map<string, number | null>();
  readonly #buffer = Buffer.alloc(32);

  /** `path` is the module's parameters folder, `/sys/module/<name>/parameters`. */
  constructor(path: string) {
    this.path = path;
    collector.register(this, this.#fds, this);
  }

  /** The parameter as a number, or `fallback` when the module has no such parameter. */
  number(name: string, fallback: number): number {
    let fd = this.#fds.get(name);
    if (fd === undefined) {
      try {
        fd = openSync(`${this.path}/${name}`, 'r');
      } catch {
        fd = null;
      }
      this.#fds.set(name, fd);
    }
    if (fd === null) return fallback;
    const length = readSync(fd, this.#buffer, 0, this.#buffer.length, 0);
    const value = Number(this.#buffer.toString('latin1', 0, length).trim());
    return Number.isFinite(value) ? value : fallback;
  }

  close(): void {
    collector.unregister(this);
    closeAll(this.#fds);
  }
}
