import test from 'ava';
import { summaryLine, TapCounter } from '../tap-counter.js';

test('counts ok, not ok and skips across chunk boundaries', (t) => {
  const c = new TapCounter();
  c.feed('TAP version 13\nok 1 - a\nnot o');
  c.feed('k 2 - b\nok 3 - c # SKIP reason\nok 4 - d');
  const counts = c.end();
  t.deepEqual(counts, { passed: 2, failed: 1, skipped: 1 });
  t.deepEqual(c.failures, ['b']);
  t.is(summaryLine(counts), '2 passed, 1 failed, 1 skipped');
});
