// The whole test suite: host tests, then the VM suite on each kernel (6.1: our module alone;
// 6.12: ours beside the in-tree udmabuf). A clean kernel log and a module that unloads are
// counted as results of each VM run. Ends with one `N passed, N failed` line, also written to
// test-results/summary.txt.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInVm } from '../vm/run.js';
import { PROJECT_ROOT } from '../vm/paths.js';
import { summaryLine, TapCounter, type Counts } from './tap-counter.js';

const AVA = join(PROJECT_ROOT, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
const KERNELS = (process.env.GUEST_DMABUF_TEST_KERNELS ?? '6.1,6.12').split(',').filter(Boolean);
const VM_GLOB = process.env.GUEST_DMABUF_VM_TESTS ?? 'test/vm/**/*.test.ts';

const total: Counts = { passed: 0, failed: 0, skipped: 0 };
const failures: string[] = [];

function add(scope: string, counter: TapCounter): void {
  const c = counter.end();
  total.passed += c.passed;
  total.failed += c.failed;
  total.skipped += c.skipped;
  failures.push(...counter.failures.map((f) => `${scope}: ${f}`));
  console.error(`== ${scope}: ${summaryLine(c)}`);
}

/** One pass/fail result that is not a TAP line: how the run itself went. */
function check(scope: string, name: string, ok: boolean): void {
  if (ok) total.passed++;
  else {
    total.failed++;
    failures.push(`${scope}: ${name}`);
  }
  console.error(`== ${scope}: ${ok ? 'ok' : 'FAILED'}: ${name}`);
}

async function hostSuite(): Promise<void> {
  console.error('== host tests');
  const counter = new TapCounter();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [AVA, '--tap', 'test/host/**/*.test.ts'], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      counter.feed(chunk.toString());
    });
    child.on('close', resolve);
  });
  add('host', counter);
  if (code !== 0 && counter.counts.failed === 0) check('host', 'ava exits cleanly', false);
}

async function vmSuite(kernel: string): Promise<void> {
  console.error(`== VM suite on ${kernel}`);
  const counter = new TapCounter();
  const result = await runInVm(['node', AVA, '--serial', '--concurrency=1', '--tap', VM_GLOB], {
    kernel,
    mem: '4G',
    cwd: PROJECT_ROOT,
    output: (text) => {
      process.stdout.write(text);
      counter.feed(text);
    },
  });
  const scope = `vm ${kernel}`;
  add(scope, counter);
  check(scope, 'the suite ran to completion', result.commandStatus !== null);
  check(scope, 'the kernel log has no WARNING/BUG/Oops lines', result.kernelLogProblems.length === 0);
  check(scope, 'the module unloads afterwards', result.moduleUnloadError === null);
}

await hostSuite();
for (const kernel of KERNELS) await vmSuite(kernel);

const line = summaryLine(total);
mkdirSync(join(PROJECT_ROOT, 'test-results'), { recursive: true });
writeFileSync(join(PROJECT_ROOT, 'test-results', 'summary.txt'), `${line}\n`);
if (failures.length) console.error(`failed:\n${failures.map((f) => `  ${f}`).join('\n')}`);
console.log(line);
process.exit(total.failed === 0 ? 0 : 1);
