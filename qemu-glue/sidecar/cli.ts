// `guest-dmabuf sidecar`: the sidecar daemon. Attaches to QEMU over QMP (guest memory, for
// framebuffers described on the command line or by peers) and/or serves QEMU as its
// vhost-user-gpu back end (scanouts), and serves the surfaces to peers on --listen (the
// protocol in PROTOCOL.md). Logs on stderr; SIGTERM and SIGINT release everything and exit 0.
import { parseArgs } from 'node:util';
import { GuestDmabufError } from '../../lib/core/errors.js';
import type { FramebufferDescriptor } from '../../lib/guest/surface.js';
import { GuestMemorySession } from '../lifecycle.js';
import { QmpClient } from '../qmp/client.js';
import { VhostUserGpuBackend } from '../vhost-user-gpu/gpu-backend.js';
import { FramebufferSource, udmabufFramebufferExporter, type NamedFramebuffer } from './framebuffer-source.js';
import { VhostUserGpuSource } from './gpu-source.js';
import { SidecarServer, type SidecarServerOptions } from './server.js';
import type { SurfaceSource } from './source.js';

export const SIDECAR_HELP = `Usage: guest-dmabuf sidecar --listen PATH [--qmp PATH] [--vhost-user-gpu PATH]
                          [--framebuffer gpa=…,width=…,height=…,stride=…,format=…[,name=…]] …
                          [--allow-uid UID] … [--max-buffers N] [--max-pinned-mb N] [--udmabuf PATH]

Serves a running guest's surfaces as dma-bufs to local peers (Wayland proxies, screenshot
tools) over a unix socket: the protocol in qemu-glue/sidecar/PROTOCOL.md, or SidecarClient.

Options:
  --listen PATH          the socket peers connect to (a stale socket file there is replaced)
  --qmp PATH             attach to QEMU's QMP socket (-qmp unix:PATH,server=on,wait=off): guest
                         memory is discovered (QEMU's memfds: run as QEMU's user, or with
                         CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH), followed across resets and
                         hot-plugs; needed by --framebuffer and by peers' export-framebuffer
  --vhost-user-gpu PATH  be QEMU's vhost-user-gpu back end on PATH (-chardev socket,id=vgpu,
                         path=PATH -device vhost-user-gpu-pci,chardev=vgpu): each scanout is a
                         surface, its flushes are damage
  --framebuffer SPEC     serve a framebuffer in guest RAM (ramfb, VRAM under aux-ram-share):
                         gpa (0x hex or decimal), width, height, stride (bytes), format (DRM code
                         such as XR24, AR24, XB24, AB24, RG16), optional name; repeatable
  --allow-uid UID        also serve this uid (SO_PEERCRED); default only the sidecar's own
  --max-buffers N        buffers one peer may hold at once (default 16)
  --max-pinned-mb N      MiB of buffers one peer may hold at once (default 1024)
  --udmabuf PATH         the udmabuf device (default $GUEST_DMABUF_DEVICE or /dev/udmabuf)
  -h, --help             this text

Logs go to stderr: what it attached to, every surface, whom it serves, whom it refused or
dropped and why. SIGTERM or SIGINT withdraws every surface, disconnects the peers and QEMU's
back-end connection, closes every buffer and exits 0.

Exit status: 0 after a signal, 1 when it cannot start (QMP unreachable, the path taken, …),
64 on bad usage.
`;

const log = (line: string): void => void process.stderr.write(`guest-dmabuf sidecar: ${line}\n`);

class UsageError extends Error {}

/** `gpa=0x1000,width=…` → a named framebuffer; throws UsageError naming the bad key. */
export function parseFramebufferSpec(spec: string, index: number): NamedFramebuffer {
  const fields = new Map<string, string>();
  for (const part of spec.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) throw new UsageError(`--framebuffer "${spec}": "${part}" is not key=value`);
    fields.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  const known = ['gpa', 'width', 'height', 'stride', 'format', 'name'];
  for (const key of fields.keys()) if (!known.includes(key)) throw new UsageError(`--framebuffer "${spec}": unknown key "${key}" (keys: ${known.join(', ')})`);
  const need = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined || value === '') throw new UsageError(`--framebuffer "${spec}" needs ${key}=`);
    return value;
  };
  const whole = (key: string): number => {
    const text = need(key);
    const value = Number(text);
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(text) || !Number.isSafeInteger(value) || value <= 0) throw new UsageError(`--framebuffer ${key}=${text} must be a positive whole number`);
    return value;
  };
  const gpaText = need('gpa');
  if (!/^(0x[0-9a-f]{1,16}|\d{1,20})$/i.test(gpaText)) throw new UsageError(`--framebuffer gpa=${gpaText} must be a guest-physical address (0x hex or decimal)`);
  const format = need('format');
  const framebuffer: FramebufferDescriptor = { gpa: BigInt(gpaText), width: whole('width'), height: whole('height'), stride: whole('stride'), format: /^\d+$/.test(format) ? Number(format) : format };
  return { name: fields.get('name') || `framebuffer ${index} at ${gpaText}`, framebuffer };
}

function wholeOption(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`--${name} must be a whole number, not "${text}"`);
  return Number(text);
}

