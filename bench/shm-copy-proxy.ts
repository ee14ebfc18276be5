// The copying path that `npm run bench:e2e` measures ours against: what a Wayland proxy for a VM
// display does today. It sits between QEMU and QEMU's contrib vhost-user-gpu as a transparent
// tap (test/vm/helpers/vhost-user-tap.ts: every vhost-user message relayed unchanged, which is
// this process's only extra work besides the copy), so it sees contrib's DMABUF_SCANOUT with its
// dma-buf and each DMABUF_UPDATE. At each update it copies the updated rectangle (plus whatever
// the buffer it writes missed while the compositor held it) from the mmapped dma-buf into a
// wl_shm buffer (two, each reused only after wl_buffer.release), then attaches, damages and
// commits it, one commit per frame callback as a well-behaved client does (updates that come
// meanwhile are merged into the next commit). It copies before letting the update go on to QEMU:
// contrib waits for QEMU's ack, so the frame holds still while it is copied.
//   node dist/bench/shm-copy-proxy.js --listen TAP_SOCKET --backend CONTRIB_SOCKET   ($WAYLAND_DISPLAY)
// SIGUSR1 logs `stats: updates=N commits=N copiedBytes=N`; SIGTERM ends it.
import { parseArgs } from 'node:util';
import { unmap } from '../lib/fd/mapping.js';
import type { DmaBuf } from '../lib/kernel/dma-buf.js';
import { ShmBuffers, unionRect, type ShmBuffer } from '../lib/wayland/client/shm-buffers.js';
import { WaylandClient } from '../lib/wayland/client/wayland-client.js';
import type { Rect } from '../lib/wayland/client/window.js';
import { VhostUserGpuTap, type TappedScanout, type TappedUpdate } from '../test/vm/helpers/vhost-user-tap.js';

const log = (line: string): void => void process.stderr.write(`shm-copy-proxy: ${line}\n`);

const { values } = parseArgs({ options: { listen: { type: 'string' }, backend: { type: 'string' } } });
if (!values.listen || !values.backend) {
  log('usage: shm-copy-proxy --listen TAP_SOCKET --backend CONTRIB_SOCKET');
  process.exit(64);
}

const wayland = await WaylandClient.connect();
if (!wayland.shm) throw new Error('the compositor offers no wl_shm');
const shm = wayland.shm;
const window = await wayland.createWindow({ title: 'shm-copy-proxy', width: 1280, height: 800, fullscreen: true });

/** The scanout being shown: the tap's dma-buf, our mapping of it, and the wl_shm buffers of its size. */
interface Shown {
  dmabuf: DmaBuf;
  view: Uint8Array;
  scanout: TappedScanout;
  buffers: ShmBuffers;
}
let shown: Shown | null = null;
const stats = { updates: 0, commits: 0, copiedBytes: 0 };
/** Damage not committed yet (updates that came while a commit awaited its frame callback). */
let pending: Rect | null = null;
let inFlight = false;
let awaitingRelease = false;
let syncWorks = true;

/** The tap's current scanout 0, mapped; wl_shm buffers made anew when its size changes. */
function current(): Shown | null {
  const scanout = tap.scanouts.get(0);
  if (!scanout) return null;
  if (shown?.dmabuf === scanout.dmabuf) return shown;
  const sameSize = shown && shown.scanout.width === scanout.width && shown.scanout.height === scanout.height;
  if (shown) unmap(shown.view);
  if (shown && !sameSize) shown.buffers.close();
  const buffers = sameSize ? shown!.buffers : new ShmBuffers(shm, wayland.connection, { width: scanout.width, height: scanout.height });
  // A new dma-buf: everything in every buffer is stale.
  buffers.damage({ x: 0, y: 0, width: scanout.width, height: scanout.height });
  shown = { dmabuf: scanout.dmabuf, view: scanout.dmabuf.map(), scanout, buffers };
  log(`scanout ${scanout.width}×${scanout.height}, stride ${scanout.stride}`);
  return shown;
}

/** Copies `buffer`'s stale rectangle out of the dma-buf, row by row unless the rows are contiguous. */
function copyInto(s: Shown, buffer: ShmBuffer): void {
  const r = buffer.stale;
  if (!r) return;
  const rowBytes = r.width * 4;
  const copy = (): void => {
    if (r.x === 0 && r.width === s.scanout.width && s.scanout.stride === buffer.stride) {
      buffer.bytes.set(s.view.subarray(r.y * buffer.stride, (r.y + r.height) * buffer.stride), r.y * buffer.stride);
    } else {
      for (let y = r.y; y < r.y + r.height; y++) {
        const from = y * s.scanout.stride + r.x * 4;
        buffer.bytes.set(s.view.subarray(from, from + rowBytes), y * buffer.stride + r.x * 4);
      }
    }
  };
  // CPU reads of a dma-buf belong between DMA_BUF_IOCTL_SYNC START and END; should the exporter
  // refuse them, the copy goes on without (on x86 the bracket orders nothing the copy needs).
  if (syncWorks) {
    try {
      s.dmabuf.sync('read', copy);
    } catch (err) {
      syncWorks = false;
      log(`DMA_BUF_IOCTL_SYNC failed (${(err as Error).message}): copying without it`);
      copy();
    }
  } else {
    copy();
  }
  stats.copiedBytes += rowBytes * r.height;
  buffer.stale = null;
}

/** Copies and commits the pending damage when no commit awaits its frame callback and a buffer is free. */
function present(): void {
  const s = current();
  if (!s || !pending || inFlight || awaitingRelease) return;
  const buffer = s.buffers.free();
  if (!buffer) {
    awaitingRelease = true;
    s.buffers.anyReleased().then(() => {
      awaitingRelease = false;
      present();
    }, fail);
    return;
  }
  copyInto(s, buffer);
  const damage = pending;
  pending = null;
  inFlight = true;
  stats.commits++;
  window.presentBuffer(buffer.wl, { damage: [damage] }).then(() => {
    inFlight = false;
    present();
  }, fail);
}

function onUpdate(update: TappedUpdate): void {
  if (update.scanoutId !== 0) return;
  stats.updates++;
  const s = current();
  if (!s) return;
  const rect = { x: update.x, y: update.y, width: update.width, height: update.height };
  s.buffers.damage(rect);
  pending = unionRect(pending, rect);
  present();
}

function fail(err: unknown): void {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}

const tap = VhostUserGpuTap.listen(values.listen, values.backend, { onUpdate });
log(`listening on ${values.listen} (back end ${values.backend})`);
process.on('SIGUSR1', () => log(`stats: updates=${stats.updates} commits=${stats.commits} copiedBytes=${stats.copiedBytes}`));
process.once('SIGTERM', () => {
  log(`SIGTERM: ${stats.commits} commits of ${stats.updates} updates`);
  void tap.close().finally(() => {
    wayland.close();
    process.exit(0);
  });
});
