// The embedded demo (`npm run demo`): runs inside the VM. It plays a VMM: guest RAM in a memfd,
// a 1280x720 XRGB8888 "guest framebuffer" drawn into it, exported as a dma-buf with zero copies,
// then read back through the dma-buf to show it is the same memory.
import { Memfd, Udmabuf, unmap } from '../lib/index.js';

const WIDTH = 1280;
const HEIGHT = 720;
const STRIDE = WIDTH * 4;
const FB_OFFSET = 16 << 20; // the framebuffer sits 16 MiB into "guest RAM"

using ram = Memfd.create('guest-ram', 64 << 20, { seals: ['shrink', 'grow'] });
using dev = Udmabuf.open();
console.log(`device ${dev.path} (${dev.module}), limits: ${dev.limits.listLimit} ranges, ${dev.limits.sizeLimitBytes >> 20n} MiB`);

// Draw eight vertical colour bars into guest RAM.
const guest = ram.map();
const bars = [0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000];
const pixels = new Uint32Array(guest.buffer, FB_OFFSET, WIDTH * HEIGHT);
for (let y = 0; y < HEIGHT; y++) {
  for (let x = 0; x < WIDTH; x++) pixels[y * WIDTH + x] = bars[Math.floor((x * bars.length) / WIDTH)]!;
}

const started = process.hrtime.bigint();
using fb = dev.create([{ memfd: ram, offset: FB_OFFSET, size: STRIDE * HEIGHT }]);
const micros = Number(process.hrtime.bigint() - started) / 1000;
fb.setName('demo-framebuffer');
const info = fb.info();
console.log(`exported ${info.size} bytes as dma-buf fd ${fb.fd} in ${micros.toFixed(0)} us (exporter ${info.exporter}, name ${info.name})`);

// Read back through the dma-buf, then change guest RAM and see the change: same pages.
const view = fb.map();
const readBack = fb.sync('read', () => new Uint32Array(view.buffer, 0, WIDTH * HEIGHT));
const same = readBack.every((v, i) => v === pixels[i]);
pixels[0] = 0x12345678;
const live = fb.sync('read', () => new Uint32Array(view.buffer, 0, 1)[0] === 0x12345678);
unmap(view);
unmap(guest);
console.log(`dma-buf content equals the guest framebuffer: ${same}; a later guest write shows through: ${live}`);
if (!same || !live) process.exit(1);
