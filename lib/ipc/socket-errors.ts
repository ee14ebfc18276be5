// Connect and listen failures, explained with what to do.
import { errnoCode, GuestDmabufError } from '../core/errors.js';

export function socketError(action: string, path: string, err: unknown): unknown {
  const code = errnoCode(err);
  const hints: Record<string, string> = {
    ENOENT: 'nothing is listening there: start the server first or check the path',
    ECONNREFUSED: 'the socket file exists but no one accepts on it: the server is gone (a stale socket file?)',
    EADDRINUSE: 'the path already exists: stop the other server, or remove the stale socket file',
    EACCES: 'permission denied on the path or its directory',
  };
  if (code === undefined || hints[code] === undefined) return err;
  return new GuestDmabufError(`cannot ${action} unix socket ${path} (${code}): ${hints[code]}`, code, { cause: err });
}

