// The embedded demo (`npm run demo`): runs inside the VM. It plays a VMM: guest RAM in a memfd
// mapped at a guest-physical address, a 1280x720 XRGB8888 "guest framebuffer" drawn into it,
// exported as a dma-buf with zero copies (with the metadata a Wayland compositor needs), read
// back through the dma-buf to show it is the same memory, then re-exported from the cache.
import { exportFramebuffer, fourccCode, GuestMemory, Memfd, SurfaceCache, Udmabuf, unmap } from '../lib/index.js';

const WIDTH = 1280;
const HEIGHT = 720;
const STRIDE = WIDTH * 4;
const RAM_GPA = 0x40000000; // where guest RAM starts (aarch64 virt's layout)
const FB_OFFSET = (16 << 20) + 0x200; // the framebuffer sits just past 16 MiB into guest RAM, off a page boundary

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

const memory = new GuestMemory([{ gpa: RAM_GPA, size: ram.size, memfd: ram, offset: 0, name: 'mach-virt.ram' }]);
using cache = new SurfaceCache();
const descriptor = { gpa: RAM_GPA + FB_OFFSET, width: WIDTH, height: HEIGHT, stride: STRIDE, format: 'XR24' };
const time = <T>(fn: () => T): [T, number] => {
  const started = process.hrtime.bigint();
  return [fn(), Number(process.hrtime.bigint() - started) / 1000];
};
const [surface, micros] = time(() => exportFramebuffer(dev, memory, descriptor, { cache }));
using fb = surface.dmabuf;
fb.setName('demo-framebuffer');
const info = fb.info();
const plane = surface.planes[0];
console.log(`exported ${info.size} bytes as dma-buf fd ${fb.fd} in ${micros.toFixed(0)} us (exporter ${info.exporter}, name ${info.name})`);
console.log(`for the compositor: ${surface.width}x${surface.height} ${fourccCode(surface.fourcc)}, modifier ${surface.modifier}, plane offset ${plane.offset}, stride ${plane.stride}`);

// Read back through the dma-buf, then change guest RAM and see the change: same pages.
const view = fb.map();
const readBack = fb.sync('read', () => new Uint32Array(view.buffer, plane.offset, WIDTH * HEIGHT));
const same = readBack.every((v, i) => v === pixels[i]);
pixels[0] = 0x12345678;
const live = fb.sync('read', () => new Uint32Array(view.buffer, plane.offset, 1)[0] === 0x12345678);
unmap(view);
unmap(guest);
console.log(`dma-buf content equals the guest framebuffer: ${same}; a later guest write shows through: ${live}`);

// The next frame of the same surface: a dup of the live buffer, no new pinning.
const [again, cachedMicros] = time(() => exportFramebuffer(dev, memory, descriptor, { cache }));
again[Symbol.dispose]();
console.log(`re-exported from the cache in ${cachedMicros.toFixed(0)} us (${cache.stats.hits} hit, ${cache.stats.pinnedBytes} bytes pinned by the cache)`);
if (!same || !live) process.exit(1);
