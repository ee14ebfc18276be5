// The vhost-user-gpu back end under a real QEMU on the host: QEMU 10.0 (TCG, -display none;
// 7.2 refuses vhost-user without KVM) boots Debian's 6.1 kernel with the GPU test guest
// (vm/gpu-guest.ts), which loads virtio-gpu and draws a known picture into /dev/fb0. The run is
// examples/vhost-user-gpu-boot.ts; there is no udmabuf on the host, so the export step fails
// (reported) and the check reads the picture from the guest's backing pages through our own
// mapping of guest RAM instead. The dma-buf end to end is the VM suite's.
// The second test runs the guest-dmabuf-vhost-user-gpu program itself as QEMU's back end
// (--socket-path), only until the guest's first scanout, then a second QEMU on the same path.
// Serial: two TCG boots at once would slow each other on a small host.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findQemu } from '../../qemu-glue/qemu-binaries.js';
import { GUEST_KERNEL_ARGS } from '../../vm/accel.js';
import { ensureGpuGuestInitramfs } from '../../vm/gpu-guest.js';
import { vhostUserGpuQemuArgs } from '../../vm/gpu-guest-boot.js';
import { resolveKernel } from '../../vm/kernels.js';
import { collect, exited } from './fixtures/support.js';

const example = fileURLToPath(new URL('../../examples/vhost-user-gpu-boot.js', import.meta.url));
const backendProgram = fileURLToPath(new URL('../../qemu-glue/vhost-user-gpu-cli.js', import.meta.url));

test.serial('QEMU 10.0 boots a Debian 6.1 guest on our back end: realize, DRIVER_OK, fbcon, and the guest\'s picture in its backing', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [example, '6.1', '240'], { maxBuffer: 64 << 20, timeout: 300_000 });
  const line = (pattern: RegExp): RegExpMatchArray | null => stdout.match(pattern);
  t.truthy(line(/vhost \| SET_MEM_TABLE \(5\)/), 'DRIVER_OK reached: the memory table came');
  t.truthy(line(/gpu {3}\| RESOURCE_CREATE_2D → OK_NODATA/), 'the guest created its framebuffer');
  t.truthy(line(/gpu {3}\| \d+ × RESOURCE_ATTACH_BACKING → OK_NODATA/));
  t.truthy(line(/gpu {3}\| \d+ × RESOURCE_FLUSH → OK_NODATA/));
  const problems = stdout.split('\n').filter((l) => /ERR_VIRTQUEUE_BROKEN|ERR_VHOST_USER/.test(l));
  t.deepEqual(problems, [], 'no queue broke, no request was refused');
  t.truthy(line(/draw-fb: drew 1280x800 stride 5120 format xrgb8888/), 'the guest drew and said so');
  t.truthy(line(/picture in the guest's backing equals draw-fb's: true/));
  t.truthy(line(/QEMU exited with 0/));
  const first = line(/first RESOURCE_CREATE_2D: ([\d.]+) s/);
  t.log(`first RESOURCE_CREATE_2D ${first?.[1]} s after start (TCG, Debian 6.1 ${line(/ through (pvh|bzimage)/)?.[1]})`);
});

/** Resolves with the text once `pattern` appears in it; rejects after `timeoutMs` or when `gone` settles first. */
function waitFor(text: () => string, pattern: RegExp, timeoutMs: number, gone: Promise<unknown>): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void gone.then(() => (ended = true));
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      const match = text().match(pattern);
      if (match) resolve(match);
      else if (ended || Date.now() > deadline) reject(new Error(`no ${pattern} (${ended ? 'the process ended' : `${timeoutMs} ms passed`}) in:\n${text().slice(-4000)}`));
      else setTimeout(poll, 50);
    };
    poll();
  });
}

test.serial('guest-dmabuf-vhost-user-gpu --socket-path as QEMU 10.0\'s back end: the guest\'s first scanout, then a second QEMU on the same path', async (t) => {
  const kernel = resolveKernel('6.1');
  const initramfs = ensureGpuGuestInitramfs(kernel);
  const qemu = findQemu('10.0');
  const dir = mkdtempSync(join(tmpdir(), 'vhost-user-gpu-bin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'gpu.sock');
  const backend = spawn(process.execPath, [backendProgram, `--socket-path=${socketPath}`, '--verbose'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = collect(backend.stderr);
  const backendEnd = exited(backend);
  t.teardown(() => void backend.kill('SIGKILL'));
  await waitFor(log, /listening on/, 20_000, backendEnd);

  const startQemu = (extra: string[]): { end: Promise<unknown>; output: () => string; kill: () => void } => {
    const args = [
      ...qemu.extraArgs,
      ...vhostUserGpuQemuArgs({ socketPath, image: kernel.image, initramfs, cmdline: [...GUEST_KERNEL_ARGS, ...(kernel.cmdline ?? [])] }),
      ...extra,
    ];
    const child = spawn(qemu.binary, args, { env: { ...process.env, ...qemu.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    const end = exited(child);
    t.teardown(() => void child.kill('SIGKILL'));
    return { end, output: () => `${out()}\n${err()}`, kill: () => void child.kill('SIGTERM') };
  };

  const started = performance.now();
  const first = startQemu([]);
  // The guest's first SET_SCANOUT: fbcon showing its framebuffer. On the host (no udmabuf)
  // the export fails and is reported; with udmabuf the scanout line names the dma-buf.
  await waitFor(log, /front end 1: virtio-gpu SET_SCANOUT → OK_NODATA/, 240_000, first.end);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  await waitFor(log, /scanout 0: resource \d+, \d+×\d+ XR24|cannot open udmabuf device/, 10_000, first.end);
  t.regex(log(), /front end 1 connected \(pid \d+/);
  t.regex(log(), /front end 1: virtio-gpu RESOURCE_CREATE_2D → OK_NODATA/);
  t.regex(log(), /front end 1: GPU_SET_SOCKET \(33\)/, 'DRIVER_OK: QEMU handed over its display socket');
  t.notRegex(log(), /ERR_VIRTQUEUE_BROKEN|ERR_VHOST_USER/);
  t.log(`first SET_SCANOUT ${seconds} s after QEMU started (TCG, Debian 6.1)`);
  first.kill();
  await first.end;
  await waitFor(log, /front end 1 disconnected after \d+ requests \(commands=\d+ [^)]*\); the device was reset, waiting for the next/, 20_000, backendEnd);

  // A second QEMU (a restart) on the same path is served by the same back end: realize, then stopped.
  const second = startQemu(['-S']);
  await waitFor(log, /front end 2: RESET_DEVICE/, 60_000, second.end);
  t.regex(log(), /front end 2 connected/);
  second.kill();
  await second.end;
  await waitFor(log, /front end 2 disconnected/, 20_000, backendEnd);

  backend.kill('SIGTERM');
  const { code } = await backendEnd;
  t.is(code, 0, log().slice(-2000));
});
