// guest-dmabuf: the public API.
export { Memfd, type Seal, type HugePageSize, type MemfdOptions } from './memfd.js';
export { Udmabuf, type MemfdRange, type DriverLimits, type DriverExtensions, type CreateOptions } from './udmabuf.js';
export { DmaBuf, type Access, type DmaBufInfo } from './dmabuf.js';
export { unmap, isUnmapped } from './mapping.js';
export { SyncFile } from './sync-file.js';
export { GuestDmabufError, DeviceUnavailableError, CreateError, ClosedError, NotSupportedError, TranslationError, SurfaceError } from './errors.js';
export type { Size } from './sizes.js';
export { EventFd, type EventFdOptions } from './eventfd.js';
export { UnixSocket, UnixListener, FdsTruncatedError, type ReceivedMessage, type PeerCredentials } from './unix-socket.js';
export { GuestMemory, type RamRegion, type GuestRange, type MemfdItem, type TranslationLimits, type TranslateOptions } from './guest-memory.js';
export {
  drmFormat,
  drmFormats,
  fourcc,
  fourccCode,
  wlShmFormat,
  fromWlShmFormat,
  virtioGpuFormat,
  VIRTIO_GPU_FORMATS,
  DRM_FORMAT_MOD_LINEAR,
  DRM_FORMAT_MOD_INVALID,
  type DrmFormat,
} from './formats.js';
export { planSurface, type Backing, type MemEntry, type SurfaceLayout, type SurfacePlan } from './surface-layout.js';
export {
  exportFramebuffer,
  exportVirtioGpuResource,
  type ExportedSurface,
  type ExportOptions,
  type FramebufferDescriptor,
  type VirtioGpuResource,
  type Plane,
} from './surface.js';
export { SurfaceCache, type SurfaceCacheOptions, type SurfaceCacheStats } from './surface-cache.js';
export { parseRamfbConfig, RAMFB_CONFIG_SIZE } from './ramfb.js';
