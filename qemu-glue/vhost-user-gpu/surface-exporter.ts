// The public back end hands out what exportVirtioGpuResource returns (an ExportedSurface, with
// its DmaBuf and planes), while the device deals in ScanoutBuffers. This adapter makes the
// device's exporter from a surface exporter and remembers which surface each buffer wraps, so
// the back end can tell its listeners the surface and the device keeps owning its lifetime.
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import type { ExportedSurface, VirtioGpuResource } from '../../lib/guest/surface.js';
import { scanoutBufferOf, type ScanoutBuffer, type ScanoutExporter } from './scanout-export.js';

/** Makes a dma-buf surface of a virtio-gpu resource's backing; throws a GuestDmabufError when it cannot. */
export type SurfaceExporter = (memory: GuestMemory, resource: VirtioGpuResource) => ExportedSurface;

export class SurfaceBridge {
  readonly #surfaces = new WeakMap<ScanoutBuffer, ExportedSurface>();
  readonly exporter: ScanoutExporter;

  constructor(exportSurface: SurfaceExporter) {
    this.exporter = (memory, resource) => {
      const surface = exportSurface(memory, resource);
      // With its release notice: wait-for-free on DETACH/UNREF needs it.
      const buffer = scanoutBufferOf(surface);
      this.#surfaces.set(buffer, surface);
      return buffer;
    };
  }

  /** The surface behind a buffer this bridge's exporter made (null for null or a foreign buffer). */
  surfaceOf(buffer: ScanoutBuffer | null): ExportedSurface | null {
    return (buffer && this.#surfaces.get(buffer)) ?? null;
  }
}
