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
  /**
   * When the surface is withdrawn because it is gone (a guest reboot, QEMU restarted), wait for
   * the next surface of the same name and show it in the same window; default: end.
   */
  follow?: boolean;
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
  /** Surfaces followed after the first was withdrawn (with `follow`). */
  follows: number;
  /** Why it ended. */
  end: 'frames' | 'withdrawn' | 'closed' | 'aborted';
}

/** The surface to show: `wanted` (an id or a name), or the first served; waits for it to appear. */
async function waitForSurface(client: SidecarClient, wanted: { surface?: number; name?: string }, signal: AbortSignal | undefined, log: (line: string) => void): Promise<SurfaceInfo> {
  const surfaces = await client.list({ signal });
  const found = surfaces.find((s) => (wanted.surface === undefined || s.surface === wanted.surface) && (wanted.name === undefined || s.name === wanted.name));
  if (found) return found;
  const what = wanted.surface !== undefined ? `surface ${wanted.surface}` : wanted.name !== undefined ? `a surface named "${wanted.name}"` : 'a surface';
  log(`waiting for ${what} (the sidecar serves ${surfaces.map((s) => `${s.surface} (${s.name})`).join(', ') || 'none'} now)`);
  return client.waitForSurface({ ...wanted, signal });
}

/** Lets go of a buffer once the compositor has (or when showing ends): forget its wl_buffer, release it to the sidecar. */
async function retire(window: WaylandWindow, buffer: SurfaceBuffer, ending: AbortSignal, log: (line: string) => void): Promise<void> {
  try {
    await window.released(buffer, { signal: ending });
    log(`buffer ${buffer.id} released by the compositor: given back`);
  } catch {
    // Showing ended, or the compositor went away: the window's close destroys it either way.
  } finally {
    window.forget(buffer);
    buffer.close();
  }
}

export async function showSurface(client: SidecarClient, wayland: WaylandClient, options: ShowOptions = {}): Promise<ShowResult> {
  const log = options.log ?? (() => {});
  let info = await waitForSurface(client, options.surface === undefined ? {} : { surface: options.surface }, options.signal, log);
  const first = info;
  using window = await wayland.createWindow({ title: `guest-dmabuf: ${info.name}`, width: info.width, height: info.height, fullscreen: options.fullscreen });
  const closed = new AbortController();
  window.onCloseRequest(() => closed.abort());
  const signal = options.signal ? AbortSignal.any([options.signal, closed.signal]) : closed.signal;
  let subscription = client.subscribe(info.surface, { signal });
  const result: ShowResult = { surface: first, presents: 0, imports: 0, follows: 0, end: 'withdrawn' };
  // Buffers waiting for the compositor's release (a set: a long show replaces many).
  const retiring = new Set<Promise<void>>();
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
        if (previous) {
          const retired = retire(window, previous, ending.signal, log).finally(() => retiring.delete(retired));
          retiring.add(retired);
        }
      } else if (event.type === 'damage') {
        if (current?.id !== event.buffer) continue; // damage of a buffer already replaced
        await window.present(current, { damage: event.rects, signal });
        result.presents++;
        options.onPresent?.(result);
      } else {
        log(`surface ${info.surface} withdrawn (${event.reason})`);
        if (!options.follow || event.reason !== 'gone') {
          result.end = 'withdrawn';
          break;
        }
        // The window keeps the last frame until the next surface's first buffer replaces it.
        subscription.close();
        info = await waitForSurface(client, { name: info.name }, signal, log);
        log(`following "${info.name}": surface ${info.surface}`);
        result.follows++;
        subscription = client.subscribe(info.surface, { signal });
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
    subscription.close();
    current?.close();
    ending.abort();
    await Promise.allSettled([...retiring]);
  }
  return result;
}
