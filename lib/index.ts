// guest-dmabuf: the public API.
export { Memfd, type Seal, type HugePageSize, type MemfdOptions } from './memfd.js';
export { Udmabuf, type MemfdRange, type DriverLimits, type DriverExtensions, type CreateOptions } from './udmabuf.js';
export { DmaBuf, type Access, type DmaBufInfo } from './dmabuf.js';
export { unmap, isUnmapped } from './mapping.js';
export { SyncFile } from './sync-file.js';
export { GuestDmabufError, DeviceUnavailableError, CreateError, ClosedError, NotSupportedError } from './errors.js';
export type { Size } from './sizes.js';
export { EventFd, type EventFdOptions } from './eventfd.js';
export { UnixSocket, UnixListener, FdsTruncatedError, type ReceivedMessage, type PeerCredentials } from './unix-socket.js';
