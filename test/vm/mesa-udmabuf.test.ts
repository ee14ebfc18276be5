// Mesa 25 (bookworm-backports) as a real consumer of /dev/udmabuf: lavapipe, Mesa's Vulkan
// driver on llvmpipe, exports an image's memory as a dma-buf (VK_EXT_external_memory_dma_buf),
// and on a machine without a GPU it makes that dma-buf with UDMABUF_CREATE on /dev/udmabuf
// (llvmpipe_allocate_memory_fd; udmabuf/CONSUMERS.md §3). It offers the export only when
// /dev/udmabuf opened: on Debian 12's 6.1, which has no udmabuf, that is our driver or nothing.
//
// fixtures/lavapipe-dmabuf.c draws with lavapipe (a clear and a buffer-to-image copy: Mesa's
// code writes the pixels) and sends the exported fd here over a Unix socket; this process is the
// importer. Which driver Mesa gets is the kernel's: ours on 6.1 (GUEST_DMABUF_DEVICE is
// /dev/udmabuf), the in-tree one on 6.12, where ours sits beside it under another name and the
// same scenario runs for comparison. The LD_PRELOAD shim (fixtures/udmabuf-trace.c) records what
// Mesa passes: memfd flags, seals, the create's flags and sizes.
import test from 'ava';
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { unmap } from '../../lib/fd/mapping.js';
import { UnixListener } from '../../lib/ipc/unix-listener.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { DmaBuf } from '../../lib/kernel/dma-buf.js';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, readParam, type DeviceUnderTest } from './helpers/devices.js';
import { inodeOf, isLive, ourBuffers } from './helpers/dmabuf-debugfs.js';
import { NOBODY } from './helpers/memlock.js';
import { buildUdmabufTrace, parseUdmabufTrace, type UdmabufTrace } from './helpers/udmabuf-trace.js';

const checkBaseline = baselineGuard(test);

/** lavapipe's ICD alone, so that its llvmpipe device is the only one. */
const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const PAGE = 4096;
const UDMABUF_FLAGS_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_SEAL_SHRINK = 2;
const VK_ERROR_OUT_OF_DEVICE_MEMORY = -2;
/** A lavapipe + TCG step (instance, draw, export) takes ~1–2 s; slack for a busy machine. */
const STEP_MS = 120_000;

/** The driver behind /dev/udmabuf, which Mesa opens by that name (lp_screen.c). */
interface MesaDriver {
  device: DeviceUnderTest;
  /** Its dma-bufs' exp_name in fdinfo. */
  exporter: 'guest_udmabuf' | 'udmabuf';
}

function mesaDriver(): MesaDriver {
  const devices = devicesUnderTest();
  const ours = devices[0]!;
  if (ours.path === '/dev/udmabuf') return { device: ours, exporter: 'guest_udmabuf' };
  const inTree = devices.find((d) => d.label === 'in-tree');
  if (!inTree) throw new Error(`no /dev/udmabuf on ${release()} (ours is ${ours.path}): Mesa would export nothing`);
  return { device: inTree, exporter: 'udmabuf' };
}

let driver: MesaDriver;
let dir: string;
let program: string;
let shim: string;
let traceLog: string;
let sessions = 0;

test.before(() => {
  driver = mesaDriver();
  dir = mkdtempSync(join(tmpdir(), 'mesa-udmabuf-'));
  // nobody runs the program and the shim, and appends to the trace log.
  chmodSync(dir, 0o755);
  program = join(dir, 'lavapipe-dmabuf');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', program, join(PROJECT_ROOT, 'test', 'vm', 'fixtures', 'lavapipe-dmabuf.c'), '-lvulkan'], { stdio: ['ignore', 'inherit', 'inherit'] });
  shim = buildUdmabufTrace(dir);
  traceLog = join(dir, 'trace.log');
});

test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Pixel (x, y) of pattern `seed`, as fixtures/lavapipe-dmabuf.c computes it (lavapipe_pixel). */
function patternPixel(x: number, y: number, seed: number): number {
  return (0xff000000 | (((x * 3 + seed) & 0xff) << 16) | (((y * 5 + seed) & 0xff) << 8) | ((x ^ y ^ seed) & 0xff)) >>> 0;
}

interface Exported {
  width: number;
  height: number;
  offset: number;
  stride: number;
  /** vkGetImageMemoryRequirements' size: what lavapipe asked llvmpipe for. */
  allocation: number;
  clear: number;
}

