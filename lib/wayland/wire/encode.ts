// Requests to bytes: one message by its signature. fds are not in the bytes; they go out of
// band (SCM_RIGHTS) with the flush that carries the message.
import { InvalidArgumentError } from '../../core/errors.js';
import { WaylandWireError } from './errors.js';
import { HEADER_SIZE, MAX_MESSAGE_SIZE, type ArgSignature, type UntypedNewId, type WireValue } from './signature.js';

export interface EncodedMessage {
  bytes: Uint8Array;
  /** In argument order; the caller owns them (the encoder neither dups nor closes). */
  fds: number[];
}

const pad4 = (n: number): number => (n + 3) & ~3;
const utf8 = new TextEncoder();

/** wl_fixed_t: signed 24.8. */
export function toFixed(value: number): number {
  return Math.round(value * 256) | 0;
}

function isUntyped(v: WireValue): v is UntypedNewId {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array);
}

function fail(what: string, i: number, sig: ArgSignature, why: string): never {
  throw new InvalidArgumentError(`${what}: argument ${i} (${sig.type}) ${why}`);
}

function u32(what: string, i: number, sig: ArgSignature, v: WireValue, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(what, i, sig, `must be an integer in [${min}, ${max}], got ${String(v)}`);
  return v;
}

/**
 * Encodes `values` by `signature` for `objectId`/`opcode`. `what` names the message in errors
 * ("wl_surface.attach"). Throws InvalidArgumentError for a value that does not fit its type and
 * WaylandWireError for a message over MAX_MESSAGE_SIZE.
 */
export function encodeMessage(objectId: number, opcode: number, signature: readonly ArgSignature[], values: readonly WireValue[], what = `opcode ${opcode}`): EncodedMessage {
  if (values.length !== signature.length) throw new InvalidArgumentError(`${what}: ${signature.length} arguments expected, ${values.length} given`);
  // First pass: validate and size, so the buffer is allocated once.
  const strings: (Uint8Array | null)[] = [];
  let size = HEADER_SIZE;
  signature.forEach((sig, i) => {
    const v = values[i]!;
    switch (sig.type) {
      case 'int':
        u32(what, i, sig, v, -0x8000_0000, 0x7fff_ffff);
        size += 4;
        break;
      case 'uint':
      case 'object':
      case 'new_id':
        if (sig.type === 'new_id' && sig.interface === undefined) {
          if (!isUntyped(v)) fail(what, i, sig, 'must be { interface, version, id }');
          const name = utf8.encode(v.interface + '\0');
          strings[i] = name;
          size += 4 + pad4(name.length) + 8;
          break;
        }
        if (sig.type === 'object' && v === null) {
          if (!sig.nullable) fail(what, i, sig, 'may not be null');
        } else {
          u32(what, i, sig, v, sig.type === 'uint' ? 0 : 1, 0xffff_ffff);
        }
        size += 4;
        break;
      case 'fixed':
        if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) >= 0x80_0000) fail(what, i, sig, `must be a finite number in (-8388608, 8388608), got ${String(v)}`);
        size += 4;
        break;
      case 'string':
        if (v === null) {
          if (!sig.nullable) fail(what, i, sig, 'may not be null');
          strings[i] = null;
          size += 4;
        } else {
          if (typeof v !== 'string') fail(what, i, sig, 'must be a string');
          if (v.includes('\0')) fail(what, i, sig, 'must not contain NUL');
          const bytes = utf8.encode(v + '\0');
          strings[i] = bytes;
          size += 4 + pad4(bytes.length);
        }
        break;
      case 'array':
        if (!(v instanceof Uint8Array)) fail(what, i, sig, 'must be a Uint8Array');
        strings[i] = v;
        size += 4 + pad4(v.length);
        break;
      case 'fd':
        u32(what, i, sig, v, 0, 0x7fff_ffff);
        break;
    }
  });
  if (size > MAX_MESSAGE_SIZE) throw new WaylandWireError(`${what}: the message would be ${size} bytes, over the ${MAX_MESSAGE_SIZE}-byte limit; send less per message`, 'ERR_WAYLAND_MESSAGE_TOO_LARGE');

  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, objectId, true);
  view.setUint32(4, ((size << 16) | opcode) >>> 0, true);
  let at = HEADER_SIZE;
  const fds: number[] = [];
  const putBytes = (b: Uint8Array, length: number): void => {
    view.setUint32(at, length, true);
    bytes.set(b, at + 4);
    at += 4 + pad4(b.length);
  };
  signature.forEach((sig, i) => {
    const v = values[i]!;
    switch (sig.type) {
      case 'int':
        view.setInt32(at, v as number, true);
        at += 4;
        break;
      case 'fixed':
        view.setInt32(at, toFixed(v as number), true);
        at += 4;
        break;
      case 'uint':
      case 'object':
      case 'new_id':
        if (sig.type === 'new_id' && sig.interface === undefined) {
          const name = strings[i]!;
          putBytes(name, name.length);
          view.setUint32(at, (v as UntypedNewId).version, true);
          view.setUint32(at + 4, (v as UntypedNewId).id, true);
          at += 8;
          break;
        }
        view.setUint32(at, v === null ? 0 : (v as number), true);
        at += 4;
        break;
      case 'string': {
        const s = strings[i];
        if (s === null || s === undefined) {
          view.setUint32(at, 0, true);
          at += 4;
        } else putBytes(s, s.length);
        break;
      }
      case 'array': {
        const a = strings[i]!;
        putBytes(a, a.length);
        break;
      }
      case 'fd':
        fds.push(v as number);
        break;
    }
  });
  return { bytes, fds };
}
