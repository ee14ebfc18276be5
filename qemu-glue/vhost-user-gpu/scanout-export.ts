// How a scanout's resource becomes a dma-buf: injectable, because the default needs udmabuf,
// which only exists on a host with the module (the test VM), and host tests need to see what
// would be exported without it.
import type { GuestMemory } from '../../lib/guest/guest-memory.js';
import { exportVirtioGpuResource, type ExportedSurface, type VirtioGpuResource } from '../../lib/guest/surface.js';
import { Udmabuf } from '../../lib/kernel/udmabuf.js';

/** A buffer QEMU's display can show: an fd (a dma-buf, or in tests any fd) and its layout. Dispose closes the fd. */
export interface ScanoutBuffer extends Disposable {
  readonly fd: number;
  readonly fourcc: number;
  readonly modifier: bigint;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  /** Where the first pixel is in the buffer. QEMU's DMABUF_SCANOUT has no offset: only 0 can be shown. */
  readonly offset: number;
  /**
   * Resolves when the buffer is finally released: our fd closed and every other holder (QEMU's
   * display, a compositor, a peer) gone. Called before dispose, so the notice outlives our fd.
   * Rejects with NotSupportedError when the exporter cannot tell (upstream udmabuf), with
   * AbortError when `signal` aborts. Absent: the exporter never can (the device then answers
   * DETACH/UNREF at once and counts it as unobserved).
   */
  whenReleased?(signal: AbortSignal): Promise<void>;
}

/** Turns a resource with backing into a ScanoutBuffer; throws (a GuestDmabufError) when it cannot. */
export type ScanoutExporter = (memory: GuestMemory, resource: VirtioGpuResource) => ScanoutBuffer;

/** The ScanoutBuffer of an exported surface, the release notice included (the one place that says how). */
export function scanoutBufferOf(surface: ExportedSurface): ScanoutBuffer {
  const plane = surface.planes[0];
  return {
    fd: surface.dmabuf.fd,
    fourcc: surface.fourcc,
    modifier: surface.modifier,
    width: surface.width,
    height: surface.height,
    stride: plane.stride,
    offset: plane.offset,
    // guest_udmabuf's UDMABUF_CREATE_NOTIFY eventfd; upstream udmabuf rejects (NotSupportedError).
    whenReleased: (signal) => surface.dmabuf.whenReleased({ signal }),
    [Symbol.dispose]: () => surface[Symbol.dispose](),
  };
}

/**
 * The zero-copy export of a resource: its backing pages themselves, through udmabuf. The device is
 * opened per export and closed at once (the dma-buf does not need it): a device held between
 * exports stayed open after its back end was gone until the garbage collector ran, one fd (and
 * its module-parameter files) per connection QEMU ever made.
 */
export function udmabufSurfaceExporter(devicePath?: string): (memory: GuestMemory, resource: VirtioGpuResource) => ExportedSurface {
  return (memory, resource) => {
    using device = Udmabuf.open(devicePath);
    return exportVirtioGpuResource(device, memory, resource);
  };
}

/** The device's default exporter: udmabufSurfaceExporter's surfaces as ScanoutBuffers. */
export function udmabufExporter(devicePath?: string): ScanoutExporter {
  const exportSurface = udmabufSurfaceExporter(devicePath);
  return (memory, resource) => scanoutBufferOf(exportSurface(memory, resource));
}
