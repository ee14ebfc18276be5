// A QEMU nested in the test VM, driven through its serial console on stdio: console lines to wait
// for (QEMU's stderr among them, prefixed `qemu: `), a line to answer the guest's prompts with
// (the GPU test guest's gpu_guest.ask), the exit. What is on the machine (a vhost-user-gpu back
// end, a QMP client) is the caller's: NestedGpuGuest and the blob test build on this.
import { spawn, type ChildProcess } from 'node:child_process';

export interface NestedQemuOptions {
  binary: string;
  args: readonly string[];
  /** Added to this process's environment. */
  env?: Readonly<Record<string, string>>;
  /** Fds QEMU inherits, at 3, 4, ... in this order (they stay the caller's to close). */
  fds?: readonly number[];
  /** Console lines matching one of these are logged the first time only (QEMU repeating itself). */
  logOnce?: readonly RegExp[];
  log: (line: string) => void;
}

export class NestedQemu {
  /** Every console line so far (QEMU's stderr prefixed `qemu: `). */
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  readonly started = performance.now();
  readonly pid: number;
  /** Where console lines go; a test sharing the guest with an earlier one sets its own. */
  log: (line: string) => void;
  #consumed = 0;
  #waiters = new Set<() => void>();
  #exitCode: number | null | undefined;
  readonly #child: ChildProcess;
  readonly #logOnce: readonly RegExp[];
  readonly #logged = new Set<RegExp>();

  constructor(options: NestedQemuOptions) {
    this.log = options.log;
    this.#logOnce = options.logOnce ?? [];
    this.#child = spawn(options.binary, options.args, {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe', ...(options.fds ?? [])],
    });
    this.exited = new Promise((resolve) => {
      const ended = (code: number | null): void => {
        if (this.#exitCode !== undefined) return;
        this.#exitCode = code;
        this.wake();
        resolve(code);
      };
      this.#child.on('exit', ended);
      // A spawn that failed (the binary vanished) emits this instead of 'exit'.
      this.#child.on('error', () => ended(null));
    });
    if (this.#child.pid === undefined) throw new Error(`cannot start ${options.binary} (no pid: it is missing or not executable)`);
    this.pid = this.#child.pid;
    this.#lines(this.#child.stdout!, '');
    this.#lines(this.#child.stderr!, 'qemu: ');
  }

  /** Seconds since QEMU was spawned. */
  get seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** Undefined while QEMU runs. */
  get exitCode(): number | null | undefined {
    return this.#exitCode;
  }

  #lines(stream: NodeJS.ReadableStream, prefix: string): void {
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
        const line = prefix + buffered.slice(0, at).replace(/\r$/, '');
        buffered = buffered.slice(at + 1);
        this.lines.push(line);
        const once = this.#logOnce.find((p) => p.test(line));
        if (!once || !this.#logged.has(once)) this.log(`[${this.seconds.toFixed(1).padStart(6)} s] ${line}`);
        if (once) this.#logged.add(once);
        this.wake();
      }
    });
  }

  /** Resolves at the next console line, wake() or exit, or after `ms`. */
  #nextEvent(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  /** Has the waits check their condition again: for an owner whose state changed (a flush came). */
  wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** The next console line (after the last one waited for) matching `pattern`; rejects on timeout or QEMU's exit. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (; this.#consumed < this.lines.length; this.#consumed++) {
        const match = pattern.exec(this.lines[this.#consumed]!);
        if (match) {
          this.#consumed++;
          return match;
        }
      }
      if (this.#exitCode !== undefined) throw new Error(`QEMU exited (${this.#exitCode}) before the console showed ${pattern}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no console line matching ${pattern} within ${timeoutMs / 1000} s`);
      await this.#nextEvent(left);
    }
  }

  /** Waits until `done()` holds, checked at each line, wake() or exit; false on timeout or QEMU's exit. */
  async waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      const left = deadline - performance.now();
      if (left <= 0 || this.#exitCode !== undefined) return false;
      await this.#nextEvent(left);
    }
    return true;
  }

  /** A line on the guest's console input (answers init.sh's prompts). */
  send(line: string): void {
    this.#child.stdin!.write(`${line}\n`);
  }

  /** SIGKILL, as a crash would: QEMU closes nothing on its way out. Then the pipes are closed. */
  async kill(): Promise<void> {
    if (this.#exitCode === undefined) this.#child.kill('SIGKILL');
    await this.exited;
    // The pipes to QEMU stay open in this process until destroyed (stdin is never ended by QEMU).
    for (const stream of [this.#child.stdin, this.#child.stdout, this.#child.stderr]) stream?.destroy();
  }
}
