#!/usr/bin/env node
// guest-dmabuf: the command line. `qemu info`: what a running QEMU's guest RAM looks like to
// us (backends, the guest-physical map, which memfd holds what), and whether it can be
// exported, with the reason when it cannot. `vhost-user-gpu install`: the JSON description
// libvirt needs to find the guest-dmabuf-vhost-user-gpu back end. `sidecar`: the daemon that
// serves guest surfaces to local peers (qemu-glue/sidecar/cli.ts).
import { parseArgs } from 'node:util';
import { GuestDmabufError } from '../lib/core/errors.js';
import { queryBackends, unshareableReason, type MemoryBackend } from './discovery/backends.js';
import { discoverGuestMemory } from './discovery/discover.js';
import { guestRamRanges, type FlatRange } from './discovery/mtree.js';
import { QmpClient } from './qmp/client.js';
import { CAPTURE_HELP, captureMain } from './sidecar/capture-cli.js';
import { SHOW_HELP, showMain } from './sidecar/show-cli.js';
import { SIDECAR_HELP, sidecarMain } from './sidecar/cli.js';
import { backendBinary, describeBackend, installDescription, SYSTEM_DESCRIPTION_DIR, userDescriptionDir } from './vhost-user-gpu/description.js';

const HELP = `Usage: guest-dmabuf qemu info --qmp PATH [--json] [--timeout MS]
       guest-dmabuf vhost-user-gpu install [--dir DIR | --system | --print]
       guest-dmabuf sidecar --listen PATH [--qmp PATH] [--vhost-user-gpu PATH] … (see below)
       guest-dmabuf show --sidecar PATH [--surface ID] … (see below)
       guest-dmabuf capture --sidecar PATH --out FILE.png [--surface ID] (see below)

qemu info:

Connects to a running QEMU's QMP socket (started with -qmp unix:PATH,server=on,wait=off),
and prints its version and pid, its memory backends, its guest RAM map (info mtree -f), and
for each backend the memfd that holds it and how that was established, and device RAM (such
as VGA VRAM where the firmware mapped its BAR): its RAM block, its memfd and seals (QEMU 10.0
with -machine aux-ram-share=on), and why it cannot be exported when it cannot. Taking QEMU's memfds
needs ptrace access to it: QEMU's own user, or another with CAP_SYS_PTRACE and
CAP_DAC_READ_SEARCH.

Options:
  --qmp PATH      the QMP socket
  --json          print one JSON object instead of text
  --timeout MS    give up connecting after this long (default 10000)
  -h, --help      this text

Exit status: 0 when guest RAM can be exported as dma-bufs, 2 when it cannot (the reason is
printed), 1 on any other error (no QEMU there, not QMP, ...), 64 on bad usage.

vhost-user-gpu install:
Writes 50-guest-dmabuf-gpu.json (QEMU's vhost-user.json schema, type "gpu") naming the
guest-dmabuf-vhost-user-gpu program of this installation by its absolute path, so that libvirt
finds it for <video><driver name='vhost-user'/><model type='virtio'/></video>.

Options:
  --dir DIR       write into DIR (default: $XDG_CONFIG_HOME/qemu/vhost-user, for a session
                  libvirt and the user's own QEMU tools)
  --system        write into ${SYSTEM_DESCRIPTION_DIR} (the system libvirtd; needs root)
  --print         print the description instead of writing it

Exit status: 0 when written, 1 when it could not be, 64 on bad usage.

sidecar:
${SIDECAR_HELP}
show:
${SHOW_HELP}
capture:
${CAPTURE_HELP}`;

interface Info {
  qemu: { version: string; package: string; pid: number };
  backends: (Omit<MemoryBackend, 'size'> & { size: number; memfd?: { evidence: string; seals: string[] } })[];
  ram: { start: number; end: number; region: string; offset: number; backend: boolean }[];
  deviceRam: { start: number; size: number; region: string; offset: number; block?: string; seals?: string[]; exportable: boolean; reason?: string }[];
  exportable: boolean;
  reason?: string;
}

const hex = (n: number | bigint): string => `0x${n.toString(16).padStart(16, '0')}`;

async function qemuInfo(path: string, timeoutMs: number): Promise<Info> {
  await using qmp = await QmpClient.connect(path, { timeoutMs });
  const { major, minor, micro, package: pkg } = qmp.version;
  const backends = await queryBackends(qmp);
  const ranges: FlatRange[] = guestRamRanges(await qmp.hmp('info mtree -f'));
  const ids = new Set(backends.map((b) => b.id));
  const info: Info = {
    qemu: { version: `${major}.${minor}.${micro}`, package: pkg, pid: qmp.peer.pid },
    backends: backends.map((b) => ({ ...b, size: Number(b.size) })),
    ram: ranges.map((r) => ({ start: Number(r.start), end: Number(r.end), region: r.region, offset: Number(r.offset), backend: ids.has(r.region) })),
    deviceRam: [],
    exportable: false,
  };
  try {
    using found = await discoverGuestMemory(qmp);
    for (const backend of info.backends) {
      const memfd = found.memfds.get(backend.id);
      const evidence = found.evidence.get(backend.id);
      if (memfd && evidence) backend.memfd = { evidence, seals: memfd.seals };
    }
    info.deviceRam = found.deviceRam.map((d) => ({
      start: Number(d.gpa),
      size: Number(d.size),
      region: d.region,
      offset: Number(d.offset),
      ...(d.block === undefined ? {} : { block: d.block }),
      ...(d.seals === undefined ? {} : { seals: d.seals }),
      exportable: d.reason === undefined,
      ...(d.reason === undefined ? {} : { reason: d.reason }),
    }));
    info.exportable = true;
  } catch (err) {
    if (!(err instanceof GuestDmabufError)) throw err;
    info.reason = err.message;
  }
  return info;
}

