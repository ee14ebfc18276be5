// The systematic fault-injection sweep, for the debug kernel only (`--kernel debug`): every way
// in (UDMABUF_CREATE on written, unwritten and hugetlb memfds, CREATE_LIST, CREATE_NOTIFY, a vgem
// PRIME import = attach + map_dma_buf, mmap) is run with its 1st, 2nd, … allocation or user copy
// failing (/proc/thread-self/fail-nth over failslab, fail_page_alloc and fail_usercopy) until it
// passes no injection point. After each step: the call failed with ENOMEM/EFAULT or succeeded,
// no buffer of ours is left in debugfs, no memfd/dma-buf fd leaked, the pinned-memory charge is
// back to zero. At the end kmemleak finds nothing of ours; the runner then checks the module
// unloads and the kernel log (KASAN, lockdep, DMA-API) is clean.
//
// This file lives outside test/vm so the default VM glob never picks it up; on a kernel without
// fault injection it fails rather than skipping. FAIL_NTH_SCENARIOS=create,mmap picks scenarios. Run:
//   node dist/vm/cli.js --kernel debug --mem 4G -- node node_modules/ava/entrypoints/cli.mjs --serial --tap test/vm-debug/fail-nth.test.ts
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ourBuffers } from '../vm/helpers/dmabuf-debugfs.js';
import { freeHugePages, reserveHugePages } from '../vm/helpers/memory.js';
import { LIMIT_KIB, SCENARIOS, type Scenario, type StepReport, type SummaryReport } from './fixtures/fail-nth-shared.js';

const WORKER = fileURLToPath(new URL('./fixtures/fail-nth-worker.js', import.meta.url));
const DEBUGFS = '/sys/kernel/debug';
const KMEMLEAK = `${DEBUGFS}/kmemleak`;

const missing = ['/proc/thread-self/fail-nth', `${DEBUGFS}/failslab`, `${DEBUGFS}/fail_page_alloc`, KMEMLEAK].filter((p) => !existsSync(p));
if (missing.length) {
  test('the kernel has fault injection and kmemleak (run this file with --kernel debug)', (t) => {
    t.fail(`this kernel has no ${missing.join(', ')}: the fail-nth sweep needs the debug kernel (guest-dmabuf-vm --kernel debug)`);
  });
} else {
  registerSweep();
}

function registerSweep(): void {
  // fail-nth bypasses probability and task filters, but failslab and fail_page_alloc still skip
  // allocations that may sleep (GFP_KERNEL) and order-0 pages unless told otherwise.
  const settings: [string, string][] = [
    ['failslab/ignore-gfp-wait', 'N'],
    ['fail_page_alloc/ignore-gfp-wait', 'N'],
    ['fail_page_alloc/ignore-gfp-highmem', 'N'],
    ['fail_page_alloc/min-order', '0'],
    ['failslab/verbose', '2'],
    ['fail_page_alloc/verbose', '2'],
    ['fail_usercopy/verbose', '2'],
    ['failslab/verbose_ratelimit_burst', '100000'],
    ['fail_page_alloc/verbose_ratelimit_burst', '100000'],
    ['fail_usercopy/verbose_ratelimit_burst', '100000'],
  ];
  const saved: [string, string][] = [];
  test.before(() => {
    for (const [file, value] of settings) {
      const path = `${DEBUGFS}/${file}`;
      if (!existsSync(path)) continue;
      saved.push([path, readFileSync(path, 'utf8').trim()]);
      writeFileSync(path, value);
    }
    if (freeHugePages() < 2) reserveHugePages(2);
  });
  test.after.always(() => {
    for (const [path, value] of saved) writeFileSync(path, value);
  });

  const totals: { scenario: Scenario; steps: number; injected: number; sites: number }[] = [];
  const only = process.env.FAIL_NTH_SCENARIOS?.split(',').filter(Boolean);
  for (const scenario of SCENARIOS.filter((x) => !only || only.includes(x))) {
    test.serial(`fail-nth sweep: ${scenario}`, async (t) => {
      const { steps, summary, status } = await runWorker(scenario);
      t.is(status, 0, 'the worker exits cleanly');
      t.truthy(summary, 'the worker reached the end of the sweep');
      const bad = steps.filter((s) => s.problems.length > 0);
      for (const s of bad) t.log(`N=${s.n} ${s.result}${s.fired ? ` at ${s.site || '(silent site)'}` : ''}: ${s.problems.join('; ')}`);
      t.deepEqual(bad.map((s) => s.n), [], 'every step is clean');
      const last = steps[steps.length - 1];
      t.true(last !== undefined && last.result === 'OK' && !last.fired, 'the sweep ends with a call that passes every injection point');
      t.true(steps.some((s) => s.fired), 'at least one failure was injected');
      const injected = steps.filter((s) => s.fired).length;
      t.log(`${scenario}: ${steps.length} steps, ${injected} injected; errnos ${JSON.stringify(summary?.errnos)}`);
      for (const site of summary?.sites ?? []) t.log(`  site ${site}`);
      totals.push({ scenario, steps: steps.length, injected, sites: summary?.sites.length ?? 0 });
    });
  }

  test.serial('no buffer of ours is left, and kmemleak finds nothing of ours', (t) => {
    t.deepEqual(ourBuffers(), []);
    writeFileSync(KMEMLEAK, 'scan');
    const report = readFileSync(KMEMLEAK, 'utf8');
    const records = report.split(/(?=^unreferenced object)/m).filter((r) => r.startsWith('unreferenced object'));
    const mine = records.filter((r) => /guest_udmabuf|udmabuf|dma_buf|dma-buf/.test(r));
    if (records.length) t.log(`kmemleak: ${records.length} unreferenced object(s), ${mine.length} touching dma-buf code:\n${report}`);
    t.deepEqual(mine, []);
    t.log(`covered: ${totals.map((x) => `${x.scenario} ${x.injected}/${x.steps} (${x.sites} sites)`).join(', ')}`);
  });
}

async function runWorker(scenario: Scenario): Promise<{ steps: StepReport[]; summary?: SummaryReport; status: number | null }> {
  // Root without CAP_IPC_LOCK, with a small RLIMIT_MEMLOCK: pinned pages are charged. --jitless:
  // no code-space mprotect on the armed thread.
  const child = spawn('sh', ['-c', `ulimit -l ${LIMIT_KIB} && exec "$@"`, 'sh', 'setpriv', '--bounding-set=-ipc_lock', '--', process.execPath, '--jitless', WORKER, scenario], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const steps: StepReport[] = [];
  let summary: SummaryReport | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    const message = JSON.parse(line) as StepReport | SummaryReport;
    if ('step' in message) steps.push(message);
    else summary = message;
  }
  return { steps, summary, status: await exited };
}
