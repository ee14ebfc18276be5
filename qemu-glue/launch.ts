// launchQemu: QEMU started by us, the embedded default for tests and demos. We create guest
// RAM as sealed memfds and hand them to QEMU as inherited fds (memory-backend-file on
// /proc/self/fd/N: QEMU reopens the same memfd), and QMP runs over a socketpair whose other
// end QEMU inherits (-chardev socket,fd=N), so no socket path and no fd hunting is needed.
import { spawn, type ChildProcess } from 'node:child_process';
import { AbortError, GuestDmabufError } from '../lib/core/errors.js';
import type { GuestMemory } from '../lib/guest/guest-memory.js';
import { UnixSocket } from '../lib/ipc/unix-socket.js';
import { Memfd, type HugePageSize } from '../lib/kernel/memfd.js';
import { toBigInt, type Size } from '../lib/core/integers.js';
import { discoverGuestMemory, type DiscoveredGuestMemory } from './discovery/discover.js';
import { QmpClient } from './qmp/client.js';
import { findQemu, type QemuBinary, type QemuVersion } from './qemu-binaries.js';

export interface LaunchMemory {
  /** The backend id: `-object memory-backend-file,id=<id>`. The first entry is main RAM. */
  id: string;
  size: Size;
  hugetlb?: HugePageSize;
}

export interface LaunchOptions {
  /** Which QEMU (default '7.2'), or a binary from findQemu(). */
  qemu?: QemuVersion | QemuBinary;
  /** The machine type and its options, without memory-backend (default 'q35'). */
  machine?: string;
  /** Extra -m options for hot-plug, e.g. 'slots=2,maxmem=8G'. */
  memoryOptions?: string;
  /** Everything else: accelerator, devices, -S, -display none ... */
  args: readonly string[];
  memory: readonly LaunchMemory[];
  signal?: AbortSignal;
  /** QEMU's stderr, line by line (default: dropped, but kept for the start error). */
  log?: (line: string) => void;
  /** Give up when QMP has not answered within this long (default 30000 ms). */
  timeoutMs?: number;
}

export interface LaunchedQemu {
  qmp: QmpClient;
  memory: GuestMemory;
  /** The discovery behind `memory`: regions, backends. */
  discovered: DiscoveredGuestMemory;
  /** Backend id → its memfd (ours: closed by close()). */
  memfds: ReadonlyMap<string, Memfd>;
  process: ChildProcess;
  /** QEMU's exit, once it has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Asks QEMU to quit, kills it after `graceMs` (default 2000), waits for it, closes QMP and the memfds. */
  close(graceMs?: number): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const STDERR_KEPT = 40;

export async function launchQemu(options: LaunchOptions): Promise<LaunchedQemu> {
  const { machine = 'q35', memoryOptions, args, memory, signal, log, timeoutMs = 30_000 } = options;
  const qemu = typeof options.qemu === 'object' ? options.qemu : findQemu(options.qemu ?? '7.2');
  if (memory.length === 0) throw new GuestDmabufError('launchQemu needs at least one memory entry (main RAM)', 'ERR_INVALID_ARG_VALUE');
  if (signal?.aborted) throw new AbortError('launching QEMU', signal.reason);

  const memfds = new Map<string, Memfd>();
  const sockets: UnixSocket[] = [];
  let child: ChildProcess | undefined;
  try {
    for (const m of memory) {
      if (memfds.has(m.id)) throw new GuestDmabufError(`two memory entries have the id '${m.id}'`, 'ERR_INVALID_ARG_VALUE');
      memfds.set(m.id, Memfd.create(`guest-ram:${m.id}`, m.size, { hugetlb: m.hugetlb, seals: ['shrink', 'grow'] }));
    }
    const [ours, theirs] = UnixSocket.pair();
    sockets.push(ours, theirs);
    // Inherited fds land at 3, 4, ... in the order of stdio's extra entries.
    const memfdList = [...memfds.values()];
    const qmpFd = 3 + memfdList.length;
    const main = memory[0]!;
    const qemuArgs = [
      ...qemu.extraArgs,
      '-machine', `${machine},memory-backend=${main.id}`,
      '-m', memoryOptions ? `${toBigInt(main.size, 'memory size')}b,${memoryOptions}` : `${toBigInt(main.size, 'memory size')}b`,
      ...memory.flatMap((m, i) => ['-object', `memory-backend-file,id=${m.id},mem-path=/proc/self/fd/${3 + i},share=on,size=${toBigInt(m.size, 'memory size')}`]),
      '-chardev', `socket,id=guest-dmabuf-qmp,fd=${qmpFd}`,
      '-mon', 'chardev=guest-dmabuf-qmp,mode=control',
      ...args,
    ];
    child = spawn(qemu.binary, qemuArgs, {
      stdio: ['ignore', 'ignore', 'pipe', ...memfdList.map((m) => m.fd), theirs.fd],
      env: { ...process.env, ...qemu.env },
    });
    theirs.close();
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child!.once('exit', (code, sig) => resolve({ code, signal: sig }));
      child!.once('error', () => resolve({ code: null, signal: null }));
    });
    const spawnError = new Promise<Error>((resolve) => child!.once('error', resolve));
    const stderr: string[] = [];
    let partial = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        stderr.push(line);
        if (stderr.length > STDERR_KEPT) stderr.shift();
        log?.(line);
      }
    });
    const describeExit = async (): Promise<string> => {
      const exit = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
      const how = exit === undefined ? 'did not answer QMP' : exit.signal ? `was killed by ${exit.signal}` : `exited with status ${exit.code}`;
      const said = [...stderr, partial].filter((l) => l.trim() !== '').join('\n');
      return `QEMU ${qemu.version} (${qemu.binary}) ${how}${said ? `: ${said}` : ''}`;
    };

    let qmp: QmpClient;
    try {
      qmp = await Promise.race([
        QmpClient.connect(ours, { timeoutMs, signal }),
        spawnError.then((err) => {
          throw new GuestDmabufError(`cannot start ${qemu.binary}: ${err.message}`, 'ERR_QEMU_START', { cause: err });
        }),
      ]);
    } catch (err) {
      if (err instanceof AbortError) throw err;
      if ((err as GuestDmabufError).code === 'ERR_QEMU_START') throw err;
      child.kill('SIGKILL');
      throw new GuestDmabufError(await describeExit(), 'ERR_QEMU_START', { cause: err });
    }
    let discovered: DiscoveredGuestMemory;
    try {
      discovered = await discoverGuestMemory(qmp, { memfds, signal });
    } catch (err) {
      qmp.close();
      throw err;
    }
    const proc = child;
    let closing: Promise<void> | undefined;
    const close = (graceMs = 2000): Promise<void> =>
      (closing ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          await qmp.execute('quit', undefined, { timeoutMs: graceMs }).catch(() => undefined);
          const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        qmp.close();
        discovered.close();
        for (const memfd of memfds.values()) memfd.close();
      })());
    return {
      qmp,
      memory: discovered.memory,
      discovered,
      memfds,
      process: proc,
      exited,
      close,
      [Symbol.asyncDispose]: () => close(),
    };
  } catch (err) {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const socket of sockets) socket.close();
    for (const memfd of memfds.values()) memfd.close();
    throw err;
  }
}
