// The addon's error shape and fd calls, on the host (no udmabuf needed).
import test from 'ava';
import { InvalidArgumentError } from '../../lib/core/errors.js';
import { openSync } from 'node:fs';
import { native } from '../../lib/core/native.js';
import * as L from '../../lib/core/linux.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Memfd, unmap } from '../../lib/index.js';
import { mismatch } from './fixtures/support.js';

test('errors carry code, errno and syscall', (t) => {
  const err = t.throws(() => native.dup(987654)) as Error & { code?: string; errno?: number; syscall?: string };
  t.is(err.code, 'EBADF');
  t.is(err.errno, 9);
  t.is(err.syscall, 'dup');
  t.regex(err.message, /EBADF/);
});

test('argument errors are InvalidArgumentErrors naming the argument', (t) => {
  const err = t.throws(() => native.close(-1 as number), { instanceOf: InvalidArgumentError, code: 'ERR_INVALID_ARG_TYPE' });
  t.regex(err.message, /"fd"/);
  t.throws(() => native.ftruncate(3, -5), { instanceOf: InvalidArgumentError, code: 'ERR_OUT_OF_RANGE' });
});

test('ioctl on a non-device fails with ENOTTY', (t) => {
  const fd = openSync('/proc/self/stat', 'r');
  const err = t.throws(() => native.ioctl(fd, L.ioc('w', 'u', 0x42, 24), new Uint8Array(24))) as { code?: string };
  t.is(err.code, 'ENOTTY');
  native.close(fd);
});

test('munmap rejects buffers it did not map', (t) => {
  t.throws(() => native.munmap(new ArrayBuffer(8)), { instanceOf: InvalidArgumentError, code: 'ERR_INVALID_ARG_TYPE' });
});

test('pidfd_getfd takes an fd from another process', async (t) => {
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

test("pidfd_getfd takes a child's memfd: the same pages, adopted as a Memfd", async (t) => {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/memfd-holder.js', import.meta.url))], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const [pid, fd] = line.toString().trim().split(' ').map(Number) as [number, number];
  const pidfd = native.pidfdOpen(pid);
  using memfd = Memfd.adopt(native.pidfdGetfd(pidfd, fd));
  native.close(pidfd);
  t.is(memfd.size, 64n * 1024n);
  t.deepEqual(memfd.seals, ['shrink']);
  const view = memfd.map();
  t.is(mismatch(view, 7), -1, "the child's bytes");
  unmap(view);
  child.stdin!.end();
  await once(child, 'close');
  t.throws(() => Memfd.adopt(0), { code: 'ERR_NOT_A_MEMFD', message: /fd 0 is not a memfd/ });
});
