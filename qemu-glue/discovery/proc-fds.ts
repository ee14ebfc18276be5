// Finding and taking another process's memfds: its fd table (/proc/<pid>/fd), the files it
// maps (/proc/<pid>/maps), and pidfd_getfd (or, where that is refused or missing, reopening
// /proc/<pid>/fd/N). Both need ptrace-read access to the process.
import { openSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { errnoCode, GuestDmabufError } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { Memfd } from '../../lib/kernel/memfd.js';
import { QemuAccessError } from './access.js';

export interface ProcMemfd {
  /** The fd number in the process. */
  fd: number;
  /** The link text, e.g. '/memfd:memory-backend-memfd (deleted)'. */
  name: string;
  dev: bigint;
  ino: bigint;
  size: bigint;
}

export interface ProcMapping {
  start: bigint;
  end: bigint;
  shared: boolean;
  dev: string;
  ino: bigint;
  path: string;
}

function procError(pid: number, what: string, err: unknown): GuestDmabufError {
  const code = errnoCode(err) ?? 'EIO';
  if (code === 'EACCES' || code === 'EPERM') return new QemuAccessError(pid, what, code, err);
  const hint = code === 'ENOENT' || code === 'ESRCH' ? `process ${pid} is gone` : (err as Error).message;
  return new GuestDmabufError(`cannot ${what} of process ${pid} (${code}): ${hint}`, code, { cause: err });
}

/** The memfds in `pid`'s fd table, one per inode (a file may be open several times). */
export function listMemfds(pid: number): ProcMemfd[] {
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    throw procError(pid, 'list the fds', err);
  }
  const byInode = new Map<string, ProcMemfd>();
  for (const entry of entries) {
    const path = `/proc/${pid}/fd/${entry}`;
    let name: string;
    try {
      name = readlinkSync(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // closed meanwhile
      throw procError(pid, 'read the fds', err);
    }
    if (!name.startsWith('/memfd:')) continue;
    let stat;
    try {
      stat = statSync(path, { bigint: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw procError(pid, 'stat the fds', err);
    }
    const key = `${stat.dev}:${stat.ino}`;
    if (!byInode.has(key)) byInode.set(key, { fd: Number(entry), name, dev: stat.dev, ino: stat.ino, size: stat.size });
  }
  return [...byInode.values()].sort((a, b) => a.fd - b.fd);
}

/** The shared file mappings of `pid`. */
export function readMappings(pid: number): ProcMapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (err) {
    throw procError(pid, 'read the memory mappings', err);
  }
  const mappings: ProcMapping[] = [];
  for (const line of text.split('\n')) {
    // start-end perms offset dev inode path
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m || m[5] === '0') continue;
    mappings.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), shared: m[3]![3] === 's', dev: m[4]!, ino: BigInt(m[5]!), path: m[6]! });
  }
  return mappings;
}

/** A duplicate of `pid`'s fd `fd` as a Memfd we own: pidfd_getfd, else reopening /proc/<pid>/fd/N. */
export function takeMemfd(pid: number, fd: number): Memfd {
  let taken: number | undefined;
  let firstError: unknown;
  try {
    const pidfd = native.pidfdOpen(pid);
    try {
      taken = native.pidfdGetfd(pidfd, fd);
    } finally {
      native.close(pidfd);
    }
  } catch (err) {
    firstError = err;
  }
  if (taken === undefined) {
    try {
      // A new open file description of the same memfd inode: the same pages and seals.
      taken = openSync(`/proc/${pid}/fd/${fd}`, 'r+');
    } catch (err) {
      throw procError(pid, `take fd ${fd} (pidfd_getfd: ${errnoCode(firstError) ?? 'failed'}; reopening through /proc)`, err);
    }
  }
  try {
    return Memfd.adopt(taken);
  } catch (err) {
    native.close(taken);
    throw err;
  }
}
