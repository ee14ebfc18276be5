// Each suite file proves it gives back what it took: Shmem, huge pages and fds return to
// where they were when the file started.
import type { TestFn } from 'ava';
import { freeHugePages, openFdCount, shmemKb } from './memory.js';

/** Slack for the guest's own tmpfs use (node, ava) while a file runs. */
const SHMEM_SLACK_KB = 1024;

/**
 * Records the baseline before the file's tests; call the returned function after the last
 * test to register the check, which then runs last (every VM test is serial).
 */
export function baselineGuard(test: TestFn): () => void {
  let shmem = 0;
  let hugeFree = 0;
  let fds = 0;
  test.before(() => {
    shmem = shmemKb();
    hugeFree = freeHugePages();
    fds = openFdCount();
  });
  return () => test.serial('memory and fds return to baseline', (t) => {
    t.true(shmemKb() <= shmem + SHMEM_SLACK_KB, `Shmem ${shmemKb()} kB, baseline ${shmem} kB`);
    t.is(freeHugePages(), hugeFree, 'free huge pages');
    t.is(openFdCount(), fds, 'open memfd and dma-buf fds');
  });
}
