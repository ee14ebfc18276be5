// wl_shm format codes: the DRM fourcc, except for the two formats that predate fourccs.
import { fourcc } from './drm.js';

// wl_shm names ARGB8888 and XRGB8888 0 and 1 (they predate fourccs); every other wl_shm
// format code is the DRM fourcc.
const WL_SHM_ARGB8888 = 0;
const WL_SHM_XRGB8888 = 1;

/** The wl_shm format code for a DRM fourcc. */
export function wlShmFormat(drmFourcc: number): number {
  if (drmFourcc === fourcc('AR24')) return WL_SHM_ARGB8888;
  if (drmFourcc === fourcc('XR24')) return WL_SHM_XRGB8888;
  return drmFourcc;
}

/** The DRM fourcc for a wl_shm format code. */
export function fromWlShmFormat(code: number): number {
  if (code === WL_SHM_ARGB8888) return fourcc('AR24');
  if (code === WL_SHM_XRGB8888) return fourcc('XR24');
  return code;
}
