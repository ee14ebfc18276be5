// Showing a guest surface in a Wayland window, through the sidecar: the end of the data path.
// The surface's buffer is imported once (WaylandWindow keeps one wl_buffer per buffer object);
// each damage event is a commit of that same wl_buffer with the guest's rectangles damaged, so no
// pixel is copied on the way; a replaced buffer is imported, shown, and the old one let go only
// after the compositor's wl_buffer.release (then the sidecar is told, and may reuse the pages).
import type { WaylandClient } from '../../lib/wayland/client/wayland-client.js';
import type { WaylandWindow } from '../../lib/wayland/client/window.js';
import type { SidecarClient } from './client.js';
import type { SurfaceInfo } from './messages.js';
import type { SurfaceBuffer } from './subscription.js';

export interface ShowOptions {
  /** The surface; default: the first one the sidecar serves (waiting for one to appear). */
  surface?: number;
  /** Stop after this many presents (a test, a demo's frozen frame); default: until withdrawn or closed. */
  frames?: number;
  fullscreen?: boolean;
  signal?: AbortSignal;
  /** Progress and what is shown. */
  log?: (line: string) => void;
  /** Called after each commit with the counts so far (a benchmark reads them while showing runs). */
  onPresent?: (counts: Readonly<Pick<ShowResult, 'presents' | 'imports'>>) => void;
}

export interface ShowResult {
  surface: SurfaceInfo;
  /** Commits made: imports plus damage. */
  presents: number;
  /** Buffers imported (the first, then one per replacement). */
  imports: number;
  /** Why it ended. */
  end: 'frames' | 'withdrawn' | 'closed' | 'aborted';
}

const POLL_MS = 250;

/** The surface to show: `wanted`, or the first served; polls `list` until it is there. */
async function waitForSurface(client: SidecarClient, wanted: number | undefined, signal: AbortSignal | undefined, log: (line: string) => void): Promise<SurfaceInfo> {
  let said = 0;
  for (;;) {
    const surfaces = await client.list({ signal });
    const found = wanted === undefined ? surfaces[0] : surfaces.find((s) => s.surface === wanted);
    if (found) return found;
    if (performance.now() - said > 5000) {
      log(`waiting for ${wanted === undefined ? 'a surface' : `surface ${wanted}`} (the sidecar serves ${surfaces.map((s) => s.surface).join(', ') || 'none'} yet)`);
      said = performance.now();
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, POLL_MS);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Lets go of a buffer once the compositor has (or when showing ends): forget its wl_buffer, release it to the sidecar. */
async function retire(window: WaylandWindow, buffer: SurfaceBuffer, ending: AbortSignal): Promise<void> {
  try {
    await window.released(buffer, { signal: ending });
  } finally {
    window.forget(buffer);
    buffer.close();
  }
}

export async function showSurface(client: SidecarClient, wayland: WaylandClient, options: ShowOptions = {}): Promise<ShowResult> {
  const log = options.log ?? (() => {});
  const info = await waitForSurface(client, options.surface, options.signal, log);
  using window = await wayland.createWindow({ title: `guest-dmabuf: ${info.name}`, width: info.width, height: info.height, fullscreen: options.fullscreen });
  const closed = new AbortController();
  window.onCloseRequest(() => closed.abort());
  const signal = options.signal ? AbortSignal.any([options.signal, closed.signal]) : closed.signal;
  await using subscription = client.subscribe(info.surface, { signal });
  const result: ShowResult = { surface: info, presents: 0, imports: 0, end: 'withdrawn' };
  const retiring: Promise<void>[] = [];
  // Ends the waits for wl_buffer.release of replaced buffers when showing ends: the window's
  // close destroys what the compositor still holds.
  const ending = new AbortController();
  let current: SurfaceBuffer | null = null;
  const aborted = new Promise<'aborted'>((resolve) => (signal.aborted ? resolve('aborted') : signal.addEventListener('abort', () => resolve('aborted'), { once: true })));
  try {
    for (;;) {
      const pending = subscription.next();
      pending.catch(() => {}); // settled by the subscription's close when an abort wins the race
      const next = await Promise.race([pending, aborted]);
      if (next === 'aborted') {
        result.end = closed.signal.aborted ? 'closed' : 'aborted';
        break;
      }
      if (next.done) break;
      const event = next.value;
      if (event.type === 'surface' || event.type === 'replaced') {
        const previous = current;
        current = event.buffer;
        await window.present(current, { signal });
        result.imports++;
        result.presents++;
        options.onPresent?.(result);
        log(`${event.type === 'surface' ? 'showing' : 'replaced by'} buffer ${current.id}: ${current.width}×${current.height}, stride ${current.planes[0].stride}`);
        if (previous) retiring.push(retire(window, previous, ending.signal));
      } else if (event.type === 'damage') {
        if (current?.id !== event.buffer) continue; // damage of a buffer already replaced
        await window.present(current, { damage: event.rects, signal });
        result.presents++;
        options.onPresent?.(result);
      } else {
        log(`surface ${info.surface} withdrawn (${event.reason})`);
        result.end = 'withdrawn';
        break;
      }
      if (options.frames !== undefined && result.presents >= options.frames) {
        result.end = 'frames';
        break;
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
    result.end = closed.signal.aborted ? 'closed' : 'aborted';
  } finally {
    // The window goes first (its buffers are destroyed as the compositor lets go), then ours.
    window.close();
    current?.close();
    ending.abort();
    await Promise.allSettled(retiring);
  }
  return result;
}
