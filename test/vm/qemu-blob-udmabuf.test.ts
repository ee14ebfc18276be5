// QEMU's own in-process virtio-gpu with blob resources over /dev/udmabuf, nested in the test VM:
// QEMU 10.0 (TCG, -display none, memfd RAM) with `-device virtio-gpu-pci,blob=true` boots the
// GPU test guest, whose draw-fb draws a known picture into its fbdev.
//
// Why the guest's framebuffer is a blob resource, read in the guest kernel's source (Debian's
// linux-source-6.1, 6.1.192, the GPU guest kernel's): virtio_gpu_mode_dumb_create()
// (drivers/gpu/drm/virtio/virtgpu_gem.c:84-88) makes every dumb buffer
// `VIRTGPU_BLOB_MEM_GUEST` + `VIRTGPU_BLOB_FLAG_USE_SHAREABLE` when the device offers
// VIRTIO_GPU_F_RESOURCE_BLOB (virtgpu_kms.c:173-174) and there is no virgl; fbdev's buffer is a
// dumb buffer (virtgpu_drv.c:105 drm_fbdev_generic_setup → drm_client_framebuffer_create), so
// fbcon alone sends RESOURCE_CREATE_BLOB at boot, and the plane update then sends
// SET_SCANOUT_BLOB for it (virtgpu_plane.c:229). QEMU 10.0 wraps a blob's guest pages with one
// UDMABUF_CREATE_LIST on /dev/udmabuf and mmaps that dma-buf: with a non-GL display that mapping
// is the console surface, so QMP's screendump reads the guest's pixels through the driver's mmap
// (udmabuf/CONSUMERS.md §1).
//
// Which driver QEMU gets is the kernel's: on 6.1 (no udmabuf in Debian's kernel) ours is
// /dev/udmabuf; on 6.12 the in-tree one is and ours sits beside it (GUEST_DMABUF_DEVICE), so there
// the same scenario shows the picture for comparison and that none of QEMU's buffers are ours.
// An LD_PRELOAD shim (fixtures/udmabuf-trace.c) records QEMU's udmabuf calls and their times.
// One QEMU, one nested boot (~40 s on the tiny kernel), shared by the tests in order; a test
// whose step before it failed fails too (never skipped).
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../lib/core/native.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { findQemu } from '../../qemu-glue/qemu-binaries.js';
import { QmpClient } from '../../qemu-glue/qmp/client.js';
import { gpuGuestBoot, gpuGuestQemuArgs, TINY, type GpuGuestBoot } from '../../vm/gpu-guest-boot.js';
import { DRAW_REPORT, drawnPixel, type Picture } from '../../vm/gpu-guest.js';
import { devicesUnderTest, type DeviceUnderTest } from './helpers/devices.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { NestedQemu } from './helpers/nested-qemu.js';
import { decodePng, type Image } from '../../lib/formats/png.js';
import * as raw from './helpers/raw.js';
import { buildUdmabufTrace, median, micros, parseUdmabufTrace, type TracedCreate, type UdmabufTrace } from './helpers/udmabuf-trace.js';

/** To the guest's prompt: a tiny-kernel boot reaches init in ~20 s nested; slack for a loaded machine. */
const BOOT_MS = 240_000;
/** How long after draw-fb's report fbdev's deferred copy into the blob may take to land. */
const SETTLE_MS = 30_000;
const PICTURE: Picture = 'gradient-xor';
const WIDTH = 1280;
const HEIGHT = 800;
/** fbdev's 1280×800 XRGB8888 dumb buffer: 4,096,000 bytes, 1000 pages. */
const FB_BYTES = WIDTH * HEIGHT * 4;
const UDMABUF_FLAGS_CLOEXEC = 1;
/** Creates of QEMU's framebuffer list per device, for the cost comparison. */
const REPLAYS = 20;

