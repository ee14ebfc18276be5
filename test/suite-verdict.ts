// The verdict on each run of the suite (host ava, or ava inside a VM), as pass/fail checks
// that count in the summary beside the tests themselves. A run is green only when the test
// command exited 0, printed exactly one TAP plan, the plan matches the results it printed, and
// at least one test really ran; a VM run also needs a guest that finished, a clean kernel log
// and a module that unloaded. A runner that throws is a failed run, not a missing one.
import { summaryLine, type Counts } from './tap-counter.js';

export interface Check {
  name: string;
  ok: boolean;
  /** What was seen, for the report. */
  detail: string;
}

/** What a TAP-producing test command did. */
export interface TapRunFacts {
  /** The command's exit status; null when it never finished (killed, VM died). */
  exitCode: number | null;
  counts: Counts;
  /** N of `1..N`, or null. */
  plan: number | null;
  /** How many plan lines appeared. */
  plans: number;
  /** Result lines (ok / not ok) seen. */
  results: number;
  bailOut: string | null;
}

export function tapRunChecks(f: TapRunFacts): Check[] {
  const ran = f.counts.passed + f.counts.failed;
  return [
    { name: 'the test command exits 0', ok: f.exitCode === 0, detail: f.exitCode === null ? 'it never finished' : `exit status ${f.exitCode}` },
    { name: 'the TAP output has one plan (1..N)', ok: f.plans === 1, detail: f.plans === 0 ? 'no plan line' : `${f.plans} plan lines` },
    {
      name: 'the plan matches the results',
      ok: f.plan !== null && f.plan === f.results && f.bailOut === null,
      detail: `plan ${f.plan === null ? 'missing' : `1..${f.plan}`}, ${f.results} results${f.bailOut === null ? '' : `, Bail out! ${f.bailOut}`}`,
    },
    { name: 'at least one test ran', ok: ran > 0, detail: `${ran} ran, ${f.counts.skipped} skipped` },
  ];
}

/** What the VM runner reported about the guest around the command. */
export interface VmRunFacts {
  commandStatus: number | null;
  guestCompleted: boolean;
  kernelLogProblems: readonly string[];
  moduleUnloadError: string | null;
  /** Debug kernel only (null or absent elsewhere): the checkers stayed on over a whole log. */
  debugProblems?: readonly string[] | null;
}

export function vmRunChecks(r: VmRunFacts): Check[] {
  const debug: Check[] =
    r.debugProblems == null
      ? []
      : [{ name: 'lockdep and DMA-API debugging stayed on over the whole log', ok: r.debugProblems.length === 0, detail: r.debugProblems.length ? r.debugProblems.join(' | ') : 'debug_locks 1, dma-debug on with 0 errors, log from boot' }];
  const shown = r.kernelLogProblems.slice(0, 3).join(' | ') + (r.kernelLogProblems.length > 3 ? ` | … ${r.kernelLogProblems.length - 3} more` : '');
  return [
    { name: 'the guest ran the command to its end', ok: r.commandStatus !== null, detail: r.commandStatus === null ? 'the VM died or timed out first' : `status ${r.commandStatus}` },
    { name: 'the guest finished (kernel log and unload saved)', ok: r.guestCompleted, detail: r.guestCompleted ? 'completion marker present' : 'no completion marker' },
    { name: 'the kernel log is clean', ok: r.kernelLogProblems.length === 0, detail: r.kernelLogProblems.length ? shown : 'no flagged lines' },
    { name: 'the module unloads afterwards', ok: r.moduleUnloadError === null, detail: r.moduleUnloadError ?? 'unloaded' },
    ...debug,
  ];
}

/** The one check a run gets when its runner threw before it could report anything else. */
export function runnerErrorCheck(err: unknown): Check {
  return { name: 'the runner completes', ok: false, detail: err instanceof Error ? err.message : String(err) };
}

/** One run's results: its TAP counts plus its checks. */
export interface ScopeResult {
  scope: string;
  counts: Counts;
  failures: readonly string[];
  checks: readonly Check[];
}

export interface Summary {
  counts: Counts;
  failures: string[];
  /** One line per scope, every scope listed whatever happened to it. */
  lines: string[];
  line: string;
}

export function summarize(scopes: readonly ScopeResult[]): Summary {
  const counts: Counts = { passed: 0, failed: 0, skipped: 0 };
  const failures: string[] = [];
  const lines: string[] = [];
  for (const s of scopes) {
    const own: Counts = { ...s.counts };
    for (const c of s.checks) {
      if (c.ok) own.passed++;
      else {
        own.failed++;
        failures.push(`${s.scope}: ${c.name} (${c.detail})`);
      }
    }
    failures.push(...s.failures.map((f) => `${s.scope}: ${f}`));
    counts.passed += own.passed;
    counts.failed += own.failed;
    counts.skipped += own.skipped;
    lines.push(`${s.scope}: ${summaryLine(own)}`);
  }
  if (scopes.length === 0) {
    counts.failed++;
    failures.push('no run took place');
  }
  return { counts, failures, lines, line: summaryLine(counts) };
}
