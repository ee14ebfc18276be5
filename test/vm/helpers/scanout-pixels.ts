// A scanout's exported dma-buf read as a display would: mapped, inside DMA_BUF_IOCTL_SYNC
// (START/END read, as the library's DmaBuf.sync does), every pixel compared with draw-fb's picture.
import { native } from '../../../lib/core/native.js';
import { unmap } from '../../../lib/fd/mapping.js';
import { DmaBuf } from '../../../lib/kernel/dma-buf.js';
import type { ScanoutBuffer } from '../../../qemu-glue/vhost-user-gpu/scanout-export.js';
import { drawnPixel, type Picture } from '../../../vm/gpu-guest.js';

export interface PixelCheck {
  pixels: number;
  differing: number;
  /** The first differing pixel, for the failure message. */
  first: { x: number; y: number; got: number; want: number } | null;
}

/** A picture the guest drew, or the pixel expected at each (x, y) (XRGB8888, X as 0xff). */
export type Expected = Picture | ((x: number, y: number) => number);

/** What a comparison needs of a buffer: the fd (dup'd here) and where the pixels are. */
export type PixelSource = Pick<ScanoutBuffer, 'fd' | 'width' | 'height' | 'stride' | 'offset'>;

export function comparePicture(buffer: PixelSource, expected: Expected): PixelCheck {
  const wanted = typeof expected === 'function' ? expected : (x: number, y: number): number => drawnPixel(x, y, expected);
  // The device keeps its fd: the check works on a duplicate, closed at the end.
  using dmabuf = DmaBuf.adopt(native.dup(buffer.fd));
  const view = dmabuf.map();
  try {
    return dmabuf.sync('read', () => {
      const data = new DataView(view.buffer, view.byteOffset + buffer.offset);
      let differing = 0;
      let first: PixelCheck['first'] = null;
      for (let y = 0; y < buffer.height; y++) {
        for (let x = 0; x < buffer.width; x++) {
          // XRGB8888: the X byte is undefined, compare the colour.
          const got = (data.getUint32(y * buffer.stride + 4 * x, true) | 0xff000000) >>> 0;
          const want = wanted(x, y);
          if (got !== want) {
            differing++;
            first ??= { x, y, got, want };
          }
        }
      }
      return { pixels: buffer.width * buffer.height, differing, first };
    });
  } finally {
    unmap(view);
  }
}

/** What settledPicture needs of a running guest (NestedGpuGuest). */
export interface FlushSource {
  readonly flushes: number;
  waitForFlush(seen: number, timeoutMs: number): Promise<boolean>;
}

/**
 * The scanout against the picture once the guest's copy has landed. Linux's fbdev emulation has
 * draw-fb write a shadow buffer and copies the damage into the resource's backing from a worker
 * that msync only schedules, so draw-fb can report before the copy is done (seen once on Debian's
 * 6.1: the last 532 pixels of the last row still black). So: compare; while pixels differ, wait for
 * the guest's next RESOURCE_FLUSH (each copy ends with one) and compare again, until `timeoutMs`.
 * A wrong or stale buffer never settles and fails.
 */
export async function settledPicture(guest: FlushSource, buffer: () => PixelSource | null, picture: Expected, timeoutMs: number): Promise<{ check: PixelCheck | null; compares: number }> {
  const deadline = performance.now() + timeoutMs;
  let compares = 0;
  for (;;) {
    const seen = guest.flushes;
    const shown = buffer();
    const check = shown ? comparePicture(shown, picture) : null;
    compares++;
    if (check?.differing === 0) return { check, compares };
    const left = deadline - performance.now();
    if (left <= 0 || !(await guest.waitForFlush(seen, left))) return { check, compares };
  }
}
