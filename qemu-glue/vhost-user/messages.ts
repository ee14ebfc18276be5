// vhost-user payloads, request by request: decoders that check the payload's size before
// reading a byte of it, and encoders for the replies and for a front end (the tests' QEMU).
import { MAX_CONFIG_SIZE, MAX_MEM_TABLE_REGIONS, requestName, VRING_INDEX_MASK, VRING_NOFD_MASK } from './protocol.js';
import { VhostUserError } from './errors.js';

/** {u32 index; u32 num}: SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE. */
export interface VringState {
  index: number;
  num: number;
}

/** SET_VRING_ADDR: the rings as the front end's own user addresses. */
export interface VringAddress {
  index: number;
  flags: number;
  descUserAddr: bigint;
  usedUserAddr: bigint;
  availUserAddr: bigint;
  logGuestAddr: bigint;
}

/** One SET_MEM_TABLE / ADD_MEM_REG region: guest-physical range, QEMU's mapping of it, file offset. */
export interface MemoryRegionDescription {
  guestPhysAddr: bigint;
  size: bigint;
  userAddr: bigint;
  mmapOffset: bigint;
}

/** GET_CONFIG / SET_CONFIG. */
export interface ConfigAccess {
  offset: number;
  size: number;
  flags: number;
  data: Uint8Array;
}

/** SET_VRING_KICK/CALL/ERR: which queue, and whether an fd came with it. */
export interface VringFdRequest {
  index: number;
  noFd: boolean;
}

const VRING_ADDR_SIZE = 40;
const REGION_SIZE = 32;
const CONFIG_HEADER_SIZE = 12;

function view(payload: Uint8Array): DataView {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

function needSize(request: number, payload: Uint8Array, expected: number, atLeast = false): void {
  const ok = atLeast ? payload.length >= expected : payload.length === expected;
  if (!ok) throw new VhostUserError(`${requestName(request)} has a ${payload.length}-byte payload; it needs ${atLeast ? 'at least ' : ''}${expected}`, 'ERR_VHOST_USER_MESSAGE');
}

export function decodeU64(request: number, payload: Uint8Array): bigint {
  needSize(request, payload, 8);
  return view(payload).getBigUint64(0, true);
}

export function encodeU64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  view(bytes).setBigUint64(0, value, true);
  return bytes;
}

export function decodeVringState(request: number, payload: Uint8Array): VringState {
  needSize(request, payload, 8);
  const v = view(payload);
  return { index: v.getUint32(0, true), num: v.getUint32(4, true) };
}

export function encodeVringState({ index, num }: VringState): Uint8Array {
  const bytes = new Uint8Array(8);
  const v = view(bytes);
  v.setUint32(0, index, true);
  v.setUint32(4, num, true);
  return bytes;
}

export function decodeVringAddress(request: number, payload: Uint8Array): VringAddress {
  needSize(request, payload, VRING_ADDR_SIZE);
  const v = view(payload);
  return {
    index: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    descUserAddr: v.getBigUint64(8, true),
    usedUserAddr: v.getBigUint64(16, true),
    availUserAddr: v.getBigUint64(24, true),
    logGuestAddr: v.getBigUint64(32, true),
  };
}

export function encodeVringAddress(a: VringAddress): Uint8Array {
  const bytes = new Uint8Array(VRING_ADDR_SIZE);
  const v = view(bytes);
  v.setUint32(0, a.index, true);
  v.setUint32(4, a.flags, true);
  v.setBigUint64(8, a.descUserAddr, true);
  v.setBigUint64(16, a.usedUserAddr, true);
  v.setBigUint64(24, a.availUserAddr, true);
  v.setBigUint64(32, a.logGuestAddr, true);
  return bytes;
}

export function decodeVringFdRequest(request: number, payload: Uint8Array): VringFdRequest {
  const value = decodeU64(request, payload);
  return { index: Number(value & BigInt(VRING_INDEX_MASK)), noFd: (value & BigInt(VRING_NOFD_MASK)) !== 0n };
}

