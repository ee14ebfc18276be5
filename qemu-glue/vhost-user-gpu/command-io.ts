// The plumbing of a control command: the request gathered from a descriptor chain, the
// response written back, and the checks every command shares (rectangles, timeouts).
import { GuestDmabufError } from '../../lib/core/errors.js';
import type { DescriptorChain } from '../vhost-user/split-virtqueue.js';
import * as P from './virtio-gpu-protocol.js';

/** The request: the chain's readable buffers concatenated, at most `max` bytes. */
export function gather(chain: DescriptorChain, max: number): Uint8Array {
  if (chain.readable.length === 1) return chain.readable[0]!.slice(0, max);
  const out = new Uint8Array(Math.min(chain.readableBytes, max));
  let at = 0;
  for (const buffer of chain.readable) {
    if (at >= out.length) break;
    const take = Math.min(buffer.length, out.length - at);
    out.set(buffer.subarray(0, take), at);
    at += take;
  }
  return out;
}

/** Writes the response into the chain's writable buffers; returns how many bytes fit. */
export function writeResponse(chain: DescriptorChain, response: Uint8Array): number {
  let at = 0;
  for (const buffer of chain.writable) {
    if (at >= response.length) break;
    const take = Math.min(buffer.length, response.length - at);
    buffer.set(response.subarray(at, at + take));
    at += take;
  }
  return at;
}

export function okNoData(type: number, header: P.CtrlHeader | null): Uint8Array {
  const response = new Uint8Array(P.CTRL_HEADER_SIZE);
  P.encodeResponseHeader(response, type, header);
  return response;
}

/** The rectangle lies within the resource (overflow-safe: every field is a u32). */
export function inside(r: P.Rect, resource: { width: number; height: number }): boolean {
  return r.x <= resource.width && r.y <= resource.height && r.width <= resource.width - r.x && r.height <= resource.height - r.y;
}

export function milliseconds(ms: number, name: string): number {
  if (!Number.isInteger(ms) || ms < 1 || ms > 0x7fff_ffff) throw new GuestDmabufError(`${name} must be a whole number of milliseconds, 1 to 2^31 − 1 (got ${ms})`, 'ERR_OUT_OF_RANGE');
  return ms;
}

export function describe(r: P.Rect): string {
  return `${r.width}×${r.height}+${r.x}+${r.y}`;
}
