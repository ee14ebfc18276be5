// guest-dmabuf: the public API.
export { Memfd, type Seal, type HugePageSize, type MemfdOptions } from './memfd.js';
export { Udmabuf, type MemfdRange, type DriverLimits } from './udmabuf.js';
export { DmaBuf, type Access, type DmaBufInfo } from './dmabuf.js';
export { unmap, isUnmapped } from './mapping.js';
export { GuestDmabufError, DeviceUnavailableError, CreateError, ClosedError } from './errors.js';
export type { Size } from './sizes.js';
