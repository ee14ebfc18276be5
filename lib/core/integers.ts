// The library's integer arguments, checked in one place: sizes and offsets (number | bigint,
// carried as bigint or, on hot paths, as safe numbers) and bounded counts. A value of the wrong
// type is ERR_INVALID_ARG_TYPE; a number out of range (negative, fractional, NaN, too large)
// is ERR_OUT_OF_RANGE. Callers that own a richer error (a TranslationError naming the iovec)
// catch and re-wrap.
import { InvalidArgumentError } from './errors.js';

export type Size = number | bigint;

const MAX_U64 = (1n << 64n) - 1n;

function invalid(what: string, value: unknown, expected: string): InvalidArgumentError {
  const shown = typeof value === 'bigint' ? `${value}n` : typeof value === 'string' ? JSON.stringify(value) : String(value);
  const code = typeof value === 'number' || typeof value === 'bigint' ? 'ERR_OUT_OF_RANGE' : 'ERR_INVALID_ARG_TYPE';
  return new InvalidArgumentError(`${what} must be ${expected} (got ${shown})`, code);
}

/** A size or offset: a non-negative integer below 2^64, as a bigint. */
export function toBigInt(value: Size, what: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_U64) throw invalid(what, value, 'a non-negative integer below 2^64');
    return value;
  }
  if (!isSafeSize(value)) throw invalid(what, value, 'a non-negative safe integer or a bigint');
  return BigInt(value);
}

/** For values that must fit a JS number (mapping lengths, guest-physical arithmetic). */
export function toNumber(value: Size, what: string): number {
  const big = toBigInt(value, what);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(what, value, 'at most 2^53 - 1');
  return Number(big);
}

/**
 * A size as a JS number, for hot paths that cannot afford bigints (scatter lists of thousands
 * of entries). Checks only when the value is not already a safe non-negative integer.
 */
export function safeNumber(value: Size, what: string): number {
  return isSafeSize(value) ? value : toNumber(value, what);
}

/** Whether `value` is already a safe non-negative integer (test before building a message). */
export const isSafeSize = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** An integer count in [min, max]. */
export function integerIn(value: number, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(what, value, max < Number.MAX_SAFE_INTEGER ? `an integer from ${min} to ${max}` : min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`);
  }
  return value;
}

/** A bigint-or-number count in [min, max], as a bigint. */
export function bigIntegerIn(value: Size, min: bigint, max: bigint, what: string): bigint {
  const big = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (big === undefined || big < min || big > max) throw invalid(what, value, `an integer from ${min} to ${max}`);
  return big;
}

export const hex = (value: bigint | number): string => `0x${value.toString(16)}`;