/** What the program lavapipe drew: magenta, and pattern 0 in the middle quarter. */
function drawnPixel(x: number, y: number, e: Exported): number {
  const [x0, y0, w, h] = [Math.floor(e.width / 4), Math.floor(e.height / 4), Math.floor(e.width / 2), Math.floor(e.height / 2)];
  return x >= x0 && x < x0 + w && y >= y0 && y < y0 + h ? patternPixel(x, y, 0) : e.clear;
}

/** Pixels of the image in `bytes` that differ from `want`, and the first of them. */
function differing(bytes: Uint8Array, e: Exported, want: (x: number, y: number) => number): { count: number; first: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let count = 0;
  let first = '';
  for (let y = 0; y < e.height; y++) {
    for (let x = 0; x < e.width; x++) {
      const got = view.getUint32(e.offset + y * e.stride + x * 4, true);
      if (got !== want(x, y)) {
        if (count++ === 0) first = `(${x}, ${y}) is ${got.toString(16)}, want ${want(x, y).toString(16)}`;
      }
    }
  }
  return { count, first };
}

const fields = (line: string): Map<string, string> => new Map(line.split(' ').slice(1).map((f) => f.split('=') as [string, string]));

interface RunAs {
  /** Run as this uid (and gid), with RLIMIT_MEMLOCK = memlockKiB; root when absent. */
  uid?: number;
  memlockKiB?: number;
}

/**
 * The program in export mode, connected to us. Lines come one per sendmsg from the program;
 * the stream may still join or split them, so they are buffered, and fds queued as they come.
 */
class LavapipeSession {
  readonly child: ChildProcess;
  readonly #listener: UnixListener;
  #socket: UnixSocket | null = null;
  #text = '';
  readonly #fds: number[] = [];
  #stderr = '';
  readonly exited: Promise<number | null>;

