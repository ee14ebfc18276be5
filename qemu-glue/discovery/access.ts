// Why we may not read another process's fds, said so it can be fixed. /proc/<pid>/maps and the
// links in /proc/<pid>/fd need ptrace read access (PTRACE_MODE_READ: the same uid as QEMU, or
// CAP_SYS_PTRACE), but /proc/<pid>/fd itself is a directory of mode 0500 owned by QEMU's user,
// so another user also needs CAP_DAC_READ_SEARCH to list it (measured: CAP_SYS_PTRACE alone
// gets EACCES). pidfd_getfd needs attach access, which Yama's ptrace_scope restricts further
// (1: only descendants, 2: only CAP_SYS_PTRACE, 3: nobody), so with Yama on we fall back to
// reopening /proc/<pid>/fd/N, which needs read access only.
import { readFileSync, statSync } from 'node:fs';
import { GuestDmabufError } from '../../lib/core/errors.js';

/** We may not read QEMU's fd table or mappings: a different user without CAP_SYS_PTRACE, or Yama forbids it. */
export class QemuAccessError extends GuestDmabufError {
  override name = 'QemuAccessError';
  declare readonly code: 'ERR_QEMU_PTRACE_DENIED';
  /** QEMU's pid. */
  readonly pid: number;
  /** The uid QEMU runs as (owner of /proc/<pid>), when it could be read. */
  readonly qemuUid: number | undefined;
  /** Our effective uid. */
  readonly uid: number;
  /** kernel.yama.ptrace_scope, when Yama is present. */
  readonly ptraceScope: number | undefined;
  /** Whether we hold CAP_SYS_PTRACE in our effective set. */
  readonly hasCapSysPtrace: boolean;
  /** Whether we hold CAP_DAC_READ_SEARCH in our effective set. */
  readonly hasCapDacReadSearch: boolean;

  constructor(pid: number, what: string, errno: string, cause: unknown) {
    const qemuUid = ownerOf(pid);
    const uid = process.geteuid?.() ?? -1;
    const ptraceScope = yamaScope();
    const caps = effectiveCaps();
    const hasCapSysPtrace = (caps & CAP_SYS_PTRACE_BIT) !== 0n;
    const hasCapDacReadSearch = (caps & CAP_DAC_READ_SEARCH_BIT) !== 0n;
    const missing = [...(hasCapSysPtrace ? [] : ['CAP_SYS_PTRACE']), ...(hasCapDacReadSearch ? [] : ['CAP_DAC_READ_SEARCH'])];
    super(`cannot ${what} of QEMU (pid ${pid}) (${errno}): ${explain(qemuUid, uid, ptraceScope, missing)}`, 'ERR_QEMU_PTRACE_DENIED', { cause });
    this.pid = pid;
    this.qemuUid = qemuUid;
    this.uid = uid;
    this.ptraceScope = ptraceScope;
    this.hasCapSysPtrace = hasCapSysPtrace;
    this.hasCapDacReadSearch = hasCapDacReadSearch;
  }
}

const CAP_DAC_READ_SEARCH_BIT = 1n << 2n;
const CAP_SYS_PTRACE_BIT = 1n << 19n;

function ownerOf(pid: number): number | undefined {
  try {
    return statSync(`/proc/${pid}`).uid;
  } catch {
    return undefined;
  }
}

function yamaScope(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim());
  } catch {
    return undefined; // no Yama: ordinary ptrace rules apply
  }
}

function effectiveCaps(): bigint {
  const match = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? BigInt(`0x${match[1]}`) : 0n;
}

function explain(qemuUid: number | undefined, uid: number, scope: number | undefined, missing: readonly string[]): string {
  const fixes = 'or launch QEMU yourself with launchQemu() so its RAM memfds are yours';
  const yama = scope === undefined ? 'no Yama' : `Yama kernel.yama.ptrace_scope is ${scope}`;
  if (scope !== undefined && scope >= 3) {
    return `${yama}: no process may ptrace another, not even with CAP_SYS_PTRACE, until reboot; boot with a lower setting, ${fixes}`;
  }
  if (qemuUid !== undefined && qemuUid !== uid && missing.length > 0) {
    return `it runs as uid ${qemuUid} and we as uid ${uid} without ${missing.join(' and ')}; another user's fds need both (CAP_DAC_READ_SEARCH to list /proc/<pid>/fd, mode 0500, CAP_SYS_PTRACE to take them): run as uid ${qemuUid}, or grant ${missing.join(' and ')} (e.g. systemd AmbientCapabilities=${missing.join(' ')}), ${fixes} (${yama})`;
  }
  return `reading QEMU's memfds needs ptrace access to it (${yama}; we ${missing.length ? `lack ${missing.join(' and ')}` : 'hold CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH'}; a QEMU that made itself non-dumpable, e.g. with -runas or -sandbox, refuses even its own user): run as QEMU's user or with CAP_SYS_PTRACE, ${fixes}`;
}
