// A screenshot of a guest surface through the sidecar: subscribe, take the buffer the sidecar
// sends (the guest's own pages as a dma-buf), map it, read it inside DMA_BUF_IOCTL_SYNC as a
// CPU importer must, convert it to RGBA, let it go. No copy through QEMU, and nothing the guest
// does has to stop.
import { errnoCode } from '../../lib/core/errors.js';
import { unmap } from '../../lib/fd/mapping.js';
import { DRM_FORMAT_MOD_LINEAR, drmFormat, fourccCode, type DrmFormat } from '../../lib/formats/drm.js';
import { toRgba } from '../../lib/formats/pixels.js';
import type { Image } from '../../lib/formats/png.js';
import type { SidecarClient } from './client.js';
import { SidecarError } from './errors.js';
import type { SurfaceInfo } from './messages.js';

export interface CaptureOptions {
  /** The surface to capture; default: the only one, or the first the sidecar lists. */
  surface?: number;
  signal?: AbortSignal;
}

export interface Capture {
  surface: SurfaceInfo;
  format: DrmFormat;
  image: Image;
}

export async function captureSurface(client: SidecarClient, { surface, signal }: CaptureOptions = {}): Promise<Capture> {
  const surfaces = await client.list({ signal });
  const info = surface === undefined ? surfaces[0] : surfaces.find((s) => s.surface === surface);
  if (!info) {
    const served = surfaces.map((s) => `${s.surface} (${s.name})`).join(', ') || 'none yet';
    throw new SidecarError(surface === undefined ? 'the sidecar serves no surface yet: start the guest\'s display, or describe a framebuffer' : `the sidecar serves no surface ${surface}: it serves ${served}`, 'ERR_SIDECAR_NO_SURFACE');
  }
  await using subscription = client.subscribe(info.surface, { signal });
  const first = await subscription.next();
  if (first.done || first.value.type !== 'surface') {
    const why = first.done ? 'the subscription ended' : first.value.type === 'withdrawn' ? `it was withdrawn (${first.value.reason})` : `the sidecar sent ${first.value.type} first`;
    throw new SidecarError(`surface ${info.surface} has no buffer to capture: ${why}`, 'ERR_SIDECAR_NO_BUFFER');
  }
  using buffer = first.value.buffer;
  if (buffer.modifier !== DRM_FORMAT_MOD_LINEAR) {
    throw new SidecarError(`surface ${info.surface}'s buffer has modifier 0x${buffer.modifier.toString(16)}: only linear buffers can be read by the CPU`, 'ERR_SIDECAR_NO_BUFFER');
  }
  const format = drmFormat(buffer.fourcc);
  const bytes = buffer.dmabuf.map();
  try {
    const read = (): Image => toRgba({ bytes, format, width: buffer.width, height: buffer.height, stride: buffer.planes[0].stride, offset: buffer.planes[0].offset });
    let image: Image;
    try {
      image = buffer.dmabuf.sync('read', read);
    } catch (err) {
      // An fd that is not a dma-buf (a peer's shared-memory buffer) has no DMA_BUF_IOCTL_SYNC,
      // and no device caches to bracket: its pixels are read as they are.
      if (errnoCode(err) !== 'ENOTTY') throw err;
      image = read();
    }
    return { surface: info, format, image };
  } catch (err) {
    if (err instanceof RangeError) throw new SidecarError(`surface ${info.surface}'s ${fourccCode(buffer.fourcc)} buffer does not hold its ${buffer.width}×${buffer.height} pixels: ${err.message}`, 'ERR_SIDECAR_NO_BUFFER');
    throw err;
  } finally {
    unmap(bytes);
  }
}
