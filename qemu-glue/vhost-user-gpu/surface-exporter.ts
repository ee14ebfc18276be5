// The public back end hands out what exportVirtioGpuResource returns (an ExportedSurface, with
// its DmaBuf and planes), while the device deals in ScanoutBuffers. This adapter makes the
// device's exporter from a surface exporter and remembers which surface each buffer wraps, so
// the back end can tell its listeners the surface and the device keeps owning its lifetime.
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import { exportVirtioGpuResource, type ExportedSurface, type VirtioGpuResource } from '../../lib/guest/surface.js';
import { Udmabuf } from '../../lib/kernel/udmabuf.js';
import type { ScanoutBuffer, ScanoutExporter } from './scanout-export.js';

/** Makes a dma-buf surface of a virtio-gpu resource's backing; throws a GuestDmabufError when it cannot. */
export type SurfaceExporter = (memory: GuestMemory, resource: VirtioGpuResource) => ExportedSurface;

/** The zero-copy default: the resource's backing pages through udmabuf, opened at the first export (so a host without it can still serve a guest). */
export function udmabufSurfaceExporter(devicePath?: string): SurfaceExporter & Disposable {
  let device: Udmabuf | undefined;
  const exporter = (memory: GuestMemory, resource: VirtioGpuResource): ExportedSurface => {
    device ??= Udmabuf.open(devicePath);
    return exportVirtioGpuResource(device, memory, resource);
  };
  return Object.assign(exporter, { [Symbol.dispose]: () => device?.close() });
}

export class SurfaceBridge {
  readonly #surfaces = new WeakMap<ScanoutBuffer, ExportedSurface>();
  readonly exporter: ScanoutExporter;

  constructor(exportSurface: SurfaceExporter) {
    this.exporter = (memory, resource) => {
      const surface = exportSurface(memory, resource);
      const plane = surface.planes[0];
      const buffer: ScanoutBuffer = {
        fd: surface.dmabuf.fd,
        fourcc: surface.fourcc,
        modifier: surface.modifier,
        width: surface.width,
        height: surface.height,
        stride: plane.stride,
        offset: plane.offset,
        [Symbol.dispose]: () => surface[Symbol.dispose](),
      };
      this.#surfaces.set(buffer, surface);
      return buffer;
    };
  }

  /** The surface behind a buffer this bridge's exporter made (null for null or a foreign buffer). */
  surfaceOf(buffer: ScanoutBuffer | null): ExportedSurface | null {
    return (buffer && this.#surfaces.get(buffer)) ?? null;
  }
}
