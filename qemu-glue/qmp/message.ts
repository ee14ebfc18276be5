// QMP messages, typed: what the server sends (greeting, return, error, event) and what the
// client sends (execute / exec-oob). Shapes follow QEMU's docs/interop/qmp-spec.rst; anything
// else is a protocol error, named with what was wrong.
import { QmpConnectionError } from './errors.js';

/** A JSON value, as QMP carries it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface QemuVersionInfo {
  major: number;
  minor: number;
  micro: number;
  /** Distribution build string, e.g. 'Debian 1:7.2+dfsg-7+deb12u16'. */
  package: string;
}

/** `{"QMP": {"version": {...}, "capabilities": [...]}}`: the first line QEMU sends. */
export interface QmpGreeting {
  kind: 'greeting';
  version: QemuVersionInfo;
  /** Capabilities the server offers, e.g. ['oob']. */
  capabilities: string[];
}

export interface QmpReturn {
  kind: 'return';
  id: JsonValue | undefined;
  value: JsonValue;
}

export interface QmpErrorReply {
  kind: 'error';
  id: JsonValue | undefined;
  class: string;
  desc: string;
}

/** An asynchronous event, e.g. SHUTDOWN, RESET, STOP. */
export interface QmpEvent {
  /** The event name. */
  event: string;
  data: JsonObject;
  /** When QEMU emitted it (host clock), in microseconds since the epoch. */
  timestampMicros: number;
}

export interface QmpEventMessage extends QmpEvent {
  kind: 'event';
}

export type QmpServerMessage = QmpGreeting | QmpReturn | QmpErrorReply | QmpEventMessage;

function protocolError(what: string, line: string): QmpConnectionError {
  const shown = line.length > 200 ? `${line.slice(0, 200)}… (${line.length} characters)` : line;
  return new QmpConnectionError(`the QMP peer sent ${what}: ${shown}`, 'ERR_QMP_PROTOCOL');
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses one line from the server. Throws QmpConnectionError 'ERR_QMP_PROTOCOL'. */
export function parseServerMessage(line: string): QmpServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw protocolError('a line that is not JSON', line);
  }
  if (!isObject(value)) throw protocolError('JSON that is not an object', line);
  if ('QMP' in value) {
    const qmp = value.QMP;
    const version = isObject(qmp) && isObject(qmp.version) ? qmp.version : undefined;
    const qemu = version && isObject(version.qemu) ? version.qemu : undefined;
    const capabilities = isObject(qmp) ? qmp.capabilities : undefined;
    if (!qemu || !Array.isArray(capabilities) || !capabilities.every((c) => typeof c === 'string')) {
      throw protocolError('a greeting without version.qemu or capabilities', line);
    }
    const number = (key: string): number => (typeof qemu[key] === 'number' ? (qemu[key] as number) : 0);
    return {
      kind: 'greeting',
      version: { major: number('major'), minor: number('minor'), micro: number('micro'), package: typeof version!.package === 'string' ? version!.package : '' },
      capabilities: capabilities as string[],
    };
  }
  if ('return' in value) return { kind: 'return', id: value.id, value: value.return! };
  if ('error' in value) {
    const error = value.error;
    if (!isObject(error) || typeof error.class !== 'string' || typeof error.desc !== 'string') {
      throw protocolError('an error reply without string class and desc', line);
    }
    return { kind: 'error', id: value.id, class: error.class, desc: error.desc };
  }
  if ('event' in value) {
    if (typeof value.event !== 'string') throw protocolError('an event whose name is not a string', line);
    const data = value.data === undefined ? {} : value.data;
    if (!isObject(data)) throw protocolError('an event whose data is not an object', line);
    const ts = isObject(value.timestamp) ? value.timestamp : {};
    const seconds = typeof ts.seconds === 'number' ? ts.seconds : 0;
    const micros = typeof ts.microseconds === 'number' ? ts.microseconds : 0;
    return { kind: 'event', event: value.event, data, timestampMicros: seconds * 1e6 + micros };
  }
  throw protocolError('an object that is no greeting, return, error or event', line);
}

/** One command line for the server: `execute` (or `exec-oob`), `arguments`, `id`, newline. */
export function encodeCommand(command: string, args: JsonObject | undefined, id: string, oob: boolean): string {
  const message: JsonObject = { [oob ? 'exec-oob' : 'execute']: command };
  if (args !== undefined) message.arguments = args;
  message.id = id;
  return `${JSON.stringify(message)}\n`;
}
