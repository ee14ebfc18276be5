// What in the guest's kernel log fails a run.
// The debug kernel's checkers (vm/debug-kernel.ts) report through WARNING:/BUG: lines too (KASAN,
// lockdep, might_sleep); these three do not: UBSAN, kmemleak's report (appended to the log by the
// guest init), and DMA-API debugging's own lines (its two start-up lines are not findings).
const BAD_LINE = /WARNING:|BUG:|Oops|general protection|refcount_t|UBSAN:|unreferenced object|DMA-API: (?!preallocated \d+ debug entries|debugging enabled by kernel config)/;

export function kernelLogProblems(dmesg: string): string[] {
  return dmesg.split('\n').filter((line) => BAD_LINE.test(line));
}
