// Typed errors. Each names what was wrong and what to do about it.

/** Base of every error this library throws on purpose. */
export class GuestDmabufError extends Error {
  override name = 'GuestDmabufError';
  /** A stable machine-readable code: an errno name (`'EINVAL'`) or one of ours. */
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The udmabuf device cannot be opened. */
export class DeviceUnavailableError extends GuestDmabufError {
  override name = 'DeviceUnavailableError';
  readonly path: string;
  constructor(path: string, cause: unknown) {
    const code = (cause as { code?: string }).code ?? 'ENOENT';
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

/** A create request the library or the kernel refused. */
export class CreateError extends GuestDmabufError {
  override name = 'CreateError';
  /** The offending range, when one range is to blame. */
  readonly rangeIndex: number | undefined;
  readonly errno: number | undefined;
  /** The driver limit the request exceeds (code 'E2BIG'), when that is why it failed. */
  readonly limit: 'list_limit' | 'size_limit_mb' | undefined;
  constructor(message: string, code: string, rangeIndex?: number, errno?: number, cause?: unknown, limit?: 'list_limit' | 'size_limit_mb') {
    super(message, code, { cause });
    this.rangeIndex = rangeIndex;
    this.errno = errno;
    this.limit = limit;
  }
}

/** The driver (or the way a buffer was made) does not offer this feature. */
export class NotSupportedError extends GuestDmabufError {
  override name = 'NotSupportedError';
  constructor(message: string) {
    super(message, 'ENOTSUP');
  }
}

/** An operation on an fd-owning object after close(). */
export class ClosedError extends GuestDmabufError {
  override name = 'ClosedError';
  constructor(what: string) {
    super(`${what} is closed`, 'ECLOSED');
  }
}

/** The native error's code, when the value is one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
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
  constructor(message: string, iovecIndex?: number, gpa?: number, nearestRegion?: string, code = 'EINVAL') {
    super(message, code);
    this.iovecIndex = iovecIndex;
    this.gpa = gpa === undefined ? undefined : BigInt(gpa);
    this.nearestRegion = nearestRegion;
  }
}

/** A surface whose layout or format cannot be exported as described. */
export class SurfaceError extends GuestDmabufError {
  override name = 'SurfaceError';
  constructor(message: string, code = 'EINVAL') {
    super(message, code);
  }
}
