// Getting the vhost-user socket ready, the way a back end that may be restarted needs it: a
// socket file left by a back end that died is reused (QEMU's own back ends unlink whatever is
// at the path; we only remove a socket nobody answers on, never a live server's or a file),
// and an inherited fd is checked to be what --fd promises (a connected stream socket; libvirt
// passes one end of a socketpair) before anything waits on it.
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { errnoCode } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import { UnixListener } from '../../lib/ipc/unix-listener.js';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { VhostUserGpuBackendError } from './gpu-backend-errors.js';

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
/** /proc/net/unix's Flags bit for a listening socket (__SO_ACCEPTCON). */
const SO_ACCEPTCON = 0x10000;

/** Listens on `path`, replacing a stale socket file; refuses a live server's or a non-socket. */
export async function listenReplacingStale(path: string): Promise<UnixListener> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  if (stat) {
    if (!stat.isSocket()) throw new VhostUserGpuBackendError(`${path} exists and is not a socket: choose another --socket-path, or remove it yourself if it is yours`, 'ERR_VHOST_USER_SOCKET_PATH');
    if (await answers(path)) throw new VhostUserGpuBackendError(`another server is listening on ${path}: stop it (another guest-dmabuf-vhost-user-gpu?) or choose another socket path`, 'ERR_VHOST_USER_SOCKET_IN_USE');
    unlinkSync(path);
  }
  return UnixListener.listen(path);
}

/** Whether a server accepts on the socket at `path` (ECONNREFUSED: a stale file). */
async function answers(path: string): Promise<boolean> {
  try {
    const probe = await UnixSocket.connect(path, { timeoutMs: 1000 });
    probe.close();
    return true;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return false;
    // A full backlog (ETIMEDOUT) or no permission: something is there; do not remove it.
    return true;
  }
}

/** Adopts an inherited connected unix stream socket; the fd stays the caller's on error. */
export function adoptConnected(fd: number): UnixSocket {
  if (!Number.isInteger(fd) || fd < 0) throw new VhostUserGpuBackendError(`fd ${fd} is not a file descriptor number`, 'ERR_VHOST_USER_BAD_FD');
  let stat;
  try {
    stat = native.fstat(fd);
  } catch (err) {
    throw new VhostUserGpuBackendError(`fd ${fd} is not open (${errnoCode(err) ?? String(err)}): the parent must pass the vhost-user socket as that fd`, 'ERR_VHOST_USER_BAD_FD', { cause: err });
  }
  if ((stat.mode & S_IFMT) !== S_IFSOCK) throw new VhostUserGpuBackendError(`fd ${fd} is not a socket: --fd takes the vhost-user socket (one end of a socketpair, as libvirt passes)`, 'ERR_VHOST_USER_BAD_FD');
  if (isListening(stat.ino)) throw new VhostUserGpuBackendError(`fd ${fd} is a listening socket: --fd takes a connected one (one end of a socketpair, as libvirt passes); to listen, use --socket-path`, 'ERR_VHOST_USER_BAD_FD');
  return UnixSocket.adopt(fd);
}

/** Whether /proc/net/unix lists the socket with this inode as listening (false when not listed). */
function isListening(ino: bigint): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return false;
  }
  for (const line of table.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    const fields = line.trim().split(/\s+/);
    if (fields[6] === String(ino)) return (parseInt(fields[3] ?? '0', 16) & SO_ACCEPTCON) !== 0;
  }
  return false;
}
