// Shows a moving test picture from "guest memory" in a Wayland window, zero-copy: the picture
// is drawn into a memfd standing in for guest RAM, exported once as a dma-buf, imported once
// by the compositor, and every frame only the pixels that changed are written and damaged.
//   WAYLAND_DISPLAY=wayland-0 node dist/examples/wayland-show.js [frames]
// (Runs until the compositor asks to close the window, or for `frames` frames.)
import { exportFramebuffer, GuestMemory, Memfd, Udmabuf, unmap, WaylandClient } from '../lib/index.js';

const WIDTH = 640;
const HEIGHT = 480;
const STRIDE = WIDTH * 4;
const FB = 0x1000; // the framebuffer's offset in guest RAM
const BOX = 64;
const frames = Number(process.argv[2] ?? Infinity);

using ram = Memfd.create('guest-ram', 4 << 20, { seals: ['shrink', 'grow'] });
const memory = new GuestMemory([{ gpa: 0, size: ram.size, memfd: ram, offset: 0, name: 'ram' }]);
using dev = Udmabuf.open();
using surface = exportFramebuffer(dev, memory, { gpa: FB, width: WIDTH, height: HEIGHT, stride: STRIDE, format: 'XR24' });
const guest = ram.map();
const pixels = new Uint32Array(guest.buffer, FB, WIDTH * HEIGHT);

const bars = [0xc0c0c0, 0xc0c000, 0x00c0c0, 0x00c000, 0xc000c0, 0xc00000, 0x0000c0, 0x101010];
const background = (x: number): number => bars[Math.floor((x * bars.length) / WIDTH)]!;
for (let y = 0; y < HEIGHT; y++) for (let x = 0; x < WIDTH; x++) pixels[y * WIDTH + x] = background(x);

/** Draws the box at (bx, by), or the background under it. */
function box(bx: number, by: number, on: boolean): void {
  for (let y = by; y < by + BOX; y++) for (let x = bx; x < bx + BOX; x++) pixels[y * WIDTH + x] = on ? 0xffffff ^ background(x) : background(x);
}

using wl = await WaylandClient.connect();
using win = await wl.createWindow({ title: 'guest-dmabuf: wayland-show', width: WIDTH, height: HEIGHT });
let open = true;
win.onCloseRequest(() => (open = false));

let [x, y, dx, dy] = [0, 0, 5, 3];
box(x, y, true);
await win.present(surface);
const started = performance.now();
let shown = 0;
while (open && shown < frames) {
  const old = { x, y, width: BOX, height: BOX };
  box(x, y, false);
  if (x + dx < 0 || x + dx + BOX > WIDTH) dx = -dx;
  if (y + dy < 0 || y + dy + BOX > HEIGHT) dy = -dy;
  x += dx;
  y += dy;
  box(x, y, true);
  // Only the old and new box positions changed.
  await win.present(surface, { damage: [old, { x, y, width: BOX, height: BOX }] });
  shown++;
}
const seconds = (performance.now() - started) / 1000;
console.log(`${shown} frames in ${seconds.toFixed(1)} s (${(shown / seconds).toFixed(1)} fps), one import, no copies`);
unmap(guest);
