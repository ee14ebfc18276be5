#!/usr/bin/env node
// guest-dmabuf-vhost-user-gpu: the vhost-user-gpu back end as a program QEMU or libvirt can run,
// following QEMU's back-end program conventions (docs/interop/vhost-user.rst, "Backend program
// conventions"): --socket-path or --fd, --print-capabilities, no daemonizing, logs on stderr,
// a quick clean exit on SIGTERM, and a non-zero exit at once when asked for what we cannot do
// (--virgl, --render-node: this is a 2D back end).
import { parseArgs } from 'node:util';
import { GuestDmabufError } from '../lib/core/errors.js';
import { fourccCode } from '../lib/formats/drm.js';
import { VhostUserGpuBackend, type GpuStats } from './vhost-user-gpu/gpu-backend.js';
import { gpuCapabilities } from './vhost-user-gpu/description.js';

const NAME = 'guest-dmabuf-vhost-user-gpu';

const HELP = `Usage: ${NAME} (--socket-path=PATH | --fd=FDNUM) [--copy-on-transfer] [--verbose]
       ${NAME} --print-capabilities

A vhost-user-gpu back end (virtio-gpu 2D) for QEMU's -device vhost-user-gpu-pci: scanouts
reach QEMU's display as dma-bufs of the guest's own pages (udmabuf), without copies. Guest
RAM must be shareable: -object memory-backend-memfd,id=mem,size=…,share=on
-machine memory-backend=mem.

Options:
  --socket-path=PATH    listen on PATH (a stale socket file there is replaced) and serve the
                        QEMU that connects with -chardev socket,id=ID,path=PATH; one QEMU at
                        a time, and after it disconnects the next (a restarted QEMU) is served
  --fd=FDNUM            serve the connected vhost-user socket inherited as FDNUM (libvirt
                        passes one end of a socketpair); exit when it closes
  --print-capabilities  print the back end's capabilities as JSON (vhost-user.json's
                        VHostUserBackendCapabilities) and exit
  --copy-on-transfer    show a copy made at each TRANSFER_TO_HOST_2D instead of the guest's
                        pages (no tearing, one copy per transfer)
  --udmabuf=PATH        the udmabuf device (default $GUEST_DMABUF_DEVICE or /dev/udmabuf)
  --verbose             also log every vhost-user request, virtio-gpu command and flush
  -h, --help            this text

Logs go to stderr. SIGTERM or SIGINT disconnects QEMU, removes the socket file and exits 0.
SIGUSR1 logs what the device has done for the current front end (commands, flushes, exports,
bytes copied, waits for free); a disconnect logs the same for the front end that left.

Exit status: 0 after a clean end, 1 when serving failed (the socket path is taken, the fd
is not a connected socket, ...), 64 on bad usage or an unsupported option (--virgl,
--render-node: this back end has no 3D and no render node).
`;

const log = (line: string): void => void process.stderr.write(`${NAME}: ${line}\n`);

