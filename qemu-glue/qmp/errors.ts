// QMP's errors, in the library's one error model (GuestDmabufError with a `code`):
// - QmpError: QEMU received the command and answered with an error. Carries QMP's `class`
//   (GenericError, CommandNotFound, DeviceNotFound, ...) and `desc`; code 'ERR_QMP_COMMAND'.
// - QmpConnectionError: the connection itself failed; every call pending on it rejects with
//   the same error. The code says what happened.
import { GuestDmabufError } from '../../lib/core/errors.js';

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpError extends GuestDmabufError {
  override name = 'QmpError';
  /** QMP's error class, e.g. 'GenericError', 'CommandNotFound'. */
  readonly class: string;
  /** QEMU's human-readable description. */
  readonly desc: string;
  /** The command that failed. */
  readonly command: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`QMP command ${command} failed (${errorClass}): ${desc}`, 'ERR_QMP_COMMAND');
    this.class = errorClass;
    this.desc = desc;
    this.command = command;
  }
}

export type QmpConnectionErrorCode =
  /** The peer closed the connection, or close() was called, while something was pending. */
  | 'ERR_QMP_CLOSED'
  /** The peer sent something that is not QMP: bad JSON, bad UTF-8, a message of no known shape. */
  | 'ERR_QMP_PROTOCOL'
  /** A line longer than the client's maxLineBytes: refused before it was buffered whole. */
  | 'ERR_QMP_LINE_TOO_LONG'
  /** No greeting, or no reply, within timeoutMs. */
  | 'ERR_QMP_TIMEOUT'
  /** The greeting or the capabilities negotiation failed. */
  | 'ERR_QMP_NEGOTIATION';

/** The QMP connection failed; `code` says how. */
export class QmpConnectionError extends GuestDmabufError {
  override name = 'QmpConnectionError';
  declare readonly code: QmpConnectionErrorCode;
  constructor(message: string, code: QmpConnectionErrorCode, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

/**
 * An event iterator's buffer filled because its consumer fell behind. Events after the
 * `buffered` ones it already yielded were dropped (`dropped` of them, so far); iterate again
 * (and faster, or with a larger `maxBuffered`) to resume.
 */
export class QmpEventOverflowError extends GuestDmabufError {
  override name = 'QmpEventOverflowError';
  readonly maxBuffered: number;
  constructor(maxBuffered: number) {
    super(`QMP events arrived faster than they were consumed: more than ${maxBuffered} were waiting, so later ones were dropped; consume faster or pass a larger maxBuffered to events()`, 'ERR_QMP_EVENTS_OVERFLOW');
    this.maxBuffered = maxBuffered;
  }
}

/**
 * A command was refused before it was queued: `queuedBytes` of earlier commands are still
 * waiting to be written because the peer is not reading (QEMU busy, stopped or hung), and this
 * one would pass the connection's cap. The connection itself is fine; nothing was sent.
 */
export class QmpBackpressureError extends GuestDmabufError {
  override name = 'QmpBackpressureError';
  readonly command: string;
  readonly queuedBytes: number;
  readonly maxQueuedBytes: number;
  constructor(command: string, queuedBytes: number, maxQueuedBytes: number) {
    super(`QMP command ${command} was not sent: ${queuedBytes} bytes of earlier commands are still waiting to be written because QEMU is not reading its monitor (busy with a long command, stopped, or hung), and the connection queues at most ${maxQueuedBytes}; wait for earlier replies (or time them out), or pass a larger maxQueuedBytes to QmpClient.connect()`, 'ERR_QMP_BACKPRESSURE');
    this.command = command;
    this.queuedBytes = queuedBytes;
    this.maxQueuedBytes = maxQueuedBytes;
  }
}
