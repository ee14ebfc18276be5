// Counts TAP results as they stream past: `ok`, `not ok`, and `# SKIP`/`# TODO` directives.
export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

export class TapCounter {
  readonly counts: Counts = { passed: 0, failed: 0, skipped: 0 };
  readonly failures: string[] = [];
  #partial = '';

  /** Feeds a chunk of output; whole lines are counted. */
  feed(text: string): void {
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) this.#line(line);
  }

  end(): Counts {
    if (this.#partial) this.#line(this.#partial);
    this.#partial = '';
    return this.counts;
  }

  #line(line: string): void {
    const match = /^(not ok|ok) \d+ (?:- )?(.*)$/.exec(line);
    if (!match) return;
    if (/#\s*(SKIP|TODO)\b/i.test(match[2]!)) this.counts.skipped++;
    else if (match[1] === 'ok') this.counts.passed++;
    else {
      this.counts.failed++;
      this.failures.push(match[2]!);
    }
  }
}

export function summaryLine(c: Counts): string {
  return `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ''}`;
}
