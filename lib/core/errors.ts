// The library's one error model. Everything it throws or rejects with is a GuestDmabufError:
// catch that, then switch on `code`.
// - A system call that failed is a SystemError whose code is the errno name with its kernel
//   meaning ('ENOMEM', 'EBADF'), plus `errno` and `syscall`.
// - The library's own conditions use Node-style codes: 'ERR_CLOSED', 'ABORT_ERR',
//   'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE', 'ERR_INVALID_RANGE',
//   'ERR_NOT_A_MEMFD', 'ERR_MEMFD_SEALS', 'ERR_DRIVER_LIMIT', 'ERR_NOT_GUEST_RAM',
//   'ERR_INVALID_SURFACE', 'ERR_UNKNOWN_FORMAT', 'ERR_NOT_SUPPORTED', ...
// Subclasses add what the caller needs to act (which range, which GPA, which limit).

/** Base of every error this library throws. */
export class GuestDmabufError extends Error {
  override name = 'GuestDmabufError';
  /** A stable machine-readable code: an errno name (`'ENOMEM'`) or one of ours (`'ERR_…'`). */
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** A system call failed. `code` is the errno name, as the kernel means it. */
export class SystemError extends GuestDmabufError {
  override name = 'SystemError';
  readonly errno: number;
  readonly syscall: string;
  constructor(message: string, code: string, errno: number, syscall: string, options?: { cause?: unknown }) {
    super(message, code, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

export type InvalidArgumentCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/** An argument the library cannot use: the wrong type, or a value out of range. */
export class InvalidArgumentError extends GuestDmabufError {
  override name = 'InvalidArgumentError';
  constructor(message: string, code: InvalidArgumentCode = 'ERR_INVALID_ARG_VALUE') {
    super(message, code);
  }
}

/** An operation on an fd-owning object after close(), or a wait that close() cancelled. */
export class ClosedError extends GuestDmabufError {
  override name = 'ClosedError';
  constructor(what: string, detail = 'is closed') {
    super(`${what} ${detail}`, 'ERR_CLOSED');
  }
}

/** A wait given an AbortSignal that was aborted. `cause` is the signal's reason. */
export class AbortError extends GuestDmabufError {
  override name = 'AbortError';
  constructor(what: string, reason: unknown) {
    super(`${what} was aborted`, 'ABORT_ERR', { cause: reason });
  }
}

/** The driver (or the way a buffer was made) does not offer this feature. */
export class NotSupportedError extends GuestDmabufError {
  override name = 'NotSupportedError';
  constructor(message: string) {
    super(message, 'ERR_NOT_SUPPORTED');
  }
}

/** The udmabuf device cannot be opened. `code` is open(2)'s errno name. */
export class DeviceUnavailableError extends GuestDmabufError {
  override name = 'DeviceUnavailableError';
  readonly path: string;
  constructor(path: string, cause: unknown) {
    const code = errnoCode(cause) ?? 'ENOENT';
    const hint =
      code === 'ENOENT'
        ? 'load the module: `sudo modprobe guest_udmabuf` after installing it with dkms, or `make -C udmabuf && sudo insmod udmabuf/guest_udmabuf.ko`; set GUEST_DMABUF_DEVICE if it has another name'
        : code === 'EACCES'
          ? 'give your user access to the device (a udev rule or group), or run with the needed privilege'
          : 'check that the path is the udmabuf misc device';
    super(`cannot open udmabuf device ${path} (${code}): ${hint}`, code, { cause });
    this.path = path;
  }
}

export type DriverLimitName = 'list_limit' | 'size_limit_mb';

/** A create request the library or the kernel refused. */
export class CreateError extends GuestDmabufError {
  override name = 'CreateError';
  /** The offending range, when one range is to blame. */
  readonly rangeIndex: number | undefined;
  /** The kernel's errno, when the kernel refused. */
  readonly errno: number | undefined;
  /** The driver limit the request exceeds (code 'ERR_DRIVER_LIMIT'). */
  readonly limit: DriverLimitName | undefined;
  constructor(message: string, code: string, details: { rangeIndex?: number; errno?: number; limit?: DriverLimitName; cause?: unknown } = {}) {
    super(message, code, { cause: details.cause });
    this.rangeIndex = details.rangeIndex;
    this.errno = details.errno;
    this.limit = details.limit;
  }
}

/** A guest scatter list that cannot become a dma-buf: outside RAM, unaligned, or over a driver limit. */
export class TranslationError extends GuestDmabufError {
  override name = 'TranslationError';
  /** The offending scatter-list entry, when one is to blame. */
  readonly iovecIndex: number | undefined;
  /** The guest-physical address where the problem is. */
  readonly gpa: bigint | undefined;
  /** The RAM region nearest to `gpa`, for a range outside RAM. */
  readonly nearestRegion: string | undefined;
  /** The driver limit the list exceeds (code 'ERR_DRIVER_LIMIT'). */
  readonly limit: DriverLimitName | undefined;
  constructor(message: string, code: string, details: { iovecIndex?: number; gpa?: number; nearestRegion?: string; limit?: DriverLimitName } = {}) {
    super(message, code);
    this.iovecIndex = details.iovecIndex;
    this.gpa = details.gpa === undefined ? undefined : BigInt(details.gpa);
    this.nearestRegion = details.nearestRegion;
    this.limit = details.limit;
  }
}

/** A surface whose layout or format cannot be exported as described. */
export class SurfaceError extends GuestDmabufError {
  override name = 'SurfaceError';
  constructor(message: string, code: 'ERR_INVALID_SURFACE' | 'ERR_UNKNOWN_FORMAT' = 'ERR_INVALID_SURFACE') {
    super(message, code);
  }
}

/** The error's code, when it has a string one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
