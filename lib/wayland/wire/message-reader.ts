// Bytes to messages. Data arrives in arbitrary pieces (a message split over reads, several in
// one read); fds arrive out of band with whichever read carried the first byte of their
// sendmsg, so they are queued per connection and a message takes its fds from the queue's
// front as it is decoded, the way libwayland does.
import { native } from '../../core/native.js';
import { WaylandWireError } from './errors.js';
import { HEADER_SIZE, MAX_MESSAGE_SIZE, MAX_QUEUED_FDS, type ArgSignature, type WireValue } from './signature.js';

export interface MessageHeader {
  objectId: number;
  opcode: number;
  /** Whole message, header included. */
  size: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const pad4 = (n: number): number => (n + 3) & ~3;

export class MessageReader {
  #buffer = new Uint8Array(MAX_MESSAGE_SIZE * 2);
  #start = 0;
  #end = 0;
  readonly #fds: number[] = [];

  /** Fds received and not yet taken by a message. */
  get queuedFds(): number {
    return this.#fds.length;
  }

  /** Bytes received and not yet taken by a message. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /**
   * Appends received bytes and takes ownership of received fds. Over MAX_QUEUED_FDS the fds
   * are closed and this throws: the peer is sending fds that no message claims.
   */
  push(data: Uint8Array, fds: readonly number[] = []): void {
    this.#fds.push(...fds);
    if (this.#fds.length > MAX_QUEUED_FDS) {
      const n = this.#fds.length;
      this.close();
      throw new WaylandWireError(`the peer sent ${n} fds that no message has claimed (the limit is ${MAX_QUEUED_FDS}): its fd count does not match its messages`, 'ERR_WAYLAND_FDS');
    }
    if (this.#end + data.length > this.#buffer.length) {
      const live = this.#buffer.subarray(this.#start, this.#end);
      const next = this.#end - this.#start + data.length > this.#buffer.length ? new Uint8Array(pad4(live.length + data.length) * 2) : this.#buffer;
      next.set(live, 0);
      this.#end = live.length;
      this.#start = 0;
      this.#buffer = next;
    }
    this.#buffer.set(data, this.#end);
    this.#end += data.length;
  }

  /**
   * The next complete message's header, or null until all of its bytes are here. Throws for
   * a header no valid peer sends (shorter than a header, unaligned, over MAX_MESSAGE_SIZE).
   */
  peek(): MessageHeader | null {
    if (this.#end - this.#start < HEADER_SIZE) return null;
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset + this.#start, HEADER_SIZE);
    const objectId = view.getUint32(0, true);
    const word = view.getUint32(4, true);
    const size = word >>> 16;
    const opcode = word & 0xffff;
    if (size < HEADER_SIZE || size % 4 !== 0) throw new WaylandWireError(`a message to object ${objectId} (opcode ${opcode}) claims ${size} bytes: not a multiple of 4 at least ${HEADER_SIZE}, so the stream is garbage`);
    if (size > MAX_MESSAGE_SIZE) throw new WaylandWireError(`a message to object ${objectId} (opcode ${opcode}) claims ${size} bytes, over the ${MAX_MESSAGE_SIZE}-byte limit`, 'ERR_WAYLAND_MESSAGE_TOO_LARGE');
    if (this.#end - this.#start < size) return null;
    return { objectId, opcode, size };
  }

  /** Drops the message `header` names, closing `fdCount` fds it carried (for a destroyed object's late events). */
  skip(header: MessageHeader, fdCount = 0): void {
    this.#start += header.size;
    for (const fd of this.#fds.splice(0, Math.min(fdCount, this.#fds.length))) native.close(fd);
  }

  /**
   * Decodes the message `header` names by `signature` and consumes it. Object and new_id
   * arguments come back as ids (0 for a null object), fds as fds the caller now owns. Throws
   * WaylandWireError naming `what` when the bytes do not fit the signature; the message is
   * consumed either way and fds it took are closed on failure.
   */
  decode(header: MessageHeader, signature: readonly ArgSignature[], what: string): WireValue[] {
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset + this.#start, header.size);
    const bytes = this.#buffer.subarray(this.#start, this.#start + header.size);
    this.#start += header.size;
    const taken: number[] = [];
    const values: WireValue[] = [];
    let at = HEADER_SIZE;
    const fail = (why: string): never => {
      for (const fd of taken) native.close(fd);
      throw new WaylandWireError(`${what} from object ${header.objectId}: ${why}`);
    };
    const word = (i: number): number => {
      if (at + 4 > header.size) fail(`argument ${i} runs past the message's ${header.size} bytes`);
      const v = view.getUint32(at, true);
      at += 4;
      return v;
    };
    const counted = (i: number): Uint8Array => {
      const length = word(i);
      if (length > header.size - at || pad4(length) > header.size - at) fail(`argument ${i} claims ${length} bytes, past the message's end`);
      const out = bytes.slice(at, at + length);
      at += pad4(length);
      return out;
    };
    const text = (i: number, b: Uint8Array): string => {
      if (b[b.length - 1] !== 0) fail(`string argument ${i} is not NUL-terminated`);
      try {
        return utf8.decode(b.subarray(0, b.length - 1));
      } catch {
        return fail(`string argument ${i} is not UTF-8`);
      }
    };
    signature.forEach((sig, i) => {
      switch (sig.type) {
        case 'int':
          values.push(word(i) | 0);
          break;
        case 'uint':
          values.push(word(i));
          break;
        case 'fixed':
          values.push((word(i) | 0) / 256);
          break;
        case 'object': {
          const id = word(i);
          if (id === 0 && !sig.nullable) fail(`object argument ${i} is null but may not be`);
          values.push(id);
          break;
        }
        case 'new_id': {
          if (sig.interface === undefined) {
            const name = counted(i);
            const version = word(i);
            const id = word(i);
            values.push({ interface: text(i, name), version, id });
            break;
          }
          const id = word(i);
          if (id === 0) fail(`new_id argument ${i} is 0`);
          values.push(id);
          break;
        }
        case 'string': {
          const b = counted(i);
          if (b.length === 0) {
            if (!sig.nullable) fail(`string argument ${i} is null but may not be`);
            values.push(null);
          } else values.push(text(i, b));
          break;
        }
        case 'array':
          values.push(counted(i));
          break;
        case 'fd': {
          const fd = this.#fds.shift();
          if (fd === undefined) fail(`fd argument ${i} has no fd: the peer sent fewer fds than its messages carry`);
          taken.push(fd!);
          values.push(fd!);
          break;
        }
      }
    });
    if (at !== header.size) fail(`${header.size - at} bytes follow the last argument: the message does not match its signature`);
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return values;
  }

  /** Closes every queued fd and drops buffered bytes. */
  close(): void {
    for (const fd of this.#fds.splice(0)) native.close(fd);
    this.#start = this.#end = 0;
  }
}
