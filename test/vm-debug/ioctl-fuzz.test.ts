// The bounded ioctl fuzzer (issue 11): a fixed seed and a fixed count of calls (200,000 by
// default, FUZZ_CALLS to change; FUZZ_SEED to replay another) from several worker threads
// racing each other: random and mutated UDMABUF_CREATE / CREATE_LIST / CREATE_NOTIFY /
// GET_FEATURES arguments, bad pointers, unknown ioctl numbers, dma-buf ioctls (SYNC, SET_NAME,
// EXPORT/IMPORT_SYNC_FILE), mmaps read and written, PRIME imports into vgem, and closes, seals,
// hole punches, truncates and writes on the memfds underneath (fixtures/ioctl-fuzz-worker.ts).
// Afterwards: no fd leaked, no buffer left in debugfs, the pinned charge back to zero; the VM
// runner then checks the kernel log (KASAN, lockdep, DMA-API, kmemleak, WARN/BUG) and the unload.
//
// It needs no debug feature, so it runs on any kernel of the runner; the debug kernel is where
// it finds what the stock ones cannot show. Run:
//   node dist/vm/cli.js --kernel debug --mem 4G -- node node_modules/ava/entrypoints/cli.mjs --serial --tap test/vm-debug/ioctl-fuzz.test.ts
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ourBuffers } from '../vm/helpers/dmabuf-debugfs.js';
import { freeHugePages, reserveHugePages } from '../vm/helpers/memory.js';
import { LIMIT_KIB, runSize, type ChildReport } from './fixtures/ioctl-fuzz-shared.js';

const CHILD = fileURLToPath(new URL('./fixtures/ioctl-fuzz-child.js', import.meta.url));
// Shmem transparent huge pages on, so some memfd ranges are backed by 2 MiB folios.
const THP_SHMEM = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';
let savedThp: string | undefined;

test.before(() => {
  if (freeHugePages() < 8) reserveHugePages(8);
  if (existsSync(THP_SHMEM)) {
    savedThp = /\[(\w+)\]/.exec(readFileSync(THP_SHMEM, 'utf8'))?.[1];
    writeFileSync(THP_SHMEM, 'always');
  }
});
test.after.always(() => {
  if (savedThp) writeFileSync(THP_SHMEM, savedThp);
});

test.serial('ioctl fuzzer: a fixed seed and count, then nothing leaked', async (t) => {
  const { calls, seed, threads } = runSize(process.env);
  t.log(`seed 0x${seed.toString(16)} (FUZZ_SEED=${seed}), ${calls} calls, ${threads} threads`);
  const { report, status, signal } = await runChild();
  t.is(signal, null, 'the fuzzing process was not killed by a signal (SIGBUS/SIGSEGV on a mapping)');
  t.is(status, 0, 'the fuzzing process exits cleanly');
  if (!report) return void t.fail('no report from the fuzzing process');
  t.log(`${report.calls} calls in ${report.seconds.toFixed(1)} s: ${Math.round(report.calls / report.seconds)} calls/s; ${report.touched} bytes touched through mappings`);
  for (const [op, row] of Object.entries(report.histogram).sort()) {
    const cells = Object.entries(row).sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code} ${n}`);
    t.log(`  ${op.padEnd(17)} ${cells.join(', ')}`);
  }
  t.log(`findings: ${report.findings.length ? report.findings.join('; ') : 'none'}`);
  t.is(report.calls, calls, 'every call was made');
  t.deepEqual(report.findings, [], 'no result the ABI rules out');
  t.deepEqual(report.problems, [], 'no fd, buffer or charge left after the run');
  t.deepEqual(ourBuffers(), [], 'no buffer of ours left at all');
});

async function runChild(): Promise<{ report?: ChildReport; status: number | null; signal: NodeJS.Signals | null }> {
  // Root without CAP_IPC_LOCK and with RLIMIT_MEMLOCK set: the accounting path runs.
  const child = spawn('sh', ['-c', `ulimit -l ${LIMIT_KIB} && exec "$@"`, 'sh', 'setpriv', '--bounding-set=-ipc_lock', '--', process.execPath, CHILD], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [status, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (code, sig) => resolve([code, sig])));
  const line = out.trim().split('\n').pop();
  return { report: line ? (JSON.parse(line) as ChildReport) : undefined, status, signal };
}
