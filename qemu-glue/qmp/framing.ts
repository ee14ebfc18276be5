// QMP framing: one JSON object per line over a byte stream. Reads split a line and coalesce
// several; a line may be many megabytes (`info mtree`, `query-qmp-schema`). The decoder keeps a
// partial line as the chunks it came in (no re-copying per read, no re-scanning for the
// newline) and refuses a line as soon as it grows past the cap, so a hostile peer cannot make
// it buffer more than `maxLineBytes` plus one read.
import { QmpConnectionError } from './errors.js';

/** The default cap on one QMP line: far above any real reply, far below harm. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

const NEWLINE = 0x0a;

export class LineDecoder {
  readonly maxLineBytes: number;
  readonly #utf8 = new TextDecoder('utf-8', { fatal: true });
  #partial: Uint8Array[] = [];
  #partialBytes = 0;

  constructor(maxLineBytes = DEFAULT_MAX_LINE_BYTES) {
    this.maxLineBytes = maxLineBytes;
  }

  /** Bytes held for a line not yet complete. */
  get pendingBytes(): number {
    return this.#partialBytes;
  }

  /**
   * The complete lines `chunk` ends (without their newline; blank lines skipped). Throws
   * QmpConnectionError 'ERR_QMP_LINE_TOO_LONG' or 'ERR_QMP_PROTOCOL' (bad UTF-8).
   */
  push(chunk: Uint8Array): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(NEWLINE, start);
      if (newline < 0) break;
      this.#append(chunk.subarray(start, newline));
      const line = this.#take();
      if (line.trim() !== '') lines.push(line);
      start = newline + 1;
    }
    // Copied: the caller may reuse its buffer for the next read.
    if (start < chunk.length) this.#append(chunk.slice(start));
    return lines;
  }

  #append(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.#partialBytes += piece.length;
    if (this.#partialBytes > this.maxLineBytes) {
      const held = this.#partialBytes;
      this.#partial = [];
      this.#partialBytes = 0;
      throw new QmpConnectionError(`the QMP peer sent a line longer than ${this.maxLineBytes} bytes (at least ${held} without a newline): refused; raise maxLineBytes if the peer is trusted`, 'ERR_QMP_LINE_TOO_LONG');
    }
    this.#partial.push(piece);
  }

  #take(): string {
    const pieces = this.#partial;
    const bytes = pieces.length === 1 ? pieces[0]! : concat(pieces, this.#partialBytes);
    this.#partial = [];
    this.#partialBytes = 0;
    try {
      return this.#utf8.decode(bytes);
    } catch (err) {
      throw new QmpConnectionError('the QMP peer sent a line that is not valid UTF-8', 'ERR_QMP_PROTOCOL', { cause: err });
    }
  }
}

function concat(pieces: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}