/** The driver behind /dev/udmabuf, which QEMU opens by that name (ui/udmabuf.c). */
interface QemuDriver {
  device: DeviceUnderTest;
  /** Its dma-bufs' exp_name in fdinfo. */
  exporter: 'guest_udmabuf' | 'udmabuf';
}

function qemuDriver(): QemuDriver {
  const devices = devicesUnderTest();
  const ours = devices[0]!;
  if (ours.path === '/dev/udmabuf') return { device: ours, exporter: 'guest_udmabuf' };
  const inTree = devices.find((d) => d.label === 'in-tree');
  if (!inTree) throw new Error(`no /dev/udmabuf on ${release()} (ours is ${ours.path}): QEMU 10.0 refuses virtio-gpu-pci,blob=true without it`);
  return { device: inTree, exporter: 'udmabuf' };
}

let boot: GpuGuestBoot;
let driver: QemuDriver;
let dir: string;
let traceLog: string;
let shim: string;
let qemu: NestedQemu | null = null;
let qmp: QmpClient | null = null;
let qmpSocket: UnixSocket | null = null;
let baseline: number[] = [];
let shown = false;
let listed = false;

test.before(() => {
  // Built on the host beforehand (test/run-suites.ts, or `node dist/vm/gpu-guest-cli.js tiny`):
  // the cache is read-only here.
  boot = gpuGuestBoot(TINY, { build: false });
  driver = qemuDriver();
  dir = mkdtempSync(join(tmpdir(), 'qemu-blob-'));
  traceLog = join(dir, 'udmabuf-trace.log');
  shim = buildUdmabufTrace(dir);
  baseline = ourBuffers().map((b) => b.ino);
});

test.after.always(async () => {
  qmp?.close();
  qmpSocket?.close();
  await qemu?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What an fd of QEMU's is (readlink of /proc/PID/fd/N), by fd number. */
function qemuFds(pid: number): Map<number, string> {
  const fds = new Map<number, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds.set(Number(fd), readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed while listing
    }
  }
  return fds;
}

interface QemuDmaBuf {
  fd: number;
  ino: number;
  size: number;
  exporter: string;
}

/** QEMU's dma-buf fds, with what fdinfo says of them. */
function qemuDmaBufs(pid: number): QemuDmaBuf[] {
  return [...qemuFds(pid)].filter(([, link]) => link.startsWith('/dmabuf:') || link === 'anon_inode:dmabuf').map(([fd]) => {
    const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    return {
      fd,
      ino: Number(statSync(`/proc/${pid}/fd/${fd}`).ino),
      size: Number(/^size:\s+(\d+)/m.exec(info)?.[1] ?? NaN),
      exporter: /^exp_name:\s+(\S+)/m.exec(info)?.[1] ?? '?',
    };
  });
}

interface PictureCheck {
  differing: number;
  first: { x: number; y: number; got: string; want: string } | null;
}

const hex = (rgb: number): string => `#${rgb.toString(16).padStart(6, '0')}`;

function comparePicture(image: Image, picture: Picture): PictureCheck {
  let differing = 0;
  let first: PictureCheck['first'] = null;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const at = (y * image.width + x) * 4;
      const got = (image.rgba[at]! << 16) | (image.rgba[at + 1]! << 8) | image.rgba[at + 2]!;
      const want = drawnPixel(x, y, picture) & 0xffffff;
      if (got !== want) {
        differing++;
        first ??= { x, y, got: hex(got), want: hex(want) };
      }
    }
  }
  return { differing, first };
}

/**
 * QEMU's screendump until it shows `picture`: draw-fb writes fbdev's shadow buffer and a guest
 * worker copies it into the blob afterwards (scanout-pixels.ts says more), so the first dump
 * can precede the copy. A wrong buffer never settles and fails.
 */
