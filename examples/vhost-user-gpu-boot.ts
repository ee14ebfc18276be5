// First light for the vhost-user-gpu back end: QEMU 10.0 (TCG, -display none) boots a Debian
// kernel with the GPU test guest (vm/gpu-guest.ts) on `-device vhost-user-gpu-pci` served by
// our back end, and this prints, with times, every vhost-user request QEMU sent, every
// virtio-gpu command the guest sent and what it got, and the guest's serial console.
// Without udmabuf (the host) the export step fails and is reported: the guest is served
// anyway. Usage: node dist/examples/vhost-user-gpu-boot.js [kernel, default 6.1] [timeout s]
// (kernel: `tiny` for the GPU guest kernel, vm/gpu-guest-kernel.ts, or a Debian kernel selector).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnixListener } from '../lib/ipc/unix-listener.js';
import { findQemu } from '../qemu-glue/qemu-binaries.js';
import { VhostUserBackend } from '../qemu-glue/vhost-user/backend.js';
import { requestName } from '../qemu-glue/vhost-user/protocol.js';
import { VhostUserGpuDevice } from '../qemu-glue/vhost-user-gpu/gpu-device.js';
import { Command, Response } from '../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { DRAW_REPORT, drawnPixel } from '../vm/gpu-guest.js';
import { gpuGuestBoot, vhostUserGpuQemuArgs } from '../vm/gpu-guest-boot.js';
import { readBacking } from '../qemu-glue/vhost-user-gpu/resources.js';
import type { VhostMemoryMap } from '../qemu-glue/vhost-user/memory-map.js';
import type { ScanoutBuffer } from '../qemu-glue/vhost-user-gpu/scanout-export.js';
import { mapShared, unmap } from '../lib/fd/mapping.js';
import { MAP_SHARED, PROT_READ } from '../lib/core/linux.js';

const name = (table: Record<string, number>, code: number): string => Object.entries(table).find(([, c]) => c === code)?.[0] ?? `0x${code.toString(16)}`;
const started = performance.now();
const log = (line: string): void => console.log(`[${((performance.now() - started) / 1000).toFixed(2).padStart(7)} s] ${line}`);

const boot = gpuGuestBoot(process.argv[2] ?? '6.1', { log });
log(`${boot.kernel.version} through ${boot.entry}`);
const timeoutS = Number(process.argv[3] ?? 300);
const qemu = findQemu('10.0');
const dir = mkdtempSync(join(tmpdir(), 'vhost-user-gpu-'));
const socketPath = join(dir, 'gpu.sock');
const listener = UnixListener.listen(socketPath);

const args = [...qemu.extraArgs, ...vhostUserGpuQemuArgs({ socketPath, image: boot.image, initramfs: boot.initramfs, cmdline: boot.cmdline })];
log(`${qemu.binary} ${args.join(' ')}`);
const child = spawn(qemu.binary, args, { env: { ...process.env, ...qemu.env }, stdio: ['ignore', 'pipe', 'pipe'] });
let firstCreate: number | null = null;
let matched = false;
/** Set once the back end serves: checks the picture after the guest's report. */
let checkWhenReported = (): void => {};
let report: string | null = null;
const lines = (stream: NodeJS.ReadableStream, prefix: string): void => {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
      const line = buffered.slice(0, at).replace(/\r$/, '');
      buffered = buffered.slice(at + 1);
      if (DRAW_REPORT.test(line)) {
        // draw-fb wrote every pixel before it printed: they are in the backing now.
        report = line;
        checkWhenReported();
      }
      log(`${prefix} ${line}`);
    }
  });
};
lines(child.stdout!, 'guest |');
lines(child.stderr!, 'qemu  |');
const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
const timer = setTimeout(() => {
  log(`timeout after ${timeoutS} s: killing QEMU`);
  child.kill('SIGKILL');
}, timeoutS * 1000);

