// `guest-dmabuf capture`: a PNG of a guest surface, read through the sidecar's dma-buf.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GuestDmabufError } from '../../lib/core/errors.js';
import { encodePng } from '../../lib/formats/png.js';
import { captureSurface } from './capture.js';
import { SidecarClient } from './client.js';

export const CAPTURE_HELP = `Usage: guest-dmabuf capture --sidecar PATH --out FILE.png [--surface ID] [--timeout MS]

Writes a PNG of a guest surface served by a running \`guest-dmabuf sidecar\`: the sidecar sends
the surface's dma-buf (the guest's own pages), which is mapped and read here; nothing goes
through QEMU and the guest is not paused. Formats with alpha give an RGBA PNG, others RGB.

Options:
  --sidecar PATH   the sidecar's socket (its --listen)
  --out FILE       where to write the PNG
  --surface ID     the surface (\`list\` in the protocol; default: the first one served)
  --timeout MS     give up after this long (default 10000)
  -h, --help       this text

Exit status: 0 when written, 1 when it could not be (no sidecar, no such surface, the buffer
could not be read or the file written), 64 on bad usage.
`;

const log = (line: string): void => void process.stderr.write(`guest-dmabuf capture: ${line}\n`);

function positiveInteger(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new RangeError(`${name} must be a whole number, not "${value}"`);
  return n;
}

export async function captureMain(argv: string[]): Promise<number> {
  let values;
  let surface: number | undefined;
  let timeoutMs: number;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        sidecar: { type: 'string' },
        out: { type: 'string' },
        surface: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    if (values.help) {
      process.stdout.write(CAPTURE_HELP);
      return 0;
    }
    if (!values.sidecar || !values.out) throw new RangeError(`${!values.sidecar ? '--sidecar' : '--out'} is required`);
    surface = values.surface === undefined ? undefined : positiveInteger(values.surface, '--surface', 0);
    timeoutMs = positiveInteger(values.timeout, '--timeout', 10_000);
  } catch (err) {
    process.stderr.write(`guest-dmabuf capture: ${(err as Error).message}\n\n${CAPTURE_HELP}`);
    return 64;
  }
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    await using client = await SidecarClient.connect(values.sidecar, { signal, clientName: 'guest-dmabuf capture' });
    const { surface: info, format, image } = await captureSurface(client, { surface, signal });
    writeFileSync(values.out, encodePng(image, { alpha: format.hasAlpha }));
    log(`wrote ${values.out}: surface ${info.surface} (${info.name}), ${image.width}×${image.height} ${format.code}`);
    return 0;
  } catch (err) {
    log(err instanceof GuestDmabufError ? `${err.message} (${err.code})` : String(err));
    return 1;
  }
}
