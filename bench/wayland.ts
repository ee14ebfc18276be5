// `npm run bench:wayland` (in the VM): a 1920×1080 XRGB8888 guest framebuffer shown every
// frame through one weston, two ways:
//   dma-buf: the guest memory is the buffer (exported and imported once; each frame is a
//            damaged commit of the same wl_buffer);
//   wl_shm:  each frame is copied from guest memory into a shm pool buffer (double-buffered,
//            reusing one only after wl_buffer.release), which weston then uploads.
// Both change the same pixels in guest memory each frame. Printed: frames per second and CPU
// time per frame of the client (this process) and the compositor (weston), from
// /proc/<pid>/stat, and the ratio of total CPU per frame, dma-buf ÷ shm (target ≤ 0.25).
import { exportFramebuffer, GuestMemory, Memfd, ShmBuffers, Udmabuf, unmap, WaylandClient, type WaylandWindow } from '../lib/index.js';
import { Weston } from '../test/vm/helpers/weston.js';
import { cpuMs, printTable } from './stats.js';

const W = 1920;
const H = 1080;
const STRIDE = W * 4;
const SIZE = STRIDE * H;
const FRAMES = Number(process.env.BENCH_FRAMES ?? 60);
const WARMUP = 5;

interface Result {
  fps: number;
  clientMs: number;
  compositorMs: number;
}

async function measure(weston: Weston, frame: (i: number) => Promise<void>): Promise<Result> {
  for (let i = 0; i < WARMUP; i++) await frame(i);
  const c0 = cpuMs('self');
  const w0 = cpuMs(weston.pid);
  const t0 = performance.now();
  for (let i = 0; i < FRAMES; i++) await frame(WARMUP + i);
  const seconds = (performance.now() - t0) / 1000;
  return { fps: FRAMES / seconds, clientMs: (cpuMs('self') - c0) / FRAMES, compositorMs: (cpuMs(weston.pid) - w0) / FRAMES };
}

/** The guest's drawing: a band of 16 lines moves down the picture. */
function draw(pixels: Uint32Array, i: number): void {
  const y0 = (i * 16) % H;
  pixels.fill(0x00ff_ffff & (i * 0x010203), y0 * W, (y0 + 16) * W);
}

async function shmPath(wl: WaylandClient, win: WaylandWindow, guest: Uint32Array): Promise<(i: number) => Promise<void>> {
  if (!wl.shm) throw new Error('the compositor offers no wl_shm');
  const buffers = new ShmBuffers(wl.shm, wl.connection, { width: W, height: H });
  const guestBytes = new Uint8Array(guest.buffer, guest.byteOffset, SIZE);
  return async (i) => {
    draw(guest, i);
    const free = buffers.free() ?? (await buffers.anyReleased());
    free.bytes.set(guestBytes); // the copy this path cannot avoid
    await win.presentBuffer(free.wl, { damage: [{ x: 0, y: 0, width: W, height: H }] });
  };
}

const weston = await Weston.start({ width: W, height: H });
try {
  console.log(`weston ${W}×${H} (GL renderer) up in ${Math.round(weston.startMs)} ms; ${FRAMES} frames per path after ${WARMUP} warm-up frames`);
  using ram = Memfd.create('guest-ram', 16 << 20, { seals: ['shrink', 'grow'] });
  const memory = new GuestMemory([{ gpa: 0, size: ram.size, memfd: ram, offset: 0, name: 'ram' }]);
  using dev = Udmabuf.open();
  using surface = exportFramebuffer(dev, memory, { gpa: 0, width: W, height: H, stride: STRIDE, format: 'XR24' });
  const guestView = ram.map();
  const guest = new Uint32Array(guestView.buffer, 0, W * H);

  const results: [string, Result][] = [];
  {
    using wl = await WaylandClient.connect(weston.path);
    using win = await wl.createWindow({ width: W, height: H, fullscreen: true });
    results.push([
      'dma-buf',
      await measure(weston, async (i) => {
        draw(guest, i);
        await win.present(surface);
      }),
    ]);
  }
  {
    using wl = await WaylandClient.connect(weston.path);
    using win = await wl.createWindow({ width: W, height: H, fullscreen: true });
    results.push(['wl_shm copy', await measure(weston, await shmPath(wl, win, guest))]);
  }
  unmap(guestView);
  printTable(
    ['path', 'fps', 'client CPU/frame', 'weston CPU/frame', 'total CPU/frame'],
    results.map(([name, r]) => [name, r.fps.toFixed(1), `${r.clientMs.toFixed(1)} ms`, `${r.compositorMs.toFixed(1)} ms`, `${(r.clientMs + r.compositorMs).toFixed(1)} ms`]),
  );
  const [ours, shm] = [results[0]![1], results[1]![1]];
  const ratio = (ours.clientMs + ours.compositorMs) / (shm.clientMs + shm.compositorMs);
  console.log(`CPU per frame, dma-buf ÷ shm: ${ratio.toFixed(2)}× (target ≤ 0.25×); client alone ${(ours.clientMs / shm.clientMs).toFixed(2)}×, weston alone ${(ours.compositorMs / shm.compositorMs).toFixed(2)}×`);
} finally {
  await weston.stop();
}
