// What a run on the debug kernel must show besides a clean kernel log, from the files the guest
// init leaves on the control share. A clean log proves little if lockdep or DMA-API debugging
// switched themselves off part way (lockdep does after its first report or when it runs out of
// entries; dma-debug when it runs out of entries), or if the ring buffer wrapped and the runner
// saw only its tail. So: the log still starts at boot ("Linux version"), the command line has
// the 16 MiB log buffer, lockdep's debug_locks is still 1, and dma-debug is on with no errors.
export const DEBUG_STATE_FILE = 'debug-state';
export const LOG_BUF_ARG = 'log_buf_len=16M';

/** Problems of a debug-kernel run; empty when the checkers stayed on over a whole log. */
export function debugKernelProblems(read: (name: string) => string | null): string[] {
  const dmesg = read('dmesg');
  if (dmesg === null) return []; // the missing log is guestReport's finding
  const problems: string[] = [];
  if (!/Linux version \d/.test(dmesg)) problems.push('the kernel log wrapped: its start ("Linux version") is missing, so only its tail was checked');
  const cmdline = /Kernel command line: (.*)/.exec(dmesg)?.[1];
  if (cmdline !== undefined && !cmdline.split(/\s+/).includes(LOG_BUF_ARG)) problems.push(`the kernel command line lacks ${LOG_BUF_ARG}: ${cmdline}`);
  const state = read(DEBUG_STATE_FILE);
  if (state === null) return [...problems, 'the guest saved no lockdep/DMA-API state'];
  const locks = /debug_locks:\s*(\d+)/.exec(state)?.[1];
  if (locks !== '1') problems.push(`lockdep was off at the end (debug_locks ${locks ?? 'missing'}): locking after it turned off went unchecked`);
  const disabled = /^dma-api disabled: (\S+)/m.exec(state)?.[1];
  if (disabled !== 'N') problems.push(`DMA-API debugging was off at the end (disabled: ${disabled ?? 'missing'})`);
  const errors = /^dma-api errors: (\d+)/m.exec(state)?.[1];
  if (errors !== '0') problems.push(`DMA-API debugging counted ${errors ?? 'an unknown number of'} errors`);
  return problems;
}