  constructor(width: number, height: number, as: RunAs) {
    const name = `\0mesa-udmabuf-${process.pid}-${sessions++}`;
    this.#listener = UnixListener.listen(name);
    writeFileSync(traceLog, '');
    chmodSync(traceLog, 0o666);
    const command = [program, 'export', `@${name.slice(1)}`, String(width), String(height)];
    const limit = as.memlockKiB === undefined ? '' : `ulimit -l ${as.memlockKiB} && `;
    // LD_PRELOAD is set for the program alone: the shim unsets it in whatever it loads into,
    // so given to sh it would never reach the program.
    this.child = spawn('sh', ['-c', `${limit}export LD_PRELOAD="$TRACE_SHIM" && exec "$@"`, 'sh', ...command], {
      uid: as.uid,
      gid: as.uid,
      stdio: ['ignore', 'inherit', 'pipe'],
      // The shader cache would go to $HOME, which nobody lacks and the VM's root cannot write.
      env: { ...process.env, VK_ICD_FILENAMES: LAVAPIPE_ICD, MESA_SHADER_CACHE_DISABLE: 'true', TRACE_SHIM: shim, UDMABUF_TRACE_LOG: traceLog },
    });
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.#stderr += text));
    this.exited = new Promise((resolve) => this.child.on('exit', resolve));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The next line from the program, with the fds that came with it. */
  async line(): Promise<{ line: string; fds: number[] }> {
    const signal = AbortSignal.timeout(STEP_MS);
    this.#socket ??= await this.#listener.accept({ signal });
    for (;;) {
      const end = this.#text.indexOf('\n');
      if (end >= 0) {
        const line = this.#text.slice(0, end);
        this.#text = this.#text.slice(end + 1);
        return { line, fds: this.#fds.splice(0) };
      }
      const message = await this.#socket.receive({ signal, maxFds: 4 });
      this.#fds.push(...message.fds);
      if (message.data.length === 0) throw new Error(`lavapipe-dmabuf closed its socket (exit ${await this.exited}): ${this.#stderr}`);
      this.#text += Buffer.from(message.data).toString('utf8');
    }
  }

  async command(text: string): Promise<string> {
    await this.#socket!.send(Buffer.from(`${text}\n`));
    return text === 'exit' ? '' : (await this.line()).line;
  }

  /** Ends the program (if still running) and closes our ends; returns its exit status. */
  async close(): Promise<number | null> {
    if (this.child.exitCode === null && this.#socket) await this.command('exit').catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const status = await Promise.race([this.exited, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STEP_MS)))]);
    clearTimeout(timer); // else it holds the test worker's event loop open for STEP_MS
    if (status === 'timeout') this.child.kill('SIGKILL');
    this.#socket?.close();
    this.#listener.close();
    for (const fd of this.#fds.splice(0)) DmaBuf.adopt(fd).close();
    return status === 'timeout' ? await this.exited : status;
  }
}

/** Starts an export; resolves with the session, what was exported and its dma-buf (or why not). */
async function exportImage(width: number, height: number, as: RunAs = {}): Promise<{ session: LavapipeSession; exported: Exported; dmabuf: DmaBuf } | { session: LavapipeSession; failure: string }> {
  const session = new LavapipeSession(width, height, as);
  const { line, fds } = await session.line();
  if (!line.startsWith('exported ')) {
    for (const fd of fds) DmaBuf.adopt(fd).close();
    return { session, failure: line };
  }
  if (fds.length !== 1) throw new Error(`"${line}" came with ${fds.length} fds`);
  const f = fields(line);
  const n = (key: string): number => Number(f.get(key));
  return { session, exported: { width: n('width'), height: n('height'), offset: n('offset'), stride: n('stride'), allocation: n('allocation'), clear: n('clear') }, dmabuf: DmaBuf.adopt(fds[0]!) };
}

const trace = (): UdmabufTrace => parseUdmabufTrace(readFileSync(traceLog, 'utf8'));
const pageRounded = (n: number): number => Math.ceil(n / PAGE) * PAGE;

function probe(uid?: number): Map<string, string> {
  const out = execFileSync(program, ['probe'], { uid, gid: uid, encoding: 'utf8', env: { ...process.env, VK_ICD_FILENAMES: LAVAPIPE_ICD, MESA_SHADER_CACHE_DISABLE: 'true' } });
  return fields(`probe ${out.trim()}`);
}

/** The device's mode, set to `mode` while `fn` runs (Mesa opens it as whoever runs Mesa). */
async function withDeviceMode<T>(mode: number, fn: () => Promise<T> | T): Promise<T> {
  const old = statSync(driver.device.path).mode & 0o7777;
  chmodSync(driver.device.path, mode);
  try {
    return await fn();
  } finally {
    chmodSync(driver.device.path, old);
  }
}

test.serial('lavapipe offers dma-buf export (EXPORTABLE, VK_EXT_image_drm_format_modifier) exactly when its user can open /dev/udmabuf', async (t) => {
  const root = probe();
  t.log(`root: ${[...root].map(([k, v]) => `${k}=${v}`).join(' ')}`);
  t.regex(root.get('device') ?? '', /^llvmpipe/);
  t.is(root.get('exportable'), '1', 'root opens /dev/udmabuf: a linear BGRA image is exportable as a dma-buf');
  t.is(root.get('drm_format_modifier'), '1');
  // devtmpfs makes the node 0600 root (no udev here; Debian's udev rule gives group kvm 0660):
  // nobody's Mesa silently loses export, keeping import (dma_buf=1 either way).
  const nobody = await withDeviceMode(0o600, () => probe(NOBODY));
  t.log(`nobody, ${driver.device.path} 0600: ${[...nobody].map(([k, v]) => `${k}=${v}`).join(' ')}`);
  t.is(nobody.get('dma_buf'), '1', 'import stays advertised');
  t.is(nobody.get('exportable'), '0');
  t.is(nobody.get('drm_format_modifier'), '0');
  const opened = await withDeviceMode(0o666, () => probe(NOBODY));
  t.is(opened.get('exportable'), '1', 'with the device opened to all, nobody exports too');
});

test.serial(`lavapipe's exported image is a dma-buf of /dev/udmabuf's driver: Mesa's pixels read through its mmap, ours written through it reach Mesa's mapping, and the buffer lives on after Mesa frees it and exits`, async (t) => {
  // Odd sizes: lavapipe's allocation is not a page multiple, so the page rounding shows.
  const started = await exportImage(333, 77);
  const { session } = started;
  try {
    if (!('dmabuf' in started)) return t.fail(`export failed: ${started.failure} ${session.stderr}`);
    const { exported, dmabuf } = started;
    const ino = inodeOf(dmabuf.fd);
    try {
      const info = dmabuf.info();
      t.log(`exported ${JSON.stringify(exported)}; fdinfo exp_name=${info.exporter} size=${info.size} count=${info.count}`);
      t.is(info.exporter, driver.exporter, `Mesa's dma-buf comes from ${driver.device.path}`);
      t.is(info.size, BigInt(pageRounded(exported.allocation)), 'the dma-buf is lavapipe\'s allocation rounded up to a page');
      t.true(exported.stride >= exported.width * 4);

      // What Mesa passed to udmabuf (lp_texture.c llvmpipe_allocate_memory_fd).
      const calls = trace();
      t.log(`memfds: ${JSON.stringify(calls.memfds)}; seals: ${JSON.stringify(calls.seals)}; creates: ${calls.creates.map((c) => `${c.kind} flags=${c.flags} items=${c.items.map((i) => `${i.offset}+${i.size}`).join(',')} ret=${c.ret} ${c.ns} ns`).join('; ')}`);
      // Besides the image's, lavapipe makes one 4096-byte export of its own while the device
      // is created (seen on both kernels): one memfd and one create per export, all alike.
      const lp = calls.memfds.filter((m) => m.name === 'lp_dma_buf');
      t.is(lp.length, 2, "one memfd for the device's own 4096-byte export, one for the image");
      t.true(lp.every((m) => m.flags === MFD_ALLOW_SEALING), 'MFD_ALLOW_SEALING without MFD_CLOEXEC: Mesa keeps the memfd open, inheritable, for the allocation\'s life');
      for (const m of lp) t.deepEqual(calls.seals.filter((seal) => seal.fd === m.ret).map((seal) => [seal.seals, seal.ret]), [[F_SEAL_SHRINK, 0]], 'only F_SEAL_SHRINK, the one seal udmabuf requires');
      t.deepEqual(calls.creates.map((c) => [c.kind, c.flags, c.ret >= 0]), [['create', UDMABUF_FLAGS_CLOEXEC, true], ['create', UDMABUF_FLAGS_CLOEXEC, true]], 'UDMABUF_CREATE (never CREATE_LIST), flags CLOEXEC');
      t.deepEqual(calls.creates.map((c) => c.items), [[{ offset: 0n, size: 4096n }], [{ offset: 0n, size: BigInt(pageRounded(exported.allocation)) }]], 'one item from offset 0, the size rounded up to a page');
      t.deepEqual(calls.mmaps, [], 'Mesa maps its memfd, never the dma-buf it exports');

      if (driver.exporter === 'guest_udmabuf') {
        const row = ourBuffers().find((b) => b.ino === ino);
        t.log(`our debugfs: ${JSON.stringify(row)}`);
        t.is(row?.creatorPid, session.child.pid, "our debugfs lists the buffer with Mesa's pid");
        t.is(row?.pages, pageRounded(exported.allocation) / PAGE);
        t.is(row?.chargedUid, -1, 'root has CAP_IPC_LOCK: nothing charged');
      } else {
        t.false(ourBuffers().some((b) => b.ino === ino), 'not ours: the in-tree driver made it');
      }

      // Mesa's pixels, through our importer's mapping of the dma-buf.
      let view = dmabuf.map({ write: true });
      try {
        const drawn = dmabuf.sync('read', () => differing(view, exported, (x, y) => drawnPixel(x, y, exported)));
        t.is(drawn.count, 0, `lavapipe's picture through the dma-buf: ${drawn.first}`);
        // Ours through the dma-buf, then read by Mesa through its own mapping (vkMapMemory):
        // one set of pages, no copy in either direction.
        dmabuf.sync('write', () => {
          const data = new DataView(view.buffer, view.byteOffset, view.byteLength);
          for (let y = 0; y < exported.height; y++) {
            for (let x = 0; x < exported.width; x++) data.setUint32(exported.offset + y * exported.stride + x * 4, patternPixel(x, y, 77), true);
          }
        });
      } finally {
        unmap(view);
      }
      t.is(await session.command('check 77'), 'checked differing=0', "Mesa's mapping shows what we wrote through the dma-buf");

      // Mesa frees the memory and exits; the importer's fd keeps the buffer (and its pages).
      t.is(await session.command('free'), 'freed');
      t.is(await session.close(), 0, session.stderr);
      t.true(isLive(ino), 'the dma-buf outlives vkFreeMemory and its creator');
      if (driver.exporter === 'guest_udmabuf') t.is(ourBuffers().find((b) => b.ino === ino)?.creatorPid, session.child.pid, "still listed, with the exited creator's pid");
      view = dmabuf.map();
      try {
        const kept = dmabuf.sync('read', () => differing(view, exported, (x, y) => patternPixel(x, y, 77)));
        t.is(kept.count, 0, `the pixels after Mesa exited: ${kept.first}`);
      } finally {
        unmap(view);
      }
    } finally {
      dmabuf.close();
    }
    t.false(isLive(ino), 'released with the last fd');
    t.false(ourBuffers().some((b) => b.ino === ino), 'and gone from our debugfs');
  } finally {
    await session.close();
  }
});

test.serial(`an export over the driver's size_limit_mb fails in vkAllocateMemory with VK_ERROR_OUT_OF_DEVICE_MEMORY (UDMABUF_CREATE: EINVAL)`, async (t) => {
  const limitMb = Number(readParam(driver.device, 'size_limit_mb'));
  // One row more than the limit holds at 4096 pixels × 4 bytes a row.
  const height = (limitMb * 1024 * 1024) / (4096 * 4) + 1;
  const started = await exportImage(4096, height);
  const { session } = started;
  try {
    t.false('dmabuf' in started, 'no dma-buf');
    const failure = 'failure' in started ? started.failure : '';
    t.log(`size_limit_mb=${limitMb}, 4096×${height}: ${failure}`);
    t.regex(failure, new RegExp(`^alloc-failed vk=${VK_ERROR_OUT_OF_DEVICE_MEMORY} `));
    const calls = trace();
    t.log(`creates: ${calls.creates.map((c) => `${c.kind} ${c.bytes} B → ${c.ret}`).join('; ')}`);
    t.deepEqual(calls.creates.map((c) => c.ret < 0 ? c.ret : 'fd'), ['fd', -22], "the device's own export, then the image's UDMABUF_CREATE, refused with EINVAL");
    // lavapipe's allocation (the failure line's size) is a little over the pixels' bytes.
    t.is(calls.creates[1]?.bytes, BigInt(pageRounded(Number(fields(failure).get('size')))), 'the image\'s whole allocation, page-rounded');
  } finally {
    t.is(await session.close(), 3, session.stderr);
  }
});

test.serial('a non-root Mesa user: what RLIMIT_MEMLOCK does to lavapipe exports (ours charges the pinned pages; the in-tree driver does not)', async (t) => {
  const limitKiB = 1024;
  await withDeviceMode(0o666, async () => {
    // 256×128 BGRA: 128 KiB, under the limit on any driver.
    const small = await exportImage(256, 128, { uid: NOBODY, memlockKiB: limitKiB });
    try {
      if (!('dmabuf' in small)) return t.fail(`small export as nobody failed: ${small.failure} ${small.session.stderr}`);
      const ino = inodeOf(small.dmabuf.fd);
      t.is(small.dmabuf.info().exporter, driver.exporter);
      if (driver.exporter === 'guest_udmabuf') {
        const row = ourBuffers().find((b) => b.ino === ino);
        t.log(`our debugfs, nobody's export: ${JSON.stringify(row)}`);
        t.is(row?.chargedUid, NOBODY, "charged to nobody's locked_vm");
        t.is(row?.chargedPages, 32);
      }
      small.dmabuf.close();
    } finally {
      t.is(await small.session.close(), 0, small.session.stderr);
    }

    // 1024×1024 BGRA: 4 MiB, over a 1 MiB RLIMIT_MEMLOCK.
    const big = await exportImage(1024, 1024, { uid: NOBODY, memlockKiB: limitKiB });
    try {
      const calls = trace();
      t.log(`nobody, RLIMIT_MEMLOCK ${limitKiB} KiB, 4 MiB export: ${'dmabuf' in big ? 'exported' : big.failure}; creates: ${calls.creates.map((c) => `${c.bytes} B → ${c.ret}`).join('; ')}`);
      if (driver.exporter === 'guest_udmabuf') {
        t.false('dmabuf' in big, 'our driver refuses what the limit does not cover');
        if (!('dmabuf' in big)) t.regex(big.failure, new RegExp(`^alloc-failed vk=${VK_ERROR_OUT_OF_DEVICE_MEMORY} `), 'Mesa says only VK_ERROR_OUT_OF_DEVICE_MEMORY');
        t.deepEqual(calls.creates.map((c) => c.ret < 0 ? c.ret : 'fd'), ['fd', -12], "the device's own 4 KiB export fits; the image's UDMABUF_CREATE: ENOMEM");
      } else {
        t.true('dmabuf' in big, 'the in-tree driver charges nobody: the export succeeds over the limit');
        t.deepEqual(calls.creates.map((c) => c.ret < 0 ? c.ret : 'fd'), ['fd', 'fd']);
      }
      if ('dmabuf' in big) big.dmabuf.close();
    } finally {
      t.is(await big.session.close(), driver.exporter === 'guest_udmabuf' ? 3 : 0, big.session.stderr);
    }
  });
});

checkBaseline();
