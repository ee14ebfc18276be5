// The sidecar protocol's messages, version 1 (PROTOCOL.md is the reference): typed requests a
// peer sends, typed replies and events the sidecar sends, their encoding to JSON and their
// decoding with every field checked. Framing (framing.ts) carries them; the sidecar (server.ts)
// and the client (client.ts) give them their meaning.
//
// Forward compatibility: fields a version does not define are ignored on receipt, so a later
// minor addition does not break an older peer; anything that changes a meaning needs a new
// version, agreed in hello.
import { SidecarError, type SidecarErrorCode } from './errors.js';
import { array, integer, oneOf, optionalInteger, optionalString, record, string, u64, type JsonRecord } from './fields.js';

/** Protocol versions this code speaks, newest first. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];
export const PROTOCOL_NAME = 'guest-dmabuf-sidecar';

/** Request ids are chosen by the peer and echoed in the reply. */
const MAX_ID = 0xffff_ffff;
/** Surface and buffer ids are the sidecar's counters. */
const MAX_HANDLE = Number.MAX_SAFE_INTEGER;
const MAX_DIMENSION = 0x7fff_ffff;
const MAX_NAME = 128;
const MAX_SURFACES = 256;
const MAX_RECTS = 64;

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface PlaneLayout {
  offset: number;
  stride: number;
}

/** A framebuffer a peer describes for export: `zwp_linux_dmabuf_v1` needs nothing else. */
export interface FramebufferRequest {
  gpa: bigint;
  width: number;
  height: number;
  stride: number;
  /** A DRM format code ("XR24"), name ("XRGB8888") or fourcc value. */
  format: string | number;
}

// ----- peer → sidecar -----

export type Request =
  | { type: 'hello'; id: number; versions: number[]; client?: string }
  | { type: 'list'; id: number }
  | { type: 'subscribe'; id: number; surface: number }
  | { type: 'unsubscribe'; id: number; surface: number }
  | { type: 'release'; id: number; buffer: number }
  | { type: 'export-framebuffer'; id: number; framebuffer: FramebufferRequest; name?: string }
  | { type: 'unexport'; id: number; surface: number }
  /** Answered (with `surfaces`, one entry) once a surface with that id or name is served: at once if one is. */
  | { type: 'wait-surface'; id: number; surface?: number; name?: string };

export type RequestType = Request['type'];
export const REQUEST_TYPES: readonly RequestType[] = ['hello', 'list', 'subscribe', 'unsubscribe', 'release', 'export-framebuffer', 'unexport', 'wait-surface'];

/** The request id of a message, if it has a usable one: error replies echo it. */
export function requestIdOf(value: unknown): number | undefined {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= MAX_ID ? id : undefined;
}

/** Decodes one request, checking every field; throws SidecarError naming the field. */
export function decodeRequest(value: unknown): Request {
  const message = record(value, 'message');
  const type = message.type;
  if (typeof type !== 'string') throw new SidecarError(`field "type" must be a string naming the request, not ${JSON.stringify(type) ?? 'missing'}`, 'ERR_SIDECAR_BAD_MESSAGE', { field: 'type' });
  if (!(REQUEST_TYPES as readonly string[]).includes(type)) {
    throw new SidecarError(`unknown request type "${type.slice(0, 40)}": protocol version 1 has ${REQUEST_TYPES.join(', ')}`, 'ERR_SIDECAR_UNKNOWN_TYPE', { field: 'type' });
  }
  const id = integer(message, 'id', 0, MAX_ID);
  switch (type as RequestType) {
    case 'hello': {
      const versions = array(message, 'versions', 16, (v, field) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffff) throw new SidecarError(`field "${field}" must be a protocol version (an integer from 1)`, 'ERR_SIDECAR_BAD_MESSAGE', { field });
        return v;
      });
      const client = optionalString(message, 'client', MAX_NAME);
      return { type: 'hello', id, versions, ...(client === undefined ? {} : { client }) };
    }
    case 'list':
      return { type: 'list', id };
    case 'subscribe':
    case 'unsubscribe':
    case 'unexport':
      return { type: type as 'subscribe' | 'unsubscribe' | 'unexport', id, surface: integer(message, 'surface', 1, MAX_HANDLE) };
    case 'release':
      return { type: 'release', id, buffer: integer(message, 'buffer', 1, MAX_HANDLE) };
    case 'wait-surface': {
      const surface = optionalInteger(message, 'surface', 1, MAX_HANDLE);
      const name = optionalString(message, 'name', MAX_NAME);
      return { type: 'wait-surface', id, ...(surface === undefined ? {} : { surface }), ...(name === undefined ? {} : { name }) };
    }
    case 'export-framebuffer': {
      const fb = record(message.framebuffer, 'framebuffer');
      const p = 'framebuffer.';
      const format = fb.format;
      if (!((typeof format === 'string' && format.length > 0 && format.length <= 32) || (typeof format === 'number' && Number.isInteger(format) && format > 0 && format <= 0xffff_ffff))) {
        throw new SidecarError('field "framebuffer.format" must be a DRM format code ("XR24"), name ("XRGB8888") or fourcc number', 'ERR_SIDECAR_BAD_MESSAGE', { field: 'framebuffer.format' });
      }
      const framebuffer: FramebufferRequest = {
        gpa: u64(fb, 'gpa', p),
        width: integer(fb, 'width', 1, MAX_DIMENSION, p),
        height: integer(fb, 'height', 1, MAX_DIMENSION, p),
        stride: integer(fb, 'stride', 1, MAX_DIMENSION, p),
        format,
      };
      const name = optionalString(message, 'name', MAX_NAME);
      return { type: 'export-framebuffer', id, framebuffer, ...(name === undefined ? {} : { name }) };
    }
  }
}