const socket = await Promise.race([listener.accept(), exited.then(() => null)]);
listener.close();
if (socket) {
  const counts = new Map<string, number>();
  let backend: VhostUserBackend | null = null;
  // When the guest reports its picture, it is checked in the guest's own backing pages, read
  // through our mapping of guest RAM (the pages a dma-buf export hands out).
  let shown: ScanoutBuffer | null = null;
  const device: VhostUserGpuDevice = new VhostUserGpuDevice({
    onScanout: (_id, buffer) => (shown = buffer),
    onWarning: (e) => log(`warning | ${e.code}: ${e.message}`),
    onCommand: (type, response) => {
      const key = `${name(Command, type)} → ${name(Response, response)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (type === Command.RESOURCE_CREATE_2D && firstCreate === null) firstCreate = performance.now() - started;
      if ((counts.get(key) ?? 0) <= 3) log(`gpu   | ${key}`);
    },
  });
  checkWhenReported = () => {
    if (!matched && backend?.memory) matched = checkPicture(device, backend.memory);
    if (shown) log(`check | the scanout's exported buffer: ${checkBuffer(shown)}`);
  };
  backend = new VhostUserBackend(socket, device, {
    onWarning: (e) => log(`warning | ${e.code}: ${e.message}`),
    onRequest: (request, flags, size, fds) => log(`vhost | ${requestName(request)} flags 0x${flags.toString(16)} size ${size}${fds ? ` fds ${fds}` : ''}`),
  });
  const code = await exited;
  clearTimeout(timer);
  await backend.close();
  log(`QEMU exited with ${code}`);
  for (const [key, count] of counts) log(`gpu   | ${count} × ${key}`);
} else {
  clearTimeout(timer);
  log(`QEMU exited with ${await exited} before connecting`);
}
log(`picture in the guest's backing equals draw-fb's: ${matched}`);
log(`first RESOURCE_CREATE_2D: ${firstCreate === null ? 'none' : `${(firstCreate / 1000).toFixed(1)} s`}; the guest's report: ${report ?? 'none'}`);
rmSync(dir, { recursive: true, force: true });

/** True when every resource-with-backing pixel equals draw-fb's picture (logs the count otherwise). */
function checkPicture(device: VhostUserGpuDevice, memory: VhostMemoryMap): boolean {
  for (const resource of device.resources.values()) {
    if (!resource.backing) continue;
    const bytes = readBacking(memory, resource.backing, 0, resource.stride * resource.height);
    if (!bytes) continue;
    const view = new DataView(bytes.buffer);
    let wrong = 0;
    for (let y = 0; y < resource.height; y++) {
      for (let x = 0; x < resource.width; x++) if (((view.getUint32(y * resource.stride + 4 * x, true) | 0xff000000) >>> 0) !== drawnPixel(x, y)) wrong++;
    }
    log(`check | resource ${resource.id} ${resource.width}×${resource.height}: ${wrong} of ${resource.width * resource.height} pixels differ from draw-fb's picture`);
    if (wrong === 0) return true;
  }
  return false;
}

/** The exported buffer's pixels (the dma-buf, mapped) against draw-fb's picture. */
function checkBuffer(buffer: ScanoutBuffer): string {
  let view: Uint8Array;
  try {
    view = mapShared(buffer.fd, buffer.offset + buffer.stride * buffer.height, PROT_READ, MAP_SHARED);
  } catch (err) {
    return `cannot map it: ${(err as Error).message}`;
  }
  try {
    const data = new DataView(view.buffer, view.byteOffset + buffer.offset);
    let wrong = 0;
    for (let y = 0; y < buffer.height; y++) {
      for (let x = 0; x < buffer.width; x++) if (((data.getUint32(y * buffer.stride + 4 * x, true) | 0xff000000) >>> 0) !== drawnPixel(x, y)) wrong++;
    }
    return `${buffer.width}×${buffer.height} stride ${buffer.stride}: ${wrong} of ${buffer.width * buffer.height} pixels differ from draw-fb's picture`;
  } finally {
    unmap(view);
  }
}
