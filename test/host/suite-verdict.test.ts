// The suite's verdict on a run: a run that did not really run is never green.
import test from 'ava';
import { runnerErrorCheck, summarize, tapRunChecks, vmRunChecks, type TapRunFacts } from '../suite-verdict.js';
import { TapCounter } from '../tap-counter.js';

function facts(tap: string, exitCode: number | null): TapRunFacts {
  const c = new TapCounter();
  c.feed(tap);
  c.end();
  return { exitCode, counts: c.counts, plan: c.plan, plans: c.plans, results: c.results, bailOut: c.bailOut };
}

const failed = (checks: { name: string; ok: boolean }[]): string[] => checks.filter((c) => !c.ok).map((c) => c.name);
const CLEAN_TAP = 'TAP version 13\nok 1 - a\nok 2 - b # SKIP\n\n1..2\n# tests 2\n';

test('a clean run passes every check', (t) => {
  t.deepEqual(failed(tapRunChecks(facts(CLEAN_TAP, 0))), []);
});

test('a non-zero exit fails the run even when no test line failed', (t) => {
  t.deepEqual(failed(tapRunChecks(facts(CLEAN_TAP, 1))), ['the test command exits 0']);
  t.deepEqual(failed(tapRunChecks(facts(CLEAN_TAP, null))), ['the test command exits 0']);
});

test('ava finding no files: an empty plan, no results, exit 1', (t) => {
  // What ava 7 prints for `--tap 'test/vm/nothing-*.test.ts'`, exactly.
  const tap = 'TAP version 13\n\n1..0\n# tests 0\n# pass 0\n# fail 0\n\n';
  t.deepEqual(failed(tapRunChecks(facts(tap, 1))), ['the test command exits 0', 'at least one test ran']);
  t.deepEqual(failed(tapRunChecks(facts('TAP version 13\n', 1))), ['the test command exits 0', 'the TAP output has one plan (1..N)', 'the plan matches the results', 'at least one test ran']);
});

test('a file that throws at import: failing lines outside the plan, exit 1', (t) => {
  // What ava 7 prints when the only file throws at import (its YAML block shortened).
  const tap = 'TAP version 13\nnot ok 1 - Error: broken at import\n  ---\n    name: Error\n  ...\nnot ok 2 - test/vm/broken-import.test.ts exited with a non-zero exit code: 1\n\n1..0\n# tests 0\n# pass 0\n# fail 2\n';
  t.deepEqual(failed(tapRunChecks(facts(tap, 1))), ['the test command exits 0', 'the plan matches the results']);
  // Beside files that pass, the crash still shows: the plan counts only real tests.
  const mixed = 'TAP version 13\nok 1 - api › a\nnot ok 2 - broken.test.ts exited with a non-zero exit code: 1\n\n1..1\n';
  t.deepEqual(failed(tapRunChecks(facts(mixed, 1))), ['the test command exits 0', 'the plan matches the results']);
});

test('a crash after some results (no plan), a Bail out!, or two plans fail the run', (t) => {
  t.deepEqual(failed(tapRunChecks(facts('TAP version 13\nok 1 - a\nok 2 - b\n', null))), ['the test command exits 0', 'the TAP output has one plan (1..N)', 'the plan matches the results']);
  t.deepEqual(failed(tapRunChecks(facts('1..2\nok 1 - a\nBail out! out of memory\nok 2 - b\n', 0))), ['the plan matches the results']);
  t.deepEqual(failed(tapRunChecks(facts('1..1\nok 1 - a\n1..1\n', 0))), ['the TAP output has one plan (1..N)']);
});

test('a run whose every test was skipped ran zero tests', (t) => {
  t.deepEqual(failed(tapRunChecks(facts('1..2\nok 1 - a # SKIP\nnot ok 2 - b # TODO\n', 0))), ['at least one test ran']);
  t.deepEqual(failed(tapRunChecks(facts('1..0\n', 0))), ['at least one test ran']);
});

test('a VM run is judged on the guest finishing, its kernel log and the unload', (t) => {
  const clean = { commandStatus: 0, guestCompleted: true, kernelLogProblems: [], moduleUnloadError: null };
  t.deepEqual(failed(vmRunChecks(clean)), []);
  t.deepEqual(failed(vmRunChecks({ commandStatus: null, guestCompleted: false, kernelLogProblems: ['the kernel log was never saved'], moduleUnloadError: 'never finished' })), [
    'the guest ran the command to its end',
    'the guest finished (kernel log and unload saved)',
    'the kernel log is clean',
    'the module unloads afterwards',
  ]);
  const warned = vmRunChecks({ ...clean, kernelLogProblems: ['WARNING: a', 'BUG: b', 'c', 'd', 'e'] });
  t.is(warned.find((c) => !c.ok)!.detail, 'WARNING: a | BUG: b | c | … 2 more');
});

test('a debug-kernel run also needs the debug checkers on over the whole log; other runs have no such check', (t) => {
  const clean = { commandStatus: 0, guestCompleted: true, kernelLogProblems: [], moduleUnloadError: null };
  const name = 'lockdep and DMA-API debugging stayed on over the whole log';
  t.false(vmRunChecks({ ...clean, debugProblems: null }).some((c) => c.name === name));
  t.true(vmRunChecks({ ...clean, debugProblems: [] }).find((c) => c.name === name)!.ok);
  t.deepEqual(failed(vmRunChecks({ ...clean, debugProblems: ['lockdep was off at the end'] })), [name]);
});

test('every run appears in the summary, also one whose runner threw, and any failure turns it red', (t) => {
  const s = summarize([
    { scope: 'host (node 20)', counts: { passed: 10, failed: 0, skipped: 1 }, failures: [], checks: tapRunChecks(facts(CLEAN_TAP, 0)) },
    { scope: 'vm 6.1 (node 20)', counts: { passed: 0, failed: 0, skipped: 0 }, failures: [], checks: [runnerErrorCheck(new Error('kernel 6.1 is not installed'))] },
    { scope: 'vm 6.12 (node 20)', counts: { passed: 3, failed: 1, skipped: 0 }, failures: ['api › x'], checks: [] },
  ]);
  t.deepEqual(s.lines, ['host (node 20): 14 passed, 0 failed, 1 skipped', 'vm 6.1 (node 20): 0 passed, 1 failed', 'vm 6.12 (node 20): 3 passed, 1 failed']);
  t.deepEqual(s.counts, { passed: 17, failed: 2, skipped: 1 });
  t.is(s.line, '17 passed, 2 failed, 1 skipped');
  t.deepEqual(s.failures, ['vm 6.1 (node 20): the runner completes (kernel 6.1 is not installed)', 'vm 6.12 (node 20): api › x']);
  t.is(summarize([]).line, '0 passed, 1 failed', 'no run at all is not green');
});
