// A program the VM tests, npm start and the benchmarks run beside the nested QEMU (the sidecar,
// show, a back end, a proxy): its output lines kept (stderr and stdout: GLib's g_debug writes to
// stdout), and a wait for the first line that says something, which fails at once, quoting the
// output, when the program exited instead.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Program {
  child: ChildProcess;
  /** Every output line so far. */
  lines: string[];
  exited: Promise<number | null>;
  /** Resolves with the first output line matching `pattern` (after the `from`-th line), and when. */
  line(pattern: RegExp, timeoutMs: number, from?: number): Promise<{ line: string; at: number }>;
}

export interface ProgramOptions {
  env?: NodeJS.ProcessEnv;
  /** Each output line as it comes (e.g. to print it under a verbose switch). */
  log?: (line: string) => void;
}

export function startProgram(name: string, file: string, args: readonly string[], { env = process.env, log }: ProgramOptions = {}): Program {
  const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const seen: { line: string; at: number }[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    let buffered = '';
    stream.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
        const line = buffered.slice(0, at);
        buffered = buffered.slice(at + 1);
        if (!line.trim()) continue;
        lines.push(line);
        seen.push({ line, at: performance.now() });
        log?.(line);
      }
    });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', resolve);
    child.on('error', () => resolve(null));
  });
  return {
    child,
    lines,
    exited,
    async line(pattern, timeoutMs, from = 0) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const found = seen.slice(from).find((s) => pattern.test(s.line));
        if (found) return found;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}):\n${lines.join('\n')}`);
        if (performance.now() > deadline) throw new Error(`${name} did not say ${pattern} within ${timeoutMs / 1000} s:\n${lines.join('\n')}`);
        await sleep(50);
      }
    },
  };
}
