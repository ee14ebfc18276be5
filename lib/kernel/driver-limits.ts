// A udmabuf driver's limits, and which of them a list of items exceeds: the one computation
// behind Udmabuf.create's error and GuestMemory.translate's, which word it each for their caller.

/** The limits of a udmabuf driver (`Udmabuf.limits` reads them; GuestMemory.translate checks them). */
export interface DriverLimits {
  /** Most items in one create (`list_limit`). */
  listLimit: number;
  /** Largest buffer in bytes (`size_limit_mb` << 20). */
  sizeLimitBytes: bigint;
  /** The sysfs folder holding the module parameters (where to raise them), when known. */
  parametersPath?: string;
}

export type LimitExcess =
  | { limit: 'list_limit'; count: number }
  /** `index` is the item that takes the buffer over the limit; `total` is the whole list's size. */
  | { limit: 'size_limit_mb'; index: number; total: bigint };

export function exceededLimit(items: readonly { size: bigint }[], limits: DriverLimits): LimitExcess | undefined {
  if (items.length > limits.listLimit) return { limit: 'list_limit', count: items.length };
  let total = 0n;
  let index = -1;
  for (const [i, item] of items.entries()) {
    total += item.size;
    if (index < 0 && total > limits.sizeLimitBytes) index = i;
  }
  return index < 0 ? undefined : { limit: 'size_limit_mb', index, total };
}