export async function sidecarMain(argv: string[]): Promise<number> {
  let values;
  let framebuffers: NamedFramebuffer[];
  let allowUids: number[];
  let maxLiveBuffers: number | undefined;
  let maxPinnedMb: number | undefined;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        qmp: { type: 'string' },
        'vhost-user-gpu': { type: 'string' },
        framebuffer: { type: 'string', multiple: true },
        'allow-uid': { type: 'string', multiple: true },
        'max-buffers': { type: 'string' },
        'max-pinned-mb': { type: 'string' },
        udmabuf: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    if (values.help) {
      process.stdout.write(SIDECAR_HELP);
      return 0;
    }
    if (!values.listen) throw new UsageError('--listen PATH is required: the socket peers connect to');
    if (values.qmp === undefined && values['vhost-user-gpu'] === undefined) throw new UsageError('give --qmp PATH, --vhost-user-gpu PATH or both: there is nothing to serve otherwise');
    framebuffers = (values.framebuffer ?? []).map(parseFramebufferSpec);
    if (framebuffers.length > 0 && values.qmp === undefined) throw new UsageError('--framebuffer needs --qmp PATH: a framebuffer is exported from guest memory, which QMP discovery provides');
    allowUids = (values['allow-uid'] ?? []).map((uid) => wholeOption(uid, 'allow-uid')!);
    maxLiveBuffers = wholeOption(values['max-buffers'], 'max-buffers');
    maxPinnedMb = wholeOption(values['max-pinned-mb'], 'max-pinned-mb');
  } catch (err) {
    console.error(`guest-dmabuf sidecar: ${(err as Error).message}\n\n${SIDECAR_HELP}`);
    return 64;
  }

  const sources: SurfaceSource[] = [];
  let qmp: QmpClient | undefined;
  let session: GuestMemorySession | undefined;
  let framebufferSource: FramebufferSource | undefined;
  const release = async (): Promise<void> => {
    for (const source of sources) await source.close().catch(() => undefined);
    session?.close();
    qmp?.close();
  };
  try {
    if (values.qmp !== undefined) {
      qmp = await QmpClient.connect(values.qmp, { timeoutMs: 10_000 });
      session = await GuestMemorySession.start(qmp);
      const { major, minor, micro } = qmp.version;
      const ram = session.discovered.regions.map((r) => `${r.backend} at 0x${r.gpa.toString(16)} (${r.size} bytes)`).join(', ');
      log(`attached to QEMU ${major}.${minor}.${micro} (pid ${qmp.peer.pid}) over ${values.qmp}: guest RAM ${ram}`);
      const fbSource = new FramebufferSource(session.memory, { framebuffers, exportSurface: udmabufFramebufferExporter(values.udmabuf), description: `guest memory of QEMU pid ${qmp.peer.pid}` });
      framebufferSource = fbSource;
      const live = session;
      // A reset or a memory change makes the old buffers stale: export again over the new map.
      live.on('reset', () => fbSource.setMemory(live.memory));
      live.on('balloon', () => fbSource.setMemory(live.memory));
      live.on('memory-changed', (found) => fbSource.setMemory(found.memory));
      live.on('closed', (reason) => {
        log(`QMP connection ended${reason ? `: ${reason.message}` : ''}; described framebuffers withdrawn`);
        fbSource.setMemory(null);
      });
      live.on('error', (err) => log(`rediscovering guest memory failed: ${err.message}`));
      sources.push(fbSource);
    }
    if (values['vhost-user-gpu'] !== undefined) {
      const backend = await VhostUserGpuBackend.listen(values['vhost-user-gpu'], values.udmabuf === undefined ? {} : { udmabufPath: values.udmabuf });
      backend.on('connect', ({ peer }) => log(`QEMU (pid ${peer.pid}) connected to the vhost-user-gpu back end`));
      backend.on('disconnect', ({ peer }) => log(`QEMU (pid ${peer.pid}) disconnected from the vhost-user-gpu back end`));
      backend.on('rejected', ({ error }) => log(error.message));
      sources.push(new VhostUserGpuSource(backend, { ownsBackend: true }));
      log(`vhost-user-gpu back end listening on ${values['vhost-user-gpu']}: start QEMU with -chardev socket,id=vgpu,path=${values['vhost-user-gpu']} -device vhost-user-gpu-pci,chardev=vgpu`);
    }
  } catch (err) {
    log(`cannot start: ${err instanceof GuestDmabufError ? `${err.message} (${err.code})` : String(err)}`);
    await release();
    return 1;
  }

  const options: SidecarServerOptions = {
    sources,
    allowUids,
    log,
    ...(maxLiveBuffers === undefined ? {} : { maxLiveBuffers }),
    ...(maxPinnedMb === undefined ? {} : { maxPinnedBytes: BigInt(maxPinnedMb) << 20n }),
    ...(framebufferSource ? { exportFramebuffer: (fb: FramebufferDescriptor) => framebufferSource.exportFor(fb) } : {}),
  };
  let server: SidecarServer;
  try {
    server = await SidecarServer.listen(values.listen, options);
  } catch (err) {
    log(`cannot listen on ${values.listen}: ${(err as Error).message}`);
    await release();
    return 1;
  }
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const signal = await stopped;
  log(`${signal}: withdrawing every surface and exiting`);
  await server.close(); // closes the sources too (the back end included)
  session?.close();
  qmp?.close();
  return 0;
}
