// What in the guest's kernel log fails a run.
const BAD_LINE = /WARNING:|BUG:|Oops|general protection|refcount_t/;

export function kernelLogProblems(dmesg: string): string[] {
  return dmesg.split('\n').filter((line) => BAD_LINE.test(line));
}
