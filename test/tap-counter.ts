// Counts TAP 13 results as they stream past, and keeps what a verdict on the run needs: the
// plan (`1..N`), how many result lines there were, and a `Bail out!`.
//
// Directives follow TAP 13: after the description, an unescaped `#` (preceded by whitespace,
// or right after the test number), optional whitespace, then `SKIP` or `TODO` (any case) ending
// at whitespace or the end of the line; a reason may follow. Only `ok … # SKIP` is a skip; a
// `not ok … # SKIP` is a failure (a skipped test cannot fail). A `# TODO` result, ok or not, is
// neither a failure nor a pass: it is counted with the skipped. A title that merely contains
// `# skip` or `# todo` somewhere is not a directive when its test fails, so a failing test can
// never hide behind its own title.
export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

export interface TapLine {
  ok: boolean;
  number: number | null;
  description: string;
  directive: { kind: 'SKIP' | 'TODO'; reason: string } | null;
}

const RESULT = /^(not ok|ok)\b(?:[ \t]+(\d+))?(?:[ \t]+(.*))?$/;

/** Parses one TAP result line, or returns null for any other line. */
export function parseTapLine(line: string): TapLine | null {
  const match = RESULT.exec(line.replace(/\r$/, ''));
  if (!match) return null;
  const ok = match[1] === 'ok';
  const rest = match[3] ?? '';
  // The first unescaped `#` that starts a word ends the description.
  let hash = -1;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '\\') {
      i++;
      continue;
    }
    if (rest[i] === '#' && (i === 0 || /\s/.test(rest[i - 1]!))) {
      hash = i;
      break;
    }
  }
  let description = rest;
  let directive: TapLine['directive'] = null;
  if (hash >= 0) {
    const d = /^#[ \t]*(skip|todo)(?:[ \t]+(.*))?$/i.exec(rest.slice(hash));
    if (d) {
      directive = { kind: d[1]!.toUpperCase() as 'SKIP' | 'TODO', reason: (d[2] ?? '').trim() };
      description = rest.slice(0, hash).trimEnd();
    }
  }
  description = description.replace(/^-[ \t]*/, '');
  return { ok, number: match[2] === undefined ? null : Number(match[2]), description, directive };
}

export class TapCounter {
  readonly counts: Counts = { passed: 0, failed: 0, skipped: 0 };
  readonly failures: string[] = [];
  /** N of the plan line `1..N`, or null if none was seen. */
  plan: number | null = null;
  /** How many plan lines were seen (a second one is a protocol error). */
  plans = 0;
  /** Result lines seen, whatever their outcome. */
  results = 0;
  /** The reason of a `Bail out!`, or null. */
  bailOut: string | null = null;
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

  #line(raw: string): void {
    const line = raw.replace(/\r$/, '');
    const plan = /^1\.\.(\d+)\b/.exec(line);
    if (plan) {
      this.plan = Number(plan[1]);
      this.plans++;
      return;
    }
    const bail = /^Bail out!\s*(.*)$/.exec(line);
    if (bail) {
      this.bailOut = bail[1]!.trim() || 'no reason given';
      return;
    }
    const result = parseTapLine(line);
    if (!result) return;
    this.results++;
    if (result.directive?.kind === 'TODO' || (result.ok && result.directive?.kind === 'SKIP')) this.counts.skipped++;
    else if (result.ok) this.counts.passed++;
    else {
      this.counts.failed++;
      // The whole text after the number: a `# SKIP` on a failure is part of what failed.
      this.failures.push(line.replace(/^not ok[ \t]*\d*[ \t]*(?:-[ \t]*)?/, '') || `test ${result.number ?? this.results}`);
    }
  }
}

export function summaryLine(c: Counts): string {
  return `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ''}`;
}