/** A request as JSON (the client's side). */
export function encodeRequest(request: Request): JsonRecord {
  if (request.type === 'export-framebuffer') {
    const { framebuffer: fb } = request;
    return { ...request, framebuffer: { ...fb, gpa: `0x${fb.gpa.toString(16)}` } };
  }
  return request;
}

// ----- sidecar → peer -----

/** A surface as list() describes it. */
export interface SurfaceInfo {
  surface: number;
  name: string;
  /** What serves it: "vhost-user-gpu", "framebuffer", "peer". */
  source: string;
  width: number;
  height: number;
  fourcc: number;
  modifier: bigint;
}

/** A buffer the sidecar sends with its fd: everything params.add and create need. */
export interface BufferInfo {
  surface: number;
  /** The sidecar's id for this buffer: release() names it. */
  buffer: number;
  width: number;
  height: number;
  fourcc: number;
  modifier: bigint;
  planes: PlaneLayout[];
  /** The dma-buf's size in bytes (what holding it pins). */
  size: number;
}

export interface Limits {
  maxLiveBuffers: number;
  maxPinnedBytes: number;
  maxFrameBytes: number;
}

export type WithdrawReason = 'gone' | 'source-closed' | 'peer-left' | 'unexported' | 'cap' | 'shutdown';
export const WITHDRAW_REASONS: readonly WithdrawReason[] = ['gone', 'source-closed', 'peer-left', 'unexported', 'cap', 'shutdown'];

export type ServerMessage =
  | { type: 'hello'; id: number; version: number; server: string; limits: Limits }
  | { type: 'surfaces'; id: number; surfaces: SurfaceInfo[] }
  | { type: 'ok'; id: number }
  | { type: 'exported'; id: number; surface: number }
  | { type: 'error'; id?: number; surface?: number; code: SidecarErrorCode; message: string; field?: string; causeCode?: string }
  /** The first buffer of a subscription; one fd. */
  | ({ type: 'surface' } & BufferInfo)
  /** A new buffer for the surface (a new scanout resource or mode); one fd. Release the old one. */
  | ({ type: 'replaced' } & BufferInfo)
  | { type: 'damage'; surface: number; buffer: number; rects: Rect[] }
  | { type: 'withdrawn'; surface: number; reason: WithdrawReason };

/** How many fds a server message carries. */
export function fdCountOf(message: ServerMessage): number {
  return message.type === 'surface' || message.type === 'replaced' ? 1 : 0;
}

/** A server message as JSON: u64s become decimal strings (JSON numbers stop at 2^53). */
export function encodeServerMessage(message: ServerMessage): JsonRecord {
  if (message.type === 'surfaces') return { ...message, surfaces: message.surfaces.map((s) => ({ ...s, modifier: s.modifier.toString() })) };
  if (message.type === 'surface' || message.type === 'replaced') return { ...message, modifier: message.modifier.toString() };
  return message;
}

function rect(value: unknown, field: string): Rect {
  const r = record(value, field);
  const p = `${field}.`;
  return { x: integer(r, 'x', 0, MAX_DIMENSION, p), y: integer(r, 'y', 0, MAX_DIMENSION, p), width: integer(r, 'width', 0, MAX_DIMENSION, p), height: integer(r, 'height', 0, MAX_DIMENSION, p) };
}

