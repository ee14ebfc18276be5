// `guest-dmabuf show`: a Wayland window showing a guest surface served by the sidecar.
import { parseArgs } from 'node:util';
import { GuestDmabufError } from '../../lib/core/errors.js';
import { WaylandClient } from '../../lib/wayland/client/wayland-client.js';
import { SidecarClient } from './client.js';
import { showSurface } from './show.js';

export const SHOW_HELP = `Usage: guest-dmabuf show --sidecar PATH [--surface ID] [--follow] [--fullscreen] [--frames N]

Shows a guest surface served by a running \`guest-dmabuf sidecar\` in a Wayland window
($WAYLAND_DISPLAY): its dma-buf (the guest's own pages) is imported once with
zwp_linux_dmabuf_v1, every guest flush is a commit of the same buffer with the guest's
rectangles damaged, and a new buffer (a mode change) is imported and the old one given back
once the compositor releases it. Waits for the surface to appear.

Options:
  --sidecar PATH   the sidecar's socket (its --listen)
  --surface ID     the surface (default: the first one served)
  --follow         when the surface is gone (the guest rebooted, QEMU restarted), keep the
                   window and show the next surface of the same name ("scanout 0")
  --fullscreen     ask the compositor for a fullscreen window
  --frames N       exit after N commits (default: until the surface is withdrawn or the
                   window closed)
  -h, --help       this text

SIGUSR1 logs the counts so far (\`stats: commits=N imports=N\`). SIGINT or SIGTERM closes
the window and gives every buffer back. Exit status: 0 when the surface was withdrawn, the
window closed, N frames shown or a signal came; 1 when showing failed (no sidecar, no
compositor, a format the compositor does not offer, the sidecar gone); 64 on bad usage.
`;

const log = (line: string): void => void process.stderr.write(`guest-dmabuf show: ${line}\n`);

export async function showMain(argv: string[]): Promise<number> {
  let values;
  let surface: number | undefined;
  let frames: number | undefined;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        sidecar: { type: 'string' },
        surface: { type: 'string' },
        frames: { type: 'string' },
        fullscreen: { type: 'boolean' },
        follow: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    if (values.help) {
      process.stdout.write(SHOW_HELP);
      return 0;
    }
    if (!values.sidecar) throw new RangeError('--sidecar is required');
    for (const [name, value] of [['--surface', values.surface], ['--frames', values.frames]] as const) {
      if (value !== undefined && !/^\d+$/.test(value)) throw new RangeError(`${name} must be a whole number, not "${value}"`);
    }
    surface = values.surface === undefined ? undefined : Number(values.surface);
    frames = values.frames === undefined ? undefined : Number(values.frames);
  } catch (err) {
    process.stderr.write(`guest-dmabuf show: ${(err as Error).message}\n\n${SHOW_HELP}`);
    return 64;
  }
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: closing`);
    stop.abort();
  };
  let counts = { presents: 0, imports: 0 };
  const onStats = (): void => log(`stats: commits=${counts.presents} imports=${counts.imports}`);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('SIGUSR1', onStats);
  try {
    await using client = await SidecarClient.connect(values.sidecar, { signal: stop.signal, clientName: 'guest-dmabuf show' });
    using wayland = await WaylandClient.connect(undefined, { signal: stop.signal });
    const result = await showSurface(client, wayland, { surface, frames, fullscreen: values.fullscreen, follow: values.follow, signal: stop.signal, log, onPresent: (c) => (counts = { ...c }) });
    log(`surface ${result.surface.surface} (${result.surface.name}): ${result.presents} commits, ${result.imports} imports${result.follows ? `, ${result.follows} surfaces followed` : ''}; ended: ${result.end}`);
    return 0;
  } catch (err) {
    if (stop.signal.aborted) return 0;
    log(err instanceof GuestDmabufError ? `${err.message} (${err.code})` : String(err));
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGUSR1', onStats);
  }
}
