// number | bigint inputs for sizes and offsets, checked once and carried as bigint.
import { GuestDmabufError } from './errors.js';

import type { Integer64 } from './native.js';

export type Size = Integer64;

export function toBigInt(value: Size, what: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n) throw new GuestDmabufError(`${what} must not be negative (got ${value})`, 'EINVAL');
    return value;
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new GuestDmabufError(`${what} must be a non-negative integer (got ${value})`, 'EINVAL');
  }
  return BigInt(value);
}

/** For values that must fit a JS number (mapping lengths). */
export function toNumber(value: Size, what: string): number {
  const big = toBigInt(value, what);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new GuestDmabufError(`${what} is too large (${big})`, 'E2BIG');
  return Number(big);
}

export const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

/**
 * A size as a JS number, for hot paths that cannot afford bigints (scatter lists of thousands
 * of entries). Checks only when the value is not already a safe non-negative integer.
 */
export function safeNumber(value: Size, what: string): number {
  return isSafeSize(value) ? value : toNumber(value, what);
}

/** Whether `value` is already a safe non-negative integer (test before building a message). */
export const isSafeSize = (value: Size): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
