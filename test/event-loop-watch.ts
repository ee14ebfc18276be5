// Watches the event loop while something runs: the longest gap between timer ticks. A call that
// blocks the main thread shows up as one gap as long as the call; an asynchronous one leaves
// only timer slack.
export interface EventLoopWatch {
  /** Stops watching; returns the longest gap (ms) and how many ticks ran. */
  stop(): { maxGapMs: number; ticks: number };
}

export function watchEventLoop(intervalMs = 2): EventLoopWatch {
  let last = performance.now();
  let maxGapMs = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      // The time since the last tick counts too: a call that blocked until the end left no tick.
      maxGapMs = Math.max(maxGapMs, performance.now() - last);
      return { maxGapMs, ticks };
    },
  };
}
