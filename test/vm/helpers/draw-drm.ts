// Driving the GPU guest's draw-drm (vm/gpu-guest/draw-drm.c) from the host, and waiting on
// conditions the guest's side effects make true.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Image } from '../../../lib/formats/png.js';
import { differingPixels, drawnImage, type Picture } from '../../../vm/gpu-guest.js';
import type { NestedQemu } from './nested-qemu.js';
import type { Weston } from './weston.js';

/** A command's report; `run`/`move` frames take ~0.1–1 s each nested. */
const COMMAND_MS = 300_000;

/**
 * Sends draw-drm `line` and resolves with its report, which must match `expected`; any other
 * report (a refusal, a failed ioctl) rejects at once, quoting it.
 */
export async function drmCommand(guest: Pick<NestedQemu, 'send' | 'waitFor'>, line: string, expected: RegExp, log: (line: string) => void = () => {}): Promise<RegExpMatchArray> {
  guest.send(line);
  const report = await guest.waitFor(/^draw-drm: (?!moving$).*/, COMMAND_MS);
  const match = expected.exec(report[0]);
  if (!match) throw new Error(`draw-drm answered "${line}" with "${report[0]}", expected ${expected}`);
  log(`${line} → ${report[0]}`);
  return match;
}

/** Polls `condition` every 100 ms; false when `timeoutMs` passed first. */
export async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/**
 * Screenshots (every 500 ms) until weston's whole `width`×`height` output shows `picture` as
 * the guest draws it (its last flushes may still be on their way), or `timeoutMs` passed:
 * the pixels that differ in the last screenshot, and how many were taken.
 */
export async function screenShows(weston: Pick<Weston, 'screenshot'>, width: number, height: number, picture: Picture, timeoutMs = 30_000): Promise<{ bad: number; shots: number; image: Image }> {
  const want = drawnImage(width, height, picture);
  const deadline = performance.now() + timeoutMs;
  for (let shots = 1; ; shots++) {
    const image = weston.screenshot();
    const bad = differingPixels(image, want);
    if (bad === 0 || performance.now() > deadline) return { bad, shots, image };
    await sleep(500);
  }
}