function readRegion(v: DataView, at: number): MemoryRegionDescription {
  return {
    guestPhysAddr: v.getBigUint64(at, true),
    size: v.getBigUint64(at + 8, true),
    userAddr: v.getBigUint64(at + 16, true),
    mmapOffset: v.getBigUint64(at + 24, true),
  };
}

function writeRegion(v: DataView, at: number, r: MemoryRegionDescription): void {
  v.setBigUint64(at, r.guestPhysAddr, true);
  v.setBigUint64(at + 8, r.size, true);
  v.setBigUint64(at + 16, r.userAddr, true);
  v.setBigUint64(at + 24, r.mmapOffset, true);
}

/** SET_MEM_TABLE: {u32 nregions; u32 padding; region[nregions]}. QEMU sends exactly nregions (older QEMUs pad to 8). */
export function decodeMemoryTable(request: number, payload: Uint8Array): MemoryRegionDescription[] {
  needSize(request, payload, 8, true);
  const v = view(payload);
  const count = v.getUint32(0, true);
  if (count === 0 || count > MAX_MEM_TABLE_REGIONS) {
    throw new VhostUserError(`${requestName(request)} lists ${count} regions; a table has 1 to ${MAX_MEM_TABLE_REGIONS}`, 'ERR_VHOST_USER_MESSAGE');
  }
  needSize(request, payload, 8 + count * REGION_SIZE, true);
  return Array.from({ length: count }, (_, i) => readRegion(v, 8 + i * REGION_SIZE));
}

export function encodeMemoryTable(regions: readonly MemoryRegionDescription[]): Uint8Array {
  const bytes = new Uint8Array(8 + regions.length * REGION_SIZE);
  const v = view(bytes);
  v.setUint32(0, regions.length, true);
  regions.forEach((r, i) => writeRegion(v, 8 + i * REGION_SIZE, r));
  return bytes;
}

/** ADD_MEM_REG / REM_MEM_REG: {u64 padding; region}. */
export function decodeSingleRegion(request: number, payload: Uint8Array): MemoryRegionDescription {
  needSize(request, payload, 8 + REGION_SIZE);
  return readRegion(view(payload), 8);
}

export function encodeSingleRegion(region: MemoryRegionDescription): Uint8Array {
  const bytes = new Uint8Array(8 + REGION_SIZE);
  writeRegion(view(bytes), 8, region);
  return bytes;
}

/** GET/SET_CONFIG: {u32 offset; u32 size; u32 flags; u8 region[size]}. */
export function decodeConfig(request: number, payload: Uint8Array): ConfigAccess {
  needSize(request, payload, CONFIG_HEADER_SIZE, true);
  const v = view(payload);
  const offset = v.getUint32(0, true);
  const size = v.getUint32(4, true);
  const flags = v.getUint32(8, true);
  if (size > MAX_CONFIG_SIZE || offset > MAX_CONFIG_SIZE - size) {
    throw new VhostUserError(`${requestName(request)} asks for config bytes ${offset}+${size}, past the ${MAX_CONFIG_SIZE}-byte config space`, 'ERR_VHOST_USER_MESSAGE');
  }
  needSize(request, payload, CONFIG_HEADER_SIZE + size);
  return { offset, size, flags, data: payload.slice(CONFIG_HEADER_SIZE, CONFIG_HEADER_SIZE + size) };
}

export function encodeConfig({ offset, size, flags, data }: ConfigAccess): Uint8Array {
  const bytes = new Uint8Array(CONFIG_HEADER_SIZE + size);
  const v = view(bytes);
  v.setUint32(0, offset, true);
  v.setUint32(4, size, true);
  v.setUint32(8, flags, true);
  bytes.set(data.subarray(0, size), CONFIG_HEADER_SIZE);
  return bytes;
}
