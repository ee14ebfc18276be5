// Medians and the printed table every benchmark uses: figures from one run, ratios against a
// reference measured in the same run.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const CLK_TCK = 100; // USER_HZ on Linux x86-64

/** utime + stime of `pid`, in ms (10 ms resolution). */
export function cpuMs(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
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