async function settledScreendump(client: QmpClient, picture: Picture): Promise<{ image: Image; check: PictureCheck; dumps: number }> {
  const file = join(dir, 'screen.png');
  const deadline = performance.now() + SETTLE_MS;
  for (let dumps = 1; ; dumps++) {
    await client.execute('screendump', { filename: file, format: 'png' }, { timeoutMs: 60_000 });
    const image = decodePng(readFileSync(file));
    const check = image.width === WIDTH && image.height === HEIGHT ? comparePicture(image, picture) : { differing: -1, first: null };
    if (check.differing === 0 || performance.now() > deadline) return { image, check, dumps };
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function trace(): UdmabufTrace {
  return parseUdmabufTrace(readFileSync(traceLog, 'utf8'));
}

const describe = (c: TracedCreate): string => {
  const sizes = c.items.map((i) => Number(i.size));
  return `${c.kind === 'create_list' ? 'CREATE_LIST' : 'CREATE'} flags=${c.flags} items=${c.items.length} (sizes ${Math.min(...sizes)}..${Math.max(...sizes)} B) ${c.bytes} B → ${c.ret}, ${micros(c.ns)}`;
};

interface ReplayTimes {
  /** The CREATE_LIST ioctl. */
  create: number[];
  /** mmap PROT_READ, MAP_SHARED of the whole buffer, as QEMU maps it. */
  map: number[];
  /** A read of one byte per page through that mapping: what the console's first full read adds. */
  touch: number[];
}

const elapsed = (start: bigint): number => Number(process.hrtime.bigint() - start);

/**
 * QEMU's exact list against `device`'s driver, REPLAYS times, on a fresh fd of QEMU's RAM memfd,
 * each buffer then mapped and read as QEMU's console does: the same request's cost per driver.
 */
function replay(device: DeviceUnderTest, memfdPath: string, list: TracedCreate): ReplayTimes {
  const memfd = raw.openDevice(memfdPath);
  const dev = raw.openDevice(device.path);
  const times: ReplayTimes = { create: [], map: [], touch: [] };
  try {
    const items = list.items.map((i) => ({ memfd, offset: i.offset, size: i.size }));
    for (let i = 0; i < REPLAYS; i++) {
      let start = process.hrtime.bigint();
      const buf = raw.createList(dev, items, list.flags);
      times.create.push(elapsed(start));
      try {
        start = process.hrtime.bigint();
        const view = raw.mapShared(buf, Number(list.bytes), false);
        times.map.push(elapsed(start));
        try {
          start = process.hrtime.bigint();
          let sum = 0;
          for (let at = 0; at < view.length; at += raw.PAGE) sum += view[at]!;
          times.touch.push(elapsed(start));
          if (sum < 0) throw new Error('unreachable: keeps the reads');
        } finally {
          raw.unmapView(view);
        }
      } finally {
        native.close(buf);
      }
    }
    return times;
  } finally {
    native.close(dev);
    native.close(memfd);
  }
}

test.serial('QEMU 10.0 realizes virtio-gpu-pci,blob=true on /dev/udmabuf, and its screendump of the guest\'s blob framebuffer is the picture, all 1,024,000 pixels', async (t) => {
  const binary = findQemu('10.0');
  const [mine, theirs] = UnixSocket.pair();
  qmpSocket = mine;
  t.log(`kernel ${release()}: /dev/udmabuf is the ${driver.device.label} driver (${driver.exporter}); ours is ${process.env.GUEST_DMABUF_DEVICE}`);
  try {
    qemu = new NestedQemu({
      binary: binary.binary,
      args: [
        ...binary.extraArgs,
        ...gpuGuestQemuArgs([
          '-device', 'virtio-gpu-pci,blob=true',
          // QMP on a socketpair QEMU inherits at fd 3: no path to wait for.
          '-chardev', 'socket,id=qmp,fd=3', '-mon', 'chardev=qmp,mode=control',
        ], { image: boot.image, initramfs: boot.initramfs, cmdline: [...boot.cmdline, 'gpu_guest.ask=1'] }),
      ],
      env: { ...binary.env, LD_PRELOAD: shim, UDMABUF_TRACE_LOG: traceLog },
      fds: [theirs.fd],
      log: (l) => t.log(l),
    });
  } finally {
    theirs.close();
  }
  qmp = await QmpClient.connect(mine, { timeoutMs: 120_000 }).catch((err: unknown) => {
    throw new Error(`QEMU did not answer QMP (it refuses blob=true without a usable /dev/udmabuf): ${qemu!.lines.join(' | ')}`, { cause: err });
  });
  qmpSocket = null; // the client owns it now
  // ui/udmabuf.c opens /dev/udmabuf once, at realize, and keeps it.
  t.true([...qemuFds(qemu.pid).values()].includes('/dev/udmabuf'), 'QEMU holds /dev/udmabuf open');

  await qemu.waitFor(/^gpu-guest: picture\?/, BOOT_MS);
  const asked = qemu.seconds;
  qemu.send(PICTURE);
  const report = await qemu.waitFor(DRAW_REPORT, 120_000);
  t.log(`prompt at ${asked.toFixed(1)} s, drawn at ${qemu.seconds.toFixed(1)} s after QEMU started`);
  t.deepEqual(report.slice(1, 6), [`${WIDTH}`, `${HEIGHT}`, `${WIDTH * 4}`, 'xrgb8888', PICTURE], 'draw-fb drew the picture asked for');

  // The guest took the blob feature QEMU offered.
  const virtio = await qmp.execute<{ path: string; name: string }[]>('x-query-virtio');
  const gpu = virtio.find((d) => d.name === 'virtio-gpu');
  if (!gpu) return t.fail(`no virtio-gpu in x-query-virtio: ${JSON.stringify(virtio)}`);
  const status = await qmp.execute<{ 'guest-features': unknown }>('x-query-virtio-status', { path: gpu.path });
  t.regex(JSON.stringify(status['guest-features']), /VIRTIO_GPU_F_RESOURCE_BLOB/, 'the guest negotiated RESOURCE_BLOB');

  const { image, check, dumps } = await settledScreendump(qmp, PICTURE);
  t.log(`${dumps} screendump(s) until the console surface held the picture`);
  t.deepEqual([image.width, image.height], [WIDTH, HEIGHT], 'the screendump is the guest\'s mode');
  t.is(check.differing, 0, `first differing pixel: ${JSON.stringify(check.first)}`);
  shown = check.differing === 0;
});

test.serial('while the guest runs, the framebuffer blob is one CREATE_LIST on /dev/udmabuf\'s driver; on ours its debugfs lists QEMU\'s buffers with their extents', async (t) => {
  if (!qemu || !shown) return t.fail('the guest\'s picture was not shown');
  const pid = qemu.pid;
  // Everything read and logged first: a failed assertion ends the test.
  const { creates, mmaps } = trace();
  const bufs = qemuDmaBufs(pid);
  const qemus = ourBuffers().filter((b) => b.creatorPid === pid);
  for (const c of creates) t.log(`QEMU: ${describe(c)}`);
  for (const m of mmaps) t.log(`QEMU: mmap of dma-buf fd ${m.fd}, ${m.len} B, prot ${m.prot} → ${m.ret}, ${micros(m.ns)}`);
  t.log(`QEMU's dma-bufs: ${bufs.map((b) => `fd ${b.fd} ino ${b.ino} ${b.size} B ${b.exporter}`).join('; ')}`);
  for (const b of qemus) t.log(`our debugfs: ino ${b.ino}, ${b.pages} pages, creator ${b.creatorPid}, charged uid ${b.chargedUid} (${b.chargedPages} pages), ${b.extents} extent(s)`);

  t.true(creates.length >= 1, 'QEMU created at least one udmabuf');
  t.deepEqual(creates.filter((c) => c.kind === 'create'), [], 'QEMU never uses the single-range CREATE');
  t.deepEqual(creates.filter((c) => c.ret < 0).map(describe), [], 'every create succeeded');
  t.true(creates.every((c) => c.flags === UDMABUF_FLAGS_CLOEXEC), 'flags: UDMABUF_FLAGS_CLOEXEC');
  t.true(creates.every((c) => c.bytes === c.items.reduce((s, i) => s + i.size, 0n)), 'a list\'s bytes are its items\' sum');
  const fb = creates.find((c) => c.bytes === BigInt(FB_BYTES));
  t.truthy(fb, `one create is fbdev's ${WIDTH}×${HEIGHT} framebuffer (${FB_BYTES} B)`);
  // virtio-gpu-udmabuf.c maps each new buffer PROT_READ, MAP_SHARED, for the console surface.
  t.deepEqual(mmaps.map((m) => [m.len, m.prot, m.ret]), creates.map((c) => [Number(c.bytes), 1, 0]), 'each buffer mapped once, read-only, at its size');

  t.is(bufs.length, creates.length, 'QEMU holds one dma-buf fd per create');
  t.deepEqual([...new Set(bufs.map((b) => b.exporter))], [driver.exporter], `exported by ${driver.exporter}`);
  t.true(bufs.some((b) => b.size === FB_BYTES), 'one is the framebuffer');

  if (driver.device.label === 'ours') {
    t.deepEqual(qemus.map((b) => b.ino).sort(), bufs.map((b) => b.ino).sort(), 'our debugfs lists exactly QEMU\'s dma-bufs, created by QEMU\'s pid');
    t.true(qemus.some((b) => b.pages === FB_BYTES / raw.PAGE && b.extents >= 1), 'the framebuffer: 1000 pages in at least one extent');
  } else {
    t.deepEqual(qemus, [], 'our debugfs lists none of QEMU\'s buffers: QEMU uses the in-tree driver');
  }

  // QEMU's framebuffer list, created again against each driver here on a fresh fd of QEMU's RAM:
  // both accept it; the same request's cost side by side on one kernel.
  const ram = [...qemuFds(pid)].find(([, link]) => link.startsWith('/memfd:memory-backend-memfd'));
  if (!ram || !fb) return t.fail(`no RAM memfd in QEMU's fds or no framebuffer create`);
  for (const device of devicesUnderTest()) {
    const times = replay(device, `/proc/${pid}/fd/${ram[0]}`, fb);
    const figures = (Object.keys(times) as (keyof ReplayTimes)[]).map((k) => `${k} median ${micros(median(times[k]))} (min ${micros(Math.min(...times[k]))})`);
    t.log(`QEMU's framebuffer list (${fb.items.length} items, ${fb.bytes} B) on ${device.label} (${device.path}) ×${REPLAYS}: ${figures.join(', ')}`);
    t.is(times.touch.length, REPLAYS);
  }
  listed = true;
});

test.serial('the guest powers off: QEMU exits 0, and our driver lists none of its buffers', async (t) => {
  if (!qemu || !listed) return t.fail('the step before did not finish');
  await qemu.waitFor(/^gpu-guest: next\?/, 60_000);
  qemu.send('reboot'); // -no-reboot: QEMU exits
  t.is(await qemu.exited, 0, 'QEMU exited on the guest\'s reboot');
  const pid = qemu.pid;
  await qemu.kill(); // closes the pipes
  t.deepEqual(ourBuffers().filter((b) => b.creatorPid === pid), [], 'none of QEMU\'s buffers is left');
  t.deepEqual(ourBuffers().map((b) => b.ino), baseline, 'our debugfs list is back where it was');
  const { creates } = trace();
  t.log(`summary on ${release()} (${driver.exporter}): ${creates.length} CREATE_LIST, 0 CREATE; items per list ${creates.map((c) => c.items.length).join(', ')}; ioctl ${creates.map((c) => micros(c.ns)).join(', ')}`);
});
