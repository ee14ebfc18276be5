// The QEMU glue's public API; the package root (lib/index.ts) re-exports it.
export { QmpClient, DEFAULT_MAX_QUEUED_BYTES, type QmpTarget, type QmpConnectOptions, type ExecuteOptions, type QmpArguments } from './qmp/client.js';
export { QmpError, QmpConnectionError, QmpEventOverflowError, QmpBackpressureError, type QmpConnectionErrorCode } from './qmp/errors.js';
export { EventStream as QmpEventStream, type EventsOptions as QmpEventsOptions, DEFAULT_MAX_BUFFERED_EVENTS } from './qmp/event-stream.js';
export { DEFAULT_MAX_LINE_BYTES } from './qmp/framing.js';
export type { JsonValue, JsonObject, QmpEvent, QmpGreeting, QemuVersionInfo } from './qmp/message.js';
export { findQemu, availableQemus, type QemuBinary, type QemuVersion } from './qemu-binaries.js';
export { launchQemu, type LaunchOptions, type LaunchMemory, type LaunchedQemu } from './launch.js';
export { QemuAccessError } from './discovery/access.js';
export { discoverGuestMemory, DiscoveredGuestMemory, type DiscoveryOptions, type DiscoveredRegion, type Evidence as DiscoveryEvidence } from './discovery/discover.js';
export type { MemoryBackend } from './discovery/backends.js';
export type { DeviceRamRegion } from './discovery/device-ram.js';
export { parseFlatViews, guestRamRanges, type FlatRange, type FlatView } from './discovery/mtree.js';
export { verifyMapping, type VerifyResult } from './discovery/verify.js';
export { GuestMemorySession, type SessionOptions } from './lifecycle.js';
export {
  VhostUserGpuBackend,
  type VhostUserGpuBackendOptions,
  type VhostUserGpuBackendEvents,
  type GpuTransferMode,
  type GpuStats,
  type GpuDeviceSettings,
  type GpuRect,
  type ScanoutEvent,
  type FlushEvent,
  type ConnectionEvent,
  type DisconnectEvent,
  type RejectedEvent,
  type RequestEvent,
  type CommandEvent,
} from './vhost-user-gpu/gpu-backend.js';
export { VhostUserGpuBackendError, type VhostUserGpuBackendErrorCode } from './vhost-user-gpu/gpu-backend-errors.js';
export { type SurfaceExporter } from './vhost-user-gpu/surface-exporter.js';
export { udmabufSurfaceExporter } from './vhost-user-gpu/scanout-export.js';
export { VhostUserError, VirtqueueError, type VhostUserErrorCode, type VirtqueueErrorCode } from './vhost-user/errors.js';
export type { GpuLimits } from './vhost-user-gpu/resources.js';
export { SidecarClient, type SidecarConnectOptions, type RequestOptions as SidecarRequestOptions, type FramebufferToExport } from './sidecar/client.js';
export { SurfaceBuffer, SurfaceSubscription, type SurfaceEvent } from './sidecar/subscription.js';
export { SidecarServer, type SidecarServerOptions } from './sidecar/server.js';
export { captureSurface, type Capture, type CaptureOptions } from './sidecar/capture.js';
export { showSurface, type ShowOptions, type ShowResult } from './sidecar/show.js';
export { SidecarError, SidecarConnectionError, type SidecarErrorCode, type SidecarConnectionErrorCode } from './sidecar/errors.js';
export type { SurfaceInfo as SidecarSurfaceInfo, Rect as SidecarRect, Limits as SidecarLimits, WithdrawReason } from './sidecar/messages.js';
export type { SurfaceSink, SurfaceSource } from './sidecar/source.js';
export { VhostUserGpuSource, type VhostUserGpuSourceOptions } from './sidecar/gpu-source.js';
export { FramebufferSource, udmabufFramebufferExporter, type FramebufferExporter, type FramebufferSourceOptions, type NamedFramebuffer } from './sidecar/framebuffer-source.js';