async function main(argv: string[]): Promise<number> {
  // The convention: with --print-capabilities every other option and argument is ignored.
  if (argv.includes('--print-capabilities')) {
    process.stdout.write(`${JSON.stringify(gpuCapabilities(), null, 2)}\n`);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        'socket-path': { type: 'string' },
        fd: { type: 'string' },
        'copy-on-transfer': { type: 'boolean' },
        udmabuf: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        // Known so that they get their own message rather than "unknown option".
        virgl: { type: 'boolean' },
        'render-node': { type: 'string' },
      },
    });
  } catch (err) {
    console.error(`${NAME}: ${(err as Error).message}\n\n${HELP}`);
    return 64;
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.virgl || values['render-node'] !== undefined) {
    console.error(`${NAME}: ${values.virgl ? '--virgl' : '--render-node'} is not supported: this back end is virtio-gpu 2D only (no virgl, no render node); remove the option, or for libvirt drop <acceleration accel3d='yes'/> and rendernode from the <video> device`);
    return 64;
  }
  const path = values['socket-path'];
  const fdText = values.fd;
  if ((path === undefined) === (fdText === undefined)) {
    console.error(`${NAME}: give exactly one of --socket-path=PATH and --fd=FDNUM\n\n${HELP}`);
    return 64;
  }
  if (path === '') {
    console.error(`${NAME}: --socket-path needs a path`);
    return 64;
  }
  const fd = fdText === undefined ? undefined : Number(fdText);
  if (fd !== undefined && (!/^\d+$/.test(fdText!) || !Number.isSafeInteger(fd))) {
    console.error(`${NAME}: --fd must be a file descriptor number, not "${fdText}"`);
    return 64;
  }
  const mode = values['copy-on-transfer'] ? 'copy-on-transfer' : 'zero-copy';
  const options = { mode, ...(values.udmabuf === undefined ? {} : { udmabufPath: values.udmabuf }) } as const;

  let gpu: VhostUserGpuBackend;
  try {
    gpu = path !== undefined ? await VhostUserGpuBackend.listen(path, options) : await VhostUserGpuBackend.fromFd(fd!, options);
  } catch (err) {
    log(err instanceof GuestDmabufError ? `${err.message} (${err.code})` : String(err));
    return 1;
  }
  follow(gpu, values.verbose === true);
  const stop = (signal: NodeJS.Signals): void => {
    log(`${signal}: disconnecting and exiting`);
    void gpu.close();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.on('SIGUSR1', () => {
    const stats = gpu.stats;
    log(stats ? `stats: ${formatStats(stats)}` : 'stats: no front end connected');
  });
  log(path !== undefined ? `listening on ${path} (${mode}); start QEMU with -chardev socket,id=vgpu,path=${path} -device vhost-user-gpu-pci,chardev=vgpu` : `serving fd ${fd} (${mode})`);
  await gpu.done;
  return 0;
}

/** `commands=… flushes=… …`: every counter, for people and for bench/gpu.ts to read. */
function formatStats(stats: GpuStats): string {
  return Object.entries(stats).map(([name, value]) => `${name}=${value}`).join(' ');
}

/** Logs what is served: connections, scanouts, refusals and warnings (and with verbose, every request and flush). */
function follow(gpu: VhostUserGpuBackend, verbose: boolean): void {
  gpu.on('connect', ({ connection, peer }) => log(`front end ${connection} connected (pid ${peer.pid}, uid ${peer.uid})`));
  gpu.on('disconnect', ({ connection, requests, stats }) => log(`front end ${connection} disconnected after ${requests} requests (${formatStats(stats)}); the device was reset${gpu.socketPath ? `, waiting for the next on ${gpu.socketPath}` : ''}`));
  gpu.on('rejected', ({ error }) => log(error.message));
  gpu.on('warning', (error) => log(`warning: ${error.message} (${error.code})`));
  gpu.on('scanout', ({ scanoutId, surface, resourceId }) => {
    if (!surface) log(`scanout ${scanoutId}: disabled`);
    else log(`scanout ${scanoutId}: resource ${resourceId}, ${surface.width}×${surface.height} ${fourccCode(surface.fourcc)} stride ${surface.planes[0].stride}, dma-buf of ${surface.dmabuf.size} bytes`);
  });
  if (verbose) {
    gpu.on('request', ({ connection, name, size, fds }) => log(`front end ${connection}: ${name}, ${size} bytes${fds ? `, ${fds} fds` : ''}`));
    gpu.on('command', ({ connection, name, responseName }) => log(`front end ${connection}: virtio-gpu ${name} → ${responseName}`));
    gpu.on('flush', ({ scanoutId, rect }) => log(`scanout ${scanoutId}: flush ${rect.width}×${rect.height}+${rect.x}+${rect.y}`));
  }
  gpu.on('close', () => log('closed'));
}

process.exitCode = await main(process.argv.slice(2));
