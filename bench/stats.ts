// Medians and the printed table every benchmark uses: figures from one run, ratios against a
// reference measured in the same run.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const CLK_TCK = 100; // USER_HZ on Linux x86-64

/** utime + stime of `pid`, in ms (10 ms resolution). */
export function cpuMs(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/**
 * Time `pid`'s live threads have run, in ms, from the scheduler's own clock
 * (/proc/<pid>/task/<tid>/schedstat, nanoseconds): exact, where utime and stime may be sampled
 * at the tick, which charges a process that wakes briefly and often by chance.
 */
export function runMs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread exited meanwhile
    }
  }
  return ns / 1e6;
}

/** Waits until the processes have used no CPU for `quietMs` (they have worked off what the guest queued). */
export async function idle(pids: number | readonly number[], quietMs = 1000, timeoutMs = 60_000): Promise<void> {
  const all = typeof pids === 'number' ? [pids] : pids;
  const used = (): number => all.reduce((sum, pid) => sum + cpuMs(pid), 0);
  const deadline = performance.now() + timeoutMs;
  let last = used();
  let since = performance.now();
  while (performance.now() - since < quietMs) {
    if (performance.now() > deadline) throw new Error(`process${all.length > 1 ? 'es' : ''} ${all.join(', ')} never went idle`);
    await sleep(100);
    const now = used();
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
}

/** CPU ms per thread of `pid`, by `tid comm` (for BENCH_VERBOSE: where the back end's time goes). */
export function threadCpu(pid: number): Map<string, number> {
  const threads = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      threads.set(`${tid} ${comm} user`, (Number(fields[11]) * 1000) / CLK_TCK);
      threads.set(`${tid} ${comm} system`, (Number(fields[12]) * 1000) / CLK_TCK);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return threads;
}

/**
 * Where a process's CPU went between two threadCpu samples: ms by `user|system comm`, threads
 * of one kind together (llvmpipe-0, llvmpipe-1 … as llvmpipe-*), largest first.
 */
export function threadCpuDelta(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): [string, number][] {
  const kinds = new Map<string, number>();
  for (const [name, ms] of after) {
    const [, comm, mode] = /^\d+ (.*) (user|system)$/.exec(name) ?? [];
    const kind = `${mode} ${comm!.replace(/\d+$/, '*')}`;
    kinds.set(kind, (kinds.get(kind) ?? 0) + ms - (before.get(name) ?? 0));
  }
  return [...kinds].filter(([, ms]) => ms > 0).sort((a, b) => b[1] - a[1]);
}

/** Nanoseconds taken by `fn`. */
export function timeNs(fn: () => void): number {
  const started = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - started);
}

export function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function formatNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} us`;
  return `${ns.toFixed(0)} ns`;
}

/** Prints rows as aligned columns. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}
