// The addon refuses numbers it cannot cast (NaN, infinities) before casting them, and is the
// one source of the constants the library reads from the system (SCM_MAX_FD, the page size).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { InvalidArgumentError, MAX_FDS_PER_MESSAGE } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { PAGE_SIZE } from '../../lib/core/linux.js';

const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;

test('NaN and infinities are refused as fds, fd lists and 64-bit sizes', (t) => {
  const fd = native.memfdCreate('args', 0);
  for (const bad of [NaN, Infinity, -Infinity]) {
    const cases: [string, unknown[], string][] = [
      ['close', [bad], 'fd'],
      ['fstat', [bad], 'fd'],
      ['sendmsg', [fd, new Uint8Array(1), [bad]], 'fds'],
      ['ftruncate', [fd, bad], 'size'],
      ['mmap', [fd, bad, 1, 1, 0], 'length'],
      ['mmap', [fd, 4096, bad, 1, 0], 'prot'],
      ['eventfdWrite', [fd, bad], 'value'],
      ['waitFd', [bad, fd, 1, 1], 'watch'],
    ];
    for (const [name, args, argument] of cases) {
      const err = t.throws(() => loose[name]!(...args), { instanceOf: InvalidArgumentError }, `${name} with ${bad}`);
      t.true(err?.message.includes(`"${argument}`), `${name}(${bad}): "${err?.message}" names ${argument}`);
    }
  }
  native.close(fd);
});

test('SCM_MAX_FD and the page size come from the addon (the system)', (t) => {
  t.is(MAX_FDS_PER_MESSAGE, native.SCM_MAX_FD);
  t.is(MAX_FDS_PER_MESSAGE, 253);
  t.is(PAGE_SIZE, Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()));
});
