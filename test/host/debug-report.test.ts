// The debug kernel's extra verdict (vm/debug-report.ts): the log starts at boot with a 16 MiB
// buffer, lockdep and dma-debug are still on at the end, dma-debug counted no error.
import test from 'ava';
import { debugKernelProblems, DEBUG_STATE_FILE } from '../../vm/debug-report.js';

const DMESG = '[    0.000000] Linux version 6.1.192 (root@vm)\n[    4.7] Kernel command line: console=ttyS0 kasan_multi_shot log_buf_len=16M tsc=reliable\n';
const STATE = ' debug_locks:                           1\ndma-api disabled: N\ndma-api errors: 0\n';
const reader = (files: Record<string, string>) => (name: string): string | null => files[name] ?? null;

test('a whole log with lockdep and dma-debug on and no dma-debug error is clean', (t) => {
  t.deepEqual(debugKernelProblems(reader({ dmesg: DMESG, [DEBUG_STATE_FILE]: STATE })), []);
});

test('a wrapped log, a missing log_buf_len, lockdep or dma-debug off, dma-debug errors are each named', (t) => {
  const wrapped = DMESG.split('\n').slice(1).join('\n');
  t.regex(debugKernelProblems(reader({ dmesg: wrapped, [DEBUG_STATE_FILE]: STATE })).join(), /wrapped/);
  t.regex(debugKernelProblems(reader({ dmesg: DMESG.replace(' log_buf_len=16M', ''), [DEBUG_STATE_FILE]: STATE })).join(), /lacks log_buf_len=16M/);
  t.regex(debugKernelProblems(reader({ dmesg: DMESG, [DEBUG_STATE_FILE]: STATE.replace(/1\n/, '0\n') })).join(), /lockdep was off/);
  t.regex(debugKernelProblems(reader({ dmesg: DMESG, [DEBUG_STATE_FILE]: STATE.replace('disabled: N', 'disabled: Y') })).join(), /DMA-API debugging was off/);
  t.regex(debugKernelProblems(reader({ dmesg: DMESG, [DEBUG_STATE_FILE]: STATE.replace('errors: 0', 'errors: 3') })).join(), /counted 3 errors/);
  t.deepEqual(debugKernelProblems(reader({ dmesg: DMESG })), ['the guest saved no lockdep/DMA-API state']);
});

test('no log at all is left to the guest report', (t) => {
  t.deepEqual(debugKernelProblems(reader({})), []);
});
