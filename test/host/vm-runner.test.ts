// Pure parts of the VM runner: the guest command script, the QEMU arguments, the kernel-log
// verdict and the judgement of what the guest left behind.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandScript } from '../../vm/command-script.js';
import { GUEST_INIT } from '../../vm/guest-init.js';
import { guestReport, KERNEL_LOG_MISSING, UNLOAD_MISSING } from '../../vm/guest-report.js';
import { kernelLogFindings, kernelLogProblems } from '../../vm/kernel-log.js';
import { resolveKernel } from '../../vm/kernels.js';
import { qemuOptionValue, virtfsArgs } from '../../vm/qemu-args.js';

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

test('the kernel log verdict names the lines it flags and why', (t) => {
  const log = [
    '[    1.0] guest_udmabuf: loading out-of-tree module taints kernel.',
    '[    2.0] WARNING: CPU: 0 PID: 1 at mm/gup.c:1 foo',
    '[    3.0] BUG: kernel NULL pointer dereference',
    '[    4.0] Oops: 0000 [#1] SMP',
    '[    5.0] general protection fault, probably for non-canonical address',
    '[    6.0] refcount_t: underflow; use-after-free.',
    '[    7.0] random: crng init done',
    '[    8.0] BUG: KASAN: slab-use-after-free in gud_release+0x10/0x20',
    '[    9.0] ======================================================',
    '[   10.0] WARNING: possible circular locking dependency detected',
    '[   11.0] WARNING: inconsistent lock state',
    '[   12.0] WARNING: suspicious RCU usage',
    '[   13.0] unreferenced object 0xffff888003a1c000 (size 4096):',
    '[   14.0] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)',
    '[   15.0] DMA-API: preallocated 65536 debug entries',
    '[   16.0] DMA-API: guest_udmabuf: device driver frees DMA memory with wrong function',
    '[   17.0] BUG: sleeping function called from invalid context at mm/gup.c:1',
    '[   18.0] lockdep: fixing up alternatives',
    '[   19.0] kmemleak: Kernel memory leak detector initialized (mem pool available: 15000)',
  ].join('\n');
  t.deepEqual(
    kernelLogFindings(log).map((f) => [f.line.slice(0, 10), f.patterns]),
    [
      ['[    2.0] ', ['warning']],
      ['[    3.0] ', ['bug']],
      ['[    4.0] ', ['oops']],
      ['[    5.0] ', ['general protection']],
      ['[    6.0] ', ['refcount']],
      ['[    8.0] ', ['bug', 'KASAN']],
      ['[   10.0] ', ['warning', 'lockdep: circular locking']],
      ['[   11.0] ', ['warning', 'lockdep: inconsistent lock state']],
      ['[   12.0] ', ['warning', 'lockdep: suspicious RCU usage']],
      ['[   13.0] ', ['kmemleak']],
      ['[   14.0] ', ['kmemleak']],
      ['[   16.0] ', ['DMA-API']],
      ['[   17.0] ', ['bug', 'sleeping in atomic context']],
    ],
  );
  t.deepEqual(kernelLogProblems(log), kernelLogFindings(log).map((f) => f.line));
  t.deepEqual(kernelLogProblems('[ 1.0] all fine\n'), []);
  // Each sanitizer's line alone, without a WARNING:/BUG: prefix, is still flagged.
  for (const line of ['KASAN: null-ptr-deref in range', 'possible circular locking dependency detected', 'inconsistent lock state', 'suspicious RCU usage.', 'unreferenced object 0x1 (size 8):', 'DMA-API: exceeded 7 overlapping mappings']) {
    t.deepEqual(kernelLogProblems(line), [line], line);
  }
});

test('QEMU option values double their commas, so a --rw path with a comma survives -virtfs', (t) => {
  t.is(qemuOptionValue('/tmp/a,b,,c'), '/tmp/a,,b,,,,c');
  t.deepEqual(virtfsArgs('rw0', '/tmp/out,1', false), ['-virtfs', 'local,path=/tmp/out,,1,mount_tag=rw0,security_model=none,multidevs=remap']);
  t.deepEqual(virtfsArgs('hostroot', '/', true), ['-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap,readonly=on']);
});

/** The guest's control files as a map; absent names are files the guest never wrote. */
const files = (entries: Record<string, string>) => (name: string): string | null => entries[name] ?? null;
const CLEAN = { status: '0\n', 'rmmod.status': 'ok\n', 'rmmod.err': '', dmesg: '[ 1.0] fine\n', finished: 'done\n' };

test('a guest that wrote everything is judged clean', (t) => {
  t.deepEqual(guestReport(files(CLEAN), true), { commandStatus: 0, kernelLogProblems: [], moduleUnloadError: null, completed: true });
  const { 'rmmod.status': _s, 'rmmod.err': _e, ...noModule } = CLEAN;
  t.deepEqual(guestReport(files(noModule), false), { commandStatus: 0, kernelLogProblems: [], moduleUnloadError: null, completed: true });
});

test('a guest killed in rmmod fails: no unload status, no kernel log, no completion marker', (t) => {
  // What a VM that hangs or panics inside rmmod leaves behind: only the command's status.
  const report = guestReport(files({ status: '0\n' }), true);
  t.deepEqual(report, { commandStatus: 0, kernelLogProblems: [KERNEL_LOG_MISSING], moduleUnloadError: UNLOAD_MISSING, completed: false });
  t.is(guestReport(files({ ...CLEAN, 'rmmod.status': 'failed\n', 'rmmod.err': 'rmmod: ERROR: Module guest_udmabuf is in use\n' }), true).moduleUnloadError, 'rmmod: ERROR: Module guest_udmabuf is in use');
  const { dmesg: _d, ...noLog } = CLEAN;
  t.deepEqual(guestReport(files(noLog), true).kernelLogProblems, [KERNEL_LOG_MISSING]);
  const { finished: _f, ...unfinished } = CLEAN;
  t.false(guestReport(files(unfinished), true).completed);
  t.is(guestReport(files({ ...CLEAN, status: '' }), true).commandStatus, null, 'an empty status is no status');
});

test('the guest init writes the completion marker last, after rmmod and dmesg are saved', (t) => {
  const at = (text: string): number => GUEST_INIT.indexOf(text);
  t.true(at('> $C/status') > 0);
  t.true(at('> $C/rmmod.status') > at('> $C/status'));
  t.true(at('dmesg > $C/dmesg') > at('> $C/rmmod.status'));
  t.true(at('echo done > $C/finished') > at('dmesg > $C/dmesg'));
  t.true(at('reboot -f\n`') < 0 || at('echo done > $C/finished') < GUEST_INIT.lastIndexOf('reboot -f'));
});

test('kernel selectors resolve to installed kernels, and a wrong one says what exists', (t) => {
  const k = resolveKernel('6.12');
  t.regex(k.version, /^6\.12\./);
  t.regex(k.image, /vmlinuz-6\.12/);
  const err = t.throws(() => resolveKernel('5.4'));
  t.regex(err!.message, /installed: .*6\.1/);
});