function printText(info: Info): void {
  const out: string[] = [];
  out.push(`QEMU ${info.qemu.version} (${info.qemu.package || 'no package string'}), pid ${info.qemu.pid}`);
  out.push('memory backends:');
  for (const b of info.backends) {
    const reason = unshareableReason({ ...b, size: BigInt(b.size) });
    const memfd = b.memfd ? `memfd found (by ${b.memfd.evidence})` : reason ? 'not exportable' : 'memfd not taken';
    out.push(`  ${b.id.padEnd(12)} ${b.type.padEnd(22)} ${String(b.size).padStart(12)} bytes  share=${b.share ? 'on' : 'off'}  ${memfd}`);
  }
  out.push('guest RAM (info mtree -f):');
  for (const r of info.ram) out.push(`  ${hex(r.start)}-${hex(r.end - 1)}  ${r.region} @${hex(r.offset)}${r.backend ? '' : '  (device RAM: not a backend)'}`);
  if (info.deviceRam.length > 0) {
    out.push('device RAM:');
    for (const d of info.deviceRam) {
      const block = d.block === undefined ? '' : ` (block ${d.block})`;
      const memfd = d.seals === undefined ? 'no memfd' : `memfd, seals ${d.seals.join(',') || 'none'}`;
      out.push(`  ${hex(d.start)}-${hex(d.start + d.size - 1)}  ${d.region}${block}  ${memfd}: ${d.exportable ? 'exportable' : `not exportable: ${d.reason}`}`);
    }
  }
  out.push(info.exportable ? 'exportable: yes' : `exportable: no: ${info.reason}`);
  console.log(out.join('\n'));
}

async function main(argv: string[]): Promise<number> {
  // The sidecar has options of its own; it parses them itself.
  if (argv[0] === 'sidecar') return sidecarMain(argv.slice(1));
  if (argv[0] === 'capture') return captureMain(argv.slice(1));
  if (argv[0] === 'show') return showMain(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        qmp: { type: 'string' },
        json: { type: 'boolean' },
        timeout: { type: 'string' },
        dir: { type: 'string' },
        system: { type: 'boolean' },
        print: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`guest-dmabuf: ${(err as Error).message}\n\n${HELP}`);
    return 64;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.join(' ') === 'vhost-user-gpu install') return vhostUserGpuInstall(values);
  for (const option of ['dir', 'system', 'print'] as const) {
    if (values[option] !== undefined) {
      console.error(`guest-dmabuf: --${option} belongs to vhost-user-gpu install`);
      return 64;
    }
  }
  if (positionals.join(' ') !== 'qemu info') {
    console.error(`guest-dmabuf: unknown command "${positionals.join(' ')}"\n\n${HELP}`);
    return 64;
  }
  if (!values.qmp) {
    console.error(`guest-dmabuf: qemu info needs --qmp PATH\n\n${HELP}`);
    return 64;
  }
  const timeoutMs = values.timeout === undefined ? 10_000 : Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0) {
    console.error(`guest-dmabuf: --timeout must be a whole number of milliseconds, not "${values.timeout}"`);
    return 64;
  }
  try {
    const info = await qemuInfo(values.qmp, timeoutMs);
    if (values.json) console.log(JSON.stringify(info, null, 2));
    else printText(info);
    return info.exportable ? 0 : 2;
  } catch (err) {
    console.error(`guest-dmabuf: ${(err as Error).message}`);
    return 1;
  }
}

function vhostUserGpuInstall(values: { dir?: string; system?: boolean; print?: boolean; qmp?: string; json?: boolean; timeout?: string }): number {
  const chosen = [values.dir !== undefined && '--dir', values.system && '--system', values.print && '--print'].filter(Boolean);
  if (chosen.length > 1) {
    console.error(`guest-dmabuf: vhost-user-gpu install takes one of --dir, --system and --print, not ${chosen.join(' and ')}`);
    return 64;
  }
  if (values.qmp !== undefined || values.json || values.timeout !== undefined) {
    console.error('guest-dmabuf: --qmp, --json and --timeout belong to qemu info');
    return 64;
  }
  try {
    if (values.print) {
      console.log(JSON.stringify(describeBackend(backendBinary()), null, 2));
      return 0;
    }
    const file = installDescription(values.system ? SYSTEM_DESCRIPTION_DIR : values.dir || userDescriptionDir());
    console.log(`wrote ${file}`);
    return 0;
  } catch (err) {
    console.error(`guest-dmabuf: cannot write the vhost-user-gpu description: ${(err as Error).message}${(err as { code?: string }).code === 'EACCES' ? ' (--system needs root; without it the file goes to your own config directory)' : ''}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
