// Pure parts of the VM runner: the guest command script and the kernel-log verdict.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandScript } from '../../vm/command-script.js';
import { kernelLogProblems } from '../../vm/kernel-log.js';
import { resolveKernel } from '../../vm/kernels.js';

test('the command script runs the command with its arguments intact, in the given directory', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gdb-test-'));
  const args = ["it's", 'two words', '$HOME', '"quoted"', ''];
  const script = commandScript(['node', '-e', 'console.log(JSON.stringify([process.cwd(), process.argv.slice(1), process.env.MY_VAR]))', ...args], dir, {
    PATH: process.env.PATH,
    MY_VAR: "a'b c",
    'NOT-VALID': 'x',
  });
  writeFileSync(join(dir, 'cmd.sh'), script);
  const out = spawnSync('sh', [join(dir, 'cmd.sh')], { encoding: 'utf8' });
  t.is(out.status, 0, out.stderr);
  t.deepEqual(JSON.parse(out.stdout), [dir, args, "a'b c"]);
});

test('the kernel log verdict flags warnings, bugs, oopses and refcount errors only', (t) => {
  const log = [
    '[    1.0] guest_udmabuf: loading out-of-tree module taints kernel.',
    '[    2.0] WARNING: CPU: 0 PID: 1 at mm/gup.c:1 foo',
    '[    3.0] BUG: kernel NULL pointer dereference',
    '[    4.0] Oops: 0000 [#1] SMP',
    '[    5.0] general protection fault, probably for non-canonical address',
    '[    6.0] refcount_t: underflow; use-after-free.',
    '[    7.0] random: crng init done',
  ].join('\n');
  t.is(kernelLogProblems(log).length, 5);
  t.deepEqual(kernelLogProblems('[ 1.0] all fine\n'), []);
});

test('kernel selectors resolve to installed kernels, and a wrong one says what exists', (t) => {
  const k = resolveKernel('6.12');
  t.regex(k.version, /^6\.12\./);
  t.regex(k.image, /vmlinuz-6\.12/);
  const err = t.throws(() => resolveKernel('5.4'));
  t.regex(err!.message, /installed: .*6\.1/);
});
