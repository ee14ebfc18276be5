// Real dma-buf importers in the guest: vgem (DRM PRIME) and vivid (V4L2 capture), driven by
// their ioctls. Struct offsets are x86-64's.
import { spawnSync } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { ioc } from '../../../lib/core/linux.js';
import { native } from './raw.js';

export function modprobe(name: string): void {
  const r = spawnSync('modprobe', [name], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`modprobe ${name} failed: ${r.stderr}`);
}

// ---- vgem: DRM PRIME import ----
const DRM_IOCTL_GEM_CLOSE = ioc('w', 'd', 0x09, 8);
const DRM_IOCTL_PRIME_FD_TO_HANDLE = ioc('rw', 'd', 0x2e, 12);

export function openVgem(): number {
  modprobe('vgem');
  for (const card of readdirSync('/sys/class/drm').filter((c) => /^card\d+$/.test(c))) {
    const uevent = readFileSync(`/sys/class/drm/${card}/device/uevent`, 'utf8');
    if (/vgem/.test(uevent) && existsSync(`/dev/dri/${card}`)) return openSync(`/dev/dri/${card}`, 'r+');
  }
  throw new Error('vgem loaded but no /dev/dri/cardN belongs to it');
}

/** Imports a dma-buf into vgem (attach + map_dma_buf); returns the GEM handle. */
export function primeImport(drm: number, dmabuf: number): number {
  const arg = new Uint8Array(12);
  new DataView(arg.buffer).setInt32(8, dmabuf, true);
  native.ioctl(drm, DRM_IOCTL_PRIME_FD_TO_HANDLE, arg);
  return new DataView(arg.buffer).getUint32(0, true);
}

export function gemClose(drm: number, handle: number): void {
  const arg = new Uint8Array(8);
  new DataView(arg.buffer).setUint32(0, handle, true);
  native.ioctl(drm, DRM_IOCTL_GEM_CLOSE, arg);
}

// ---- vivid: V4L2 capture into a dma-buf ----
const V4L2_BUF_TYPE_VIDEO_CAPTURE = 1;
const V4L2_MEMORY_DMABUF = 4;
const VIDIOC_G_FMT = ioc('rw', 'V', 4, 208);
const VIDIOC_REQBUFS = ioc('rw', 'V', 8, 20);
const VIDIOC_QBUF = ioc('rw', 'V', 15, 88);
const VIDIOC_DQBUF = ioc('rw', 'V', 17, 88);
const VIDIOC_STREAMON = ioc('w', 'V', 18, 4);
const VIDIOC_STREAMOFF = ioc('w', 'V', 19, 4);

export interface CaptureFormat {
  width: number;
  height: number;
  fourcc: string;
  bytesPerLine: number;
  sizeImage: number;
}

export function openVividCapture(): number {
  modprobe('vivid');
  for (const node of readdirSync('/sys/class/video4linux')) {
    if (readFileSync(`/sys/class/video4linux/${node}/name`, 'utf8').trim() === 'vivid-000-vid-cap') return openSync(`/dev/${node}`, 'r+');
  }
  throw new Error('vivid loaded but it has no vivid-000-vid-cap node');
}

export function captureFormat(video: number): CaptureFormat {
  const fmt = new Uint8Array(208);
  const v = new DataView(fmt.buffer);
  v.setUint32(0, V4L2_BUF_TYPE_VIDEO_CAPTURE, true);
  native.ioctl(video, VIDIOC_G_FMT, fmt);
  const fourcc = String.fromCharCode(...fmt.subarray(16, 20));
  return { width: v.getUint32(8, true), height: v.getUint32(12, true), fourcc, bytesPerLine: v.getUint32(24, true), sizeImage: v.getUint32(28, true) };
}

function requestBuffers(video: number, count: number): void {
  const req = new Uint8Array(20);
  const v = new DataView(req.buffer);
  v.setUint32(0, count, true);
  v.setUint32(4, V4L2_BUF_TYPE_VIDEO_CAPTURE, true);
  v.setUint32(8, V4L2_MEMORY_DMABUF, true);
  native.ioctl(video, VIDIOC_REQBUFS, req);
}

function streamType(): Uint8Array {
  const t = new Uint8Array(4);
  new DataView(t.buffer).setUint32(0, V4L2_BUF_TYPE_VIDEO_CAPTURE, true);
  return t;
}

/** Queues `dmabuf` as vivid's one capture buffer: vb2 takes a reference and attaches. */
export function queueInto(video: number, dmabuf: number, length: number): void {
  requestBuffers(video, 1);
  const buf = new Uint8Array(88);
  const v = new DataView(buf.buffer);
  v.setUint32(4, V4L2_BUF_TYPE_VIDEO_CAPTURE, true);
  v.setUint32(60, V4L2_MEMORY_DMABUF, true);
  v.setInt32(64, dmabuf, true);
  v.setUint32(72, length, true);
  native.ioctl(video, VIDIOC_QBUF, buf);
}

/** Captures one frame into `dmabuf` (V4L2_MEMORY_DMABUF); returns bytesused. */
export function captureInto(video: number, dmabuf: number, length: number): number {
  queueInto(video, dmabuf, length);
  native.ioctl(video, VIDIOC_STREAMON, streamType());
  const done = new Uint8Array(88);
  const d = new DataView(done.buffer);
  d.setUint32(4, V4L2_BUF_TYPE_VIDEO_CAPTURE, true);
  d.setUint32(60, V4L2_MEMORY_DMABUF, true);
  native.ioctl(video, VIDIOC_DQBUF, done); // blocks until vivid's thread fills the frame
  return d.getUint32(8, true);
}

/** Stops streaming and frees the queue, which detaches vivid from the dma-buf. */
export function stopCapture(video: number): void {
  native.ioctl(video, VIDIOC_STREAMOFF, streamType());
  requestBuffers(video, 0);
}
