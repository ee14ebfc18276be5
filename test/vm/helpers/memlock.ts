// Runs the memlock worker (fixtures/memlock-worker.ts) as an unprivileged user with a small
// RLIMIT_MEMLOCK and collects its step outcomes: the accounting suites' one way to create as
// someone the limit applies to.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Step } from '../fixtures/memlock-worker.js';

const WORKER = fileURLToPath(new URL('../fixtures/memlock-worker.js', import.meta.url));
export const NOBODY = 65534;
export const LIMIT_KIB = 4096;
export const MiB = 1 << 20;
export const PAGES_PER_MIB = MiB / 4096;

export interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
}
export interface Hold {
  pid: number;
  fds: number[];
}

/** Runs the worker under `uid` with RLIMIT_MEMLOCK = `LIMIT_KIB`; returns its step outcomes. */
export async function runWorker(steps: Step[], options: { uid?: number; withoutIpcLock?: boolean; hugetlb?: boolean; onHold?: (hold: Hold) => void | Promise<void> } = {}): Promise<Outcome[]> {
  const uid = options.uid ?? NOBODY;
  const command = [...(options.withoutIpcLock ? ['setpriv', '--bounding-set=-ipc_lock', '--'] : []), process.execPath, WORKER, JSON.stringify(steps), JSON.stringify({ hugetlb: options.hugetlb })];
  const child = spawn('sh', ['-c', `ulimit -l ${LIMIT_KIB} && exec "$@"`, 'sh', ...command], { uid, gid: uid, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const outcomes: Outcome[] = [];
  for await (const line of createInterface({ input: child.stdout })) {
    const message = JSON.parse(line) as Outcome & Partial<Hold> & { hold?: boolean };
    if (message.hold) {
      await options.onHold?.(message as Hold);
      child.stdin.write('\n');
    } else {
      outcomes.push(message);
    }
  }
  const status = await exited;
  if (status !== 0) throw new Error(`memlock worker exited with ${status}`);
  return outcomes;
}

export const codes = (outcomes: Outcome[]): string[] => outcomes.map((o) => (o.ok ? 'OK' : (o.code ?? '?')));
