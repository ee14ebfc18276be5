// What in the guest's kernel log fails a run. Each pattern is named, so a report can say why a
// line was flagged. Sanitizers and debug checkers report through these lines when the kernel
// has them enabled (KASAN, lockdep, kmemleak, DMA-API debugging, might_sleep checks).
export interface KernelLogPattern {
  name: string;
  pattern: RegExp;
}

export const KERNEL_LOG_PATTERNS: readonly KernelLogPattern[] = [
  { name: 'warning', pattern: /WARNING:/ },
  { name: 'bug', pattern: /BUG:/ },
  { name: 'oops', pattern: /Oops/ },
  { name: 'general protection', pattern: /general protection/ },
  { name: 'refcount', pattern: /refcount_t/ },
  { name: 'KASAN', pattern: /KASAN:/ },
  { name: 'lockdep: circular locking', pattern: /possible circular locking/ },
  { name: 'lockdep: inconsistent lock state', pattern: /inconsistent lock state/ },
  { name: 'lockdep: suspicious RCU usage', pattern: /suspicious RCU usage/ },
  { name: 'kmemleak', pattern: /unreferenced object|kmemleak: \d+ new suspected memory leaks/ },
  { name: 'DMA-API', pattern: /DMA-API: / },
  { name: 'sleeping in atomic context', pattern: /BUG: sleeping function/ },
  { name: 'UBSAN', pattern: /UBSAN:/ },
];

/** dma-debug's own start-up lines: informational, not a finding. */
const HARMLESS = /DMA-API: (preallocated \d+ debug entries|debugging enabled by kernel config)/;

export interface KernelLogFinding {
  line: string;
  /** Names of every pattern the line matches. */
  patterns: string[];
}

export function kernelLogFindings(dmesg: string): KernelLogFinding[] {
  const findings: KernelLogFinding[] = [];
  for (const line of dmesg.split('\n')) {
    if (HARMLESS.test(line)) continue;
    const patterns = KERNEL_LOG_PATTERNS.filter((p) => p.pattern.test(line)).map((p) => p.name);
    if (patterns.length) findings.push({ line, patterns });
  }
  return findings;
}

/** The lines of the log that fail a run. */
export function kernelLogProblems(dmesg: string): string[] {
  return kernelLogFindings(dmesg).map((f) => f.line);
}
