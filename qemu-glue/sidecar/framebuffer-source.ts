// Framebuffers described by the user (ramfb, a firmware framebuffer, VGA VRAM under QEMU 10.0's
// aux-ram-share) as a surface source: each descriptor is exported over guest memory once and
// served until it is removed or guest memory goes away. Nothing tells the host when a guest
// writes such a framebuffer (no flush, unlike virtio-gpu), so it has no damage of its own:
// damage() is there for a caller that learns of writes some other way.
import { GuestDmabufError } from '../../lib/core/errors.js';
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import { exportFramebuffer, type ExportedSurface, type FramebufferDescriptor } from '../../lib/guest/surface.js';
import { Udmabuf } from '../../lib/kernel/udmabuf.js';
import type { Rect } from './messages.js';
import type { SurfaceSink, SurfaceSource } from './source.js';

/** Makes the dma-buf surface of a framebuffer in guest memory; throws a GuestDmabufError when it cannot. */
export type FramebufferExporter = (memory: GuestMemory, framebuffer: FramebufferDescriptor) => ExportedSurface;

/** exportFramebuffer on udmabuf, the device opened per export (a device held open would outlive its user). */
export function udmabufFramebufferExporter(devicePath?: string): FramebufferExporter {
  return (memory, framebuffer) => {
    using device = Udmabuf.open(devicePath);
    return exportFramebuffer(device, memory, framebuffer);
  };
}

export interface NamedFramebuffer {
  name: string;
  framebuffer: FramebufferDescriptor;
}

export interface FramebufferSourceOptions {
  /** Framebuffers to serve from the start, keyed "fb-0", "fb-1", … */
  framebuffers?: readonly NamedFramebuffer[];
  /** Default udmabufFramebufferExporter(). */
  exportSurface?: FramebufferExporter;
  /** Says what memory is attached to, for logs. */
  description?: string;
}

interface Shown {
  name: string;
  framebuffer: FramebufferDescriptor;
  surface: ExportedSurface;
}

export class FramebufferSource implements SurfaceSource {
  readonly kind = 'framebuffer';
  readonly description: string;
  #memory: GuestMemory | null;
  readonly #exportSurface: FramebufferExporter;
  readonly #initial: readonly NamedFramebuffer[];
  readonly #shown = new Map<string, Shown>();
  #sink: SurfaceSink | null = null;
  #closed = false;

  constructor(memory: GuestMemory, options: FramebufferSourceOptions = {}) {
    this.#memory = memory;
    this.#exportSurface = options.exportSurface ?? udmabufFramebufferExporter();
    this.#initial = options.framebuffers ?? [];
    this.description = options.description ?? 'described framebuffers';
  }

  attach(sink: SurfaceSink): void {
    this.#sink = sink;
    this.#initial.forEach(({ name, framebuffer }, i) => {
      try {
        this.describe(`fb-${i}`, name, framebuffer);
      } catch (err) {
        sink.warn(`framebuffer ${name}: ${(err as Error).message}`);
      }
    });
  }

  /** Exports `framebuffer` and serves it as `key` (a new surface, or a new buffer for an existing one). Throws when the export fails. */
  describe(key: string, name: string, framebuffer: FramebufferDescriptor): ExportedSurface {
    if (this.#closed || !this.#memory) throw new GuestDmabufError(`framebuffer ${name} cannot be exported: ${this.#closed ? 'the source is closed' : 'guest memory is gone'}`, 'ERR_CLOSED');
    const surface = this.#exportSurface(this.#memory, framebuffer);
    const before = this.#shown.get(key);
    this.#shown.set(key, { name, framebuffer, surface });
    if (before) {
      this.#sink?.replace(key, surface);
      before.surface[Symbol.dispose]();
    } else {
      this.#sink?.add(key, name, surface);
    }
    return surface;
  }

  damage(key: string, rects: readonly Rect[]): void {
    if (this.#shown.has(key)) this.#sink?.damage(key, rects);
  }

  remove(key: string): void {
    const shown = this.#shown.get(key);
    if (!shown) return;
    this.#shown.delete(key);
    this.#sink?.withdraw(key);
    shown.surface[Symbol.dispose]();
  }

  /**
   * Guest memory changed (a guest reset, a balloon change, a rediscovery): every framebuffer
   * is exported again over `memory` and replaces its buffer; one that no longer exports is
   * withdrawn. `null`: memory is gone (QEMU quit): everything is withdrawn.
   */
  setMemory(memory: GuestMemory | null): void {
    this.#memory = memory;
    for (const [key, { name, framebuffer }] of [...this.#shown]) {
      if (!memory) {
        this.remove(key);
        continue;
      }
      try {
        this.describe(key, name, framebuffer);
      } catch (err) {
        this.#sink?.warn(`framebuffer ${name}: ${(err as Error).message}; withdrawn`);
        this.remove(key);
      }
    }
  }

  /** Exports a framebuffer a peer described, over the same memory (the sidecar owns what it returns). */
  exportFor(framebuffer: FramebufferDescriptor): ExportedSurface {
    if (this.#closed || !this.#memory) throw new GuestDmabufError(`no guest memory to export from: ${this.#closed ? 'the source is closed' : 'QEMU is gone'}`, 'ERR_CLOSED');
    return this.#exportSurface(this.#memory, framebuffer);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sink = null;
    for (const { surface } of this.#shown.values()) surface[Symbol.dispose]();
    this.#shown.clear();
    this.#memory = null;
  }
}
