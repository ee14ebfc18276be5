// Guest surfaces as dma-bufs with the metadata an importer needs (zwp_linux_dmabuf_v1's
// params.add and create): a framebuffer at a guest-physical address, and a virtio-gpu
// resource with guest backing.
import type { DmaBuf } from '../kernel/dma-buf.js';
import { CreateError, SurfaceError } from '../core/errors.js';
import { DRM_FORMAT_MOD_LINEAR } from '../formats/drm.js';
import { virtioGpuFormat } from '../formats/virtio-gpu.js';
import { checkLimits, type GuestMemory } from './guest-memory.js';
import { planSurface, type MemEntry, type SurfaceLayout, type SurfacePlan } from './surface-layout.js';
import type { SurfaceCache } from './surface-cache.js';
import type { CreateOptions, Udmabuf } from '../kernel/udmabuf.js';
import type { Size } from '../core/integers.js';

export interface Plane {
  /** Byte offset of the plane's first pixel in the dma-buf. */
  offset: number;
  /** Bytes per line. */
  stride: number;
}

/** An exported surface. Disposing it closes its dma-buf fd. */
export interface ExportedSurface extends Disposable {
  dmabuf: DmaBuf;
  /** DRM fourcc of the pixels. */
  fourcc: number;
  /** Always DRM_FORMAT_MOD_LINEAR: guest memory is a plain row-major array. */
  modifier: bigint;
  width: number;
  height: number;
  planes: [Plane];
}

export interface ExportOptions {
  /** Reuse a live buffer for the same memory (a dup instead of a create), and keep new ones. */
  cache?: SurfaceCache;
  /** The cache tag new entries get (default: `framebuffer:<gpa>` or `resource:<id>`). */
  tag?: string;
  /** Options for the create, when one happens. */
  create?: CreateOptions;
}

/** A framebuffer in guest RAM: ramfb, a scanout blob, a firmware (GOP) framebuffer. */
export interface FramebufferDescriptor {
  gpa: Size;
  width: number;
  height: number;
  stride: number;
  /** A DRM format: fourcc value, code (`'XR24'`) or name. */
  format: number | string;
}

/** A virtio-gpu resource (2D with attached backing, or a blob) and its backing entries. */
export interface VirtioGpuResource {
  resourceId: number;
  /** The virtio-gpu format code (VIRTIO_GPU_FORMAT_*), as RESOURCE_CREATE_2D or SET_SCANOUT_BLOB gives it. */
  format: number;
  width: number;
  height: number;
  /** virtio_gpu_mem_entry list from RESOURCE_ATTACH_BACKING or RESOURCE_CREATE_BLOB. */
  entries: readonly MemEntry[];
  /** Bytes per line; default width × bytes per pixel rounded up to 4 (QEMU's 2D layout). */
  stride?: number;
  /** First pixel's offset in the backing (SET_SCANOUT_BLOB's offsets[0]); default 0. */
  offset?: number;
}

/**
 * Exports the framebuffer at `fb.gpa`. The dma-buf holds whole pages from the first pixel's
 * page to the last pixel's; a framebuffer that does not start on a page boundary gets the
 * in-buffer plane offset.
 */
export function exportFramebuffer(dev: Udmabuf, memory: GuestMemory, fb: FramebufferDescriptor, options: ExportOptions = {}): ExportedSurface {
  const { plan, tag } = planFramebuffer(memory, fb, options);
  return exportPlanned(dev, plan, options, tag);
}

/** Exports a virtio-gpu resource from its guest backing. */
export function exportVirtioGpuResource(dev: Udmabuf, memory: GuestMemory, resource: VirtioGpuResource, options: ExportOptions = {}): ExportedSurface {
  const { plan, tag } = planResource(memory, resource);
  return exportPlanned(dev, plan, options, tag);
}

interface Planned {
  plan: SurfacePlan;
  /** The default cache tag. */
  tag: () => string;
}

function planFramebuffer(memory: GuestMemory, fb: FramebufferDescriptor, options: ExportOptions): Planned {
  const plan = (): SurfacePlan => planSurface(memory, { gpa: fb.gpa }, { width: fb.width, height: fb.height, stride: fb.stride, format: fb.format });
  // A framebuffer's plan depends only on its five numbers (guest memory never changes under a
  // GuestMemory), so a cache keeps it: a re-export is then a lookup and a dup.
  const cached = options.cache?.plan(memory, `${String(fb.gpa)} ${fb.width} ${fb.height} ${fb.stride} ${fb.format}`, plan);
  return { plan: cached ?? plan(), tag: () => `framebuffer:${String(fb.gpa)}` };
}

