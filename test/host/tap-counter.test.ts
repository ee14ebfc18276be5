import test from 'ava';
import { parseTapLine, summaryLine, TapCounter } from '../tap-counter.js';

function count(text: string): TapCounter {
  const c = new TapCounter();
  c.feed(text);
  c.end();
  return c;
}

test('counts ok, not ok and skips across chunk boundaries', (t) => {
  const c = new TapCounter();
  c.feed('TAP version 13\nok 1 - a\nnot o');
  c.feed('k 2 - b\nok 3 - c # SKIP reason\nok 4 - d\n\n1..');
  c.feed('4\n');
  const counts = c.end();
  t.deepEqual(counts, { passed: 2, failed: 1, skipped: 1 });
  t.deepEqual(c.failures, ['b']);
  t.is(c.plan, 4);
  t.is(c.results, 4);
  t.is(summaryLine(counts), '2 passed, 1 failed, 1 skipped');
});

test('a failing test whose title contains "# skip" or "# todo" is a failure', (t) => {
  const c = count('not ok 1 - refuses # skip markers in names\nnot ok 2 - vm: hazards › a # SKIP inside\nnot ok 3 - x # SKIP\n');
  t.deepEqual(c.counts, { passed: 0, failed: 3, skipped: 0 });
  t.deepEqual(c.failures, ['refuses # skip markers in names', 'vm: hazards › a # SKIP inside', 'x # SKIP']);
});

test('only a real directive makes a result a skip or a todo', (t) => {
  const c = count(
    [
      'ok 1 - skipped # SKIP',
      'ok 2 - skipped with a reason #skip no vgem here',
      'not ok 3 - not done yet # TODO',
      'not ok 4 - not done yet either # todo: later', // "todo:" is not the word TODO
      'ok 5 - todo that passed # TODO',
      'ok 6 - a title with an escaped \\# SKIP',
      'ok 7 - glued#SKIP',
      'ok 8 - skipping # SKIPPED', // not the word SKIP
      'ok 9 # skip',
    ].join('\n'),
  );
  t.deepEqual(c.counts, { passed: 3, failed: 1, skipped: 5 });
  t.deepEqual(c.failures, ['not done yet either # todo: later']);
});

test('parseTapLine splits number, description and directive', (t) => {
  t.deepEqual(parseTapLine('ok 12 - host › a title # SKIP no device'), { ok: true, number: 12, description: 'host › a title', directive: { kind: 'SKIP', reason: 'no device' } });
  t.deepEqual(parseTapLine('not ok 3 title'), { ok: false, number: 3, description: 'title', directive: null });
  t.deepEqual(parseTapLine('not ok'), { ok: false, number: null, description: '', directive: null });
  t.is(parseTapLine('# ok 1 - a comment'), null);
  t.is(parseTapLine('okay 1'), null);
  t.is(parseTapLine('    ok 1 - an indented subtest line'), null);
});

test('plans, result counts and bail-outs are recorded', (t) => {
  const none = count('TAP version 13\n# no tests\n');
  t.is(none.plan, null);
  t.is(none.results, 0);
  const bailed = count('TAP version 13\n1..5\nok 1 - a\nBail out! Test file crashed\n');
  t.is(bailed.plan, 5);
  t.is(bailed.results, 1);
  t.is(bailed.bailOut, 'Test file crashed');
});
