// Field checks for decoding sidecar messages: each names the field it refuses ("framebuffer.
// stride") and says what was expected, so a peer's author can fix the sender from the message
// alone. They throw a SidecarError 'ERR_SIDECAR_BAD_MESSAGE'; the client turns that into a
// protocol error (a server that sends such a message is not this protocol).
import { SidecarError } from './errors.js';

export type JsonRecord = Readonly<Record<string, unknown>>;

function bad(field: string, expected: string, value: unknown): SidecarError {
  return new SidecarError(`field "${field}" must be ${expected}, not ${describe(value)}`, 'ERR_SIDECAR_BAD_MESSAGE', { field });
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

export function record(value: unknown, field: string): JsonRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(field, 'an object', value);
  return value as JsonRecord;
}

/** An integer in [min, max]. */
export function integer(from: JsonRecord, key: string, min: number, max: number, prefix = ''): number {
  const value = from[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw bad(prefix + key, `an integer from ${min} to ${max}`, value);
  return value;
}

export function optionalInteger(from: JsonRecord, key: string, min: number, max: number, prefix = ''): number | undefined {
  return from[key] === undefined ? undefined : integer(from, key, min, max, prefix);
}

/** A string of 1 to maxLength characters. */
export function string(from: JsonRecord, key: string, maxLength: number, prefix = ''): string {
  const value = from[key];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) throw bad(prefix + key, `a string of 1 to ${maxLength} characters`, value);
  return value;
}

export function optionalString(from: JsonRecord, key: string, maxLength: number, prefix = ''): string | undefined {
  return from[key] === undefined ? undefined : string(from, key, maxLength, prefix);
}

/** One of `choices`. */
export function oneOf<T extends string>(from: JsonRecord, key: string, choices: readonly T[], prefix = ''): T {
  const value = from[key];
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) throw bad(prefix + key, `one of ${choices.map((c) => `"${c}"`).join(', ')}`, value);
  return value as T;
}

/** An array of 0 to maxLength entries, each checked by `each` (given its field name). */
export function array<T>(from: JsonRecord, key: string, maxLength: number, each: (value: unknown, field: string) => T, prefix = ''): T[] {
  const value = from[key];
  if (!Array.isArray(value) || value.length > maxLength) throw bad(prefix + key, `an array of at most ${maxLength} entries`, value);
  return value.map((entry, i) => each(entry, `${prefix}${key}[${i}]`));
}

/**
 * A u64 as JSON carries it: a safe integer, or a decimal or 0x-hex string (JSON numbers lose
 * precision past 2^53, and DRM modifiers and guest addresses go beyond).
 */
export function u64(from: JsonRecord, key: string, prefix = ''): bigint {
  const value = from[key];
  const expected = 'a non-negative integer below 2^64 (a number up to 2^53, or a decimal or "0x" hex string)';
  let result: bigint;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) result = BigInt(value);
  else if (typeof value === 'string' && /^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(value)) result = BigInt(value);
  else throw bad(prefix + key, expected, value);
  if (result >= 1n << 64n) throw bad(prefix + key, expected, value);
  return result;
}
