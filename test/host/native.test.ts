// The addon's error shape and fd calls, on the host (no udmabuf needed).
import test from 'ava';
import { openSync } from 'node:fs';
import { native } from '../../lib/native.js';
import * as L from '../../lib/linux.js';

test('errors carry code, errno and syscall', (t) => {
  const err = t.throws(() => native.dup(987654)) as Error & { code?: string; errno?: number; syscall?: string };
  t.is(err.code, 'EBADF');
  t.is(err.errno, 9);
  t.is(err.syscall, 'dup');
  t.regex(err.message, /EBADF/);
});

test('argument errors are TypeErrors naming the argument', (t) => {
  const err = t.throws(() => native.close(-1 as number));
  t.true(err instanceof TypeError);
  t.regex(err!.message, /"fd"/);
  t.throws(() => native.ftruncate(3, -5), { instanceOf: RangeError });
});

test('ioctl on a non-device fails with ENOTTY', (t) => {
  const fd = openSync('/proc/self/stat', 'r');
  const err = t.throws(() => native.ioctl(fd, L.ioc('w', 'u', 0x42, 24), new Uint8Array(24))) as { code?: string };
  t.is(err.code, 'ENOTTY');
  native.close(fd);
});

test('munmap rejects buffers it did not map', (t) => {
  t.throws(() => native.munmap(new ArrayBuffer(8)), { instanceOf: TypeError });
});

test('pidfd_getfd takes an fd from another process', async (t) => {
  const { spawn } = await import('node:child_process');
  const child = spawn('sh', ['-c', 'exec 7</proc/version; read x'], { stdio: ['pipe', 'ignore', 'ignore'] });
  await new Promise((r) => setTimeout(r, 200));
  const pidfd = native.pidfdOpen(child.pid!);
  const fd = native.pidfdGetfd(pidfd, 7);
  const { readFileSync } = await import('node:fs');
  t.regex(readFileSync(fd, 'utf8'), /Linux version/);
  native.close(fd);
  native.close(pidfd);
  child.stdin!.end();
  await new Promise((r) => child.on('close', r));
});