function bufferInfo(m: JsonRecord): BufferInfo {
  return {
    surface: integer(m, 'surface', 1, MAX_HANDLE),
    buffer: integer(m, 'buffer', 1, MAX_HANDLE),
    width: integer(m, 'width', 1, MAX_DIMENSION),
    height: integer(m, 'height', 1, MAX_DIMENSION),
    fourcc: integer(m, 'fourcc', 1, 0xffff_ffff),
    modifier: u64(m, 'modifier'),
    planes: array(m, 'planes', 4, (value, field) => {
      const plane = record(value, field);
      return { offset: integer(plane, 'offset', 0, MAX_DIMENSION, `${field}.`), stride: integer(plane, 'stride', 1, MAX_DIMENSION, `${field}.`) };
    }),
    size: integer(m, 'size', 1, Number.MAX_SAFE_INTEGER),
  };
}

/** Decodes a message from the sidecar, checking every field; throws SidecarError naming the field. */
export function decodeServerMessage(value: unknown): ServerMessage {
  const m = record(value, 'message');
  const type = oneOf(m, 'type', ['hello', 'surfaces', 'ok', 'exported', 'error', 'surface', 'replaced', 'damage', 'withdrawn'] as const);
  switch (type) {
    case 'hello': {
      const limits = record(m.limits, 'limits');
      return {
        type,
        id: integer(m, 'id', 0, MAX_ID),
        version: integer(m, 'version', 1, 0xffff),
        server: string(m, 'server', MAX_NAME),
        limits: {
          maxLiveBuffers: integer(limits, 'maxLiveBuffers', 0, MAX_HANDLE, 'limits.'),
          maxPinnedBytes: integer(limits, 'maxPinnedBytes', 0, Number.MAX_SAFE_INTEGER, 'limits.'),
          maxFrameBytes: integer(limits, 'maxFrameBytes', 1, 0x7fff_ffff, 'limits.'),
        },
      };
    }
    case 'surfaces':
      return {
        type,
        id: integer(m, 'id', 0, MAX_ID),
        surfaces: array(m, 'surfaces', MAX_SURFACES, (entry, field) => {
          const s = record(entry, field);
          const p = `${field}.`;
          return {
            surface: integer(s, 'surface', 1, MAX_HANDLE, p),
            name: string(s, 'name', MAX_NAME, p),
            source: string(s, 'source', MAX_NAME, p),
            width: integer(s, 'width', 1, MAX_DIMENSION, p),
            height: integer(s, 'height', 1, MAX_DIMENSION, p),
            fourcc: integer(s, 'fourcc', 1, 0xffff_ffff, p),
            modifier: u64(s, 'modifier', p),
          };
        }),
      };
    case 'ok':
      return { type, id: integer(m, 'id', 0, MAX_ID) };
    case 'exported':
      return { type, id: integer(m, 'id', 0, MAX_ID), surface: integer(m, 'surface', 1, MAX_HANDLE) };
    case 'error': {
      const id = optionalInteger(m, 'id', 0, MAX_ID);
      const surface = optionalInteger(m, 'surface', 1, MAX_HANDLE);
      const field = optionalString(m, 'field', MAX_NAME);
      const causeCode = optionalString(m, 'causeCode', MAX_NAME);
      return {
        type,
        ...(id === undefined ? {} : { id }),
        ...(surface === undefined ? {} : { surface }),
        code: string(m, 'code', 64) as SidecarErrorCode,
        message: string(m, 'message', 4096),
        ...(field === undefined ? {} : { field }),
        ...(causeCode === undefined ? {} : { causeCode }),
      };
    }
    case 'surface':
    case 'replaced':
      return { type, ...bufferInfo(m) };
    case 'damage':
      return { type, surface: integer(m, 'surface', 1, MAX_HANDLE), buffer: integer(m, 'buffer', 1, MAX_HANDLE), rects: array(m, 'rects', MAX_RECTS, rect) };
    case 'withdrawn':
      return { type, surface: integer(m, 'surface', 1, MAX_HANDLE), reason: oneOf(m, 'reason', WITHDRAW_REASONS) };
  }
}

/** Most damage rectangles in one message; more are merged into their bounding box. */
export const MAX_DAMAGE_RECTS = MAX_RECTS;