function planResource(memory: GuestMemory, resource: VirtioGpuResource): Planned {
  if (!Number.isSafeInteger(resource.resourceId) || resource.resourceId <= 0) {
    throw new SurfaceError(`resourceId must be a positive integer (got ${String(resource.resourceId)}); virtio-gpu resource 0 means "none"`);
  }
  if (resource.entries.length === 0) {
    throw new SurfaceError(`resource ${resource.resourceId} has no backing entries: it needs RESOURCE_ATTACH_BACKING (or a blob with guest memory) before it can be exported`);
  }
  const format = virtioGpuFormat(resource.format);
  const stride = resource.stride ?? Math.ceil((resource.width * format.bytesPerPixel) / 4) * 4;
  const layout: SurfaceLayout = { width: resource.width, height: resource.height, stride, format, offset: resource.offset ?? 0 };
  return { plan: planSurface(memory, resource.entries, layout), tag: () => `resource:${resource.resourceId}` };
}

/**
 * exportFramebuffer with the pinning done on a worker thread (Udmabuf.createAsync): for large
 * framebuffers, whose create would stall the event loop. A cached re-export is a dup, at once.
 */
export async function exportFramebufferAsync(dev: Udmabuf, memory: GuestMemory, fb: FramebufferDescriptor, options: ExportOptions = {}): Promise<ExportedSurface> {
  const { plan, tag } = planFramebuffer(memory, fb, options);
  return exportPlannedAsync(dev, plan, options, tag);
}

/** exportVirtioGpuResource with the pinning done on a worker thread (Udmabuf.createAsync). */
export async function exportVirtioGpuResourceAsync(dev: Udmabuf, memory: GuestMemory, resource: VirtioGpuResource, options: ExportOptions = {}): Promise<ExportedSurface> {
  const { plan, tag } = planResource(memory, resource);
  return exportPlannedAsync(dev, plan, options, tag);
}

function exportPlanned(dev: Udmabuf, plan: SurfacePlan, options: ExportOptions, defaultTag: () => string): ExportedSurface {
  const create = (): DmaBuf => createFor(dev, plan, options);
  const dmabuf = options.cache ? options.cache.getOrCreate(plan.items, options.tag ?? defaultTag(), create, options.create) : create();
  return new Surface(dmabuf, plan);
}

async function exportPlannedAsync(dev: Udmabuf, plan: SurfacePlan, options: ExportOptions, defaultTag: () => string): Promise<ExportedSurface> {
  const create = async (): Promise<DmaBuf> => {
    try {
      return await dev.createAsync(plan.items, options.create);
    } catch (err) {
      throw limitError(dev, plan, err);
    }
  };
  const dmabuf = options.cache ? await options.cache.getOrCreateAsync(plan.items, options.tag ?? defaultTag(), create, options.create) : await create();
  return new Surface(dmabuf, plan);
}

/**
 * A new buffer for `plan`. A plan over the driver's limits is refused by the kernel before any
 * page is pinned; it is then reported in the plan's terms (items after merging, and the
 * module parameter to raise).
 */
function createFor(dev: Udmabuf, plan: SurfacePlan, options: ExportOptions): DmaBuf {
  try {
    return dev.create(plan.items, options.create);
  } catch (err) {
    throw limitError(dev, plan, err);
  }
}

function limitError(dev: Udmabuf, plan: SurfacePlan, err: unknown): unknown {
  if (err instanceof CreateError && err.limit) checkLimits(plan.items, dev.limits);
  return err;
}

/** The ExportedSurface exports return (a class: a re-export allocates as little as it can). */
class Surface implements ExportedSurface {
  readonly dmabuf: DmaBuf;
  readonly fourcc: number;
  readonly modifier = DRM_FORMAT_MOD_LINEAR;
  readonly width: number;
  readonly height: number;
  readonly planes: [Plane];

  constructor(dmabuf: DmaBuf, plan: SurfacePlan) {
    this.dmabuf = dmabuf;
    this.fourcc = plan.format.fourcc;
    this.width = plan.width;
    this.height = plan.height;
    this.planes = [{ offset: plan.planeOffset, stride: plan.stride }];
  }

  [Symbol.dispose](): void {
    this.dmabuf.close();
  }
}
