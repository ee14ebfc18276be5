// guest-dmabuf: the public API.
export { Memfd, type Seal, type HugePageSize, type MemfdOptions } from './kernel/memfd.js';
export { Udmabuf, type MemfdRange, type DriverExtensions, type CreateOptions } from './kernel/udmabuf.js';
export type { DriverLimits } from './kernel/driver-limits.js';
export { DmaBuf, type Access, type DmaBufInfo } from './kernel/dma-buf.js';
export { unmap, isUnmapped } from './fd/mapping.js';
export { SyncFile } from './kernel/sync-file.js';
export {
  GuestDmabufError,
  SystemError,
  InvalidArgumentError,
  ClosedError,
  AbortError,
  NotSupportedError,
  DeviceUnavailableError,
  CreateError,
  TranslationError,
  SurfaceError,
  type InvalidArgumentCode,
  type DriverLimitName,
} from './core/errors.js';
export type { Size } from './core/integers.js';
export { EventFd, type EventFdOptions } from './fd/eventfd.js';
export type { WaitOptions } from './fd/owned-fd.js';
export {
  UnixSocket,
  FdsTruncatedError,
  MAX_FDS_PER_MESSAGE,
  type ReceivedMessage,
  type PeerCredentials,
  type ConnectOptions,
  type ReceiveOptions,
  type SendOptions,
} from './ipc/unix-socket.js';
export { UnixListener } from './ipc/unix-listener.js';
export { GuestMemory, type RamRegion, type GuestRange, type MemfdItem, type TranslateOptions } from './guest/guest-memory.js';
export { drmFormat, drmFormats, fourcc, fourccCode, DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_MOD_INVALID, type DrmFormat } from './formats/drm.js';
export { wlShmFormat, fromWlShmFormat } from './formats/wl-shm.js';
export { toRgba, type LinearPixels } from './formats/pixels.js';
export { encodePng, decodePng, type Image } from './formats/png.js';
export { virtioGpuFormat, VIRTIO_GPU_FORMATS } from './formats/virtio-gpu.js';
export { planSurface, type Backing, type MemEntry, type SurfaceLayout, type SurfacePlan } from './guest/surface-layout.js';
export {
  exportFramebuffer,
  exportFramebufferAsync,
  exportVirtioGpuResource,
  exportVirtioGpuResourceAsync,
  type ExportedSurface,
  type ExportOptions,
  type FramebufferDescriptor,
  type VirtioGpuResource,
  type Plane,
} from './guest/surface.js';
export { SurfaceCache, type SurfaceCacheOptions, type SurfaceCacheStats } from './guest/surface-cache.js';
export { parseRamfbConfig, RAMFB_CONFIG_SIZE } from './guest/ramfb.js';
export { WaylandClient } from './wayland/client/wayland-client.js';
export { WaylandWindow, ImportFailedError, type WindowOptions, type PresentOptions, type Rect } from './wayland/client/window.js';
export { ShmBuffers, unionRect, type ShmBuffer, type ShmBuffersOptions } from './wayland/client/shm-buffers.js';
export { ImportedBuffer } from './wayland/client/imported-buffer.js';
export { WaylandConnection, displayPath, type WaylandConnectOptions } from './wayland/client/connection.js';
export { WaylandProtocolError, UnsupportedFormatError, WaylandDisconnectedError } from './wayland/client/errors.js';
export { WaylandWireError } from './wayland/wire/errors.js';
// QEMU glue (qemu-glue/): the QMP client, QEMU binaries.
export * from '../qemu-glue/index.js';
