// Attaching to a QEMU we may not ptrace, in the VM (the suite runs as root): QEMU 7.2 and 10.0
// run as root; the attaching side is a child process as uid 65534 (nobody). Its discovery
// must fail with QemuAccessError naming the fix (QEMU's uid, the capabilities, Yama's
// ptrace_scope); CAP_SYS_PTRACE alone is not enough (another user's /proc/<pid>/fd is mode
// 0500), and the fix the message names works: the same child with CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH (ambient, through setpriv) attaches, as does root. QMP itself is not
// the obstacle: the socket is opened to all.
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';
import { baselineGuard } from './helpers/baseline.js';

const checkBaseline = baselineGuard(test);

const WORKER = fileURLToPath(new URL('./fixtures/attach-worker.js', import.meta.url));
const NOBODY = 65534;
const ARGS = ['-machine', 'pc,memory-backend=mem', '-m', '256M', '-object', 'memory-backend-memfd,id=mem,size=256M,share=on'];

interface Outcome {
  ok: boolean;
  uid?: number;
  name?: string;
  code?: string;
  message?: string;
  accessError?: boolean;
  pid?: number;
  qemuUid?: number;
  ptraceScope?: number | null;
  hasCapSysPtrace?: boolean;
  hasCapDacReadSearch?: boolean;
  backends?: string[];
}

type As = 'root' | 'nobody' | 'nobody+ptrace' | 'nobody+ptrace+dac';
const CAPS: Record<As, string> = { root: '', nobody: '', 'nobody+ptrace': '+sys_ptrace', 'nobody+ptrace+dac': '+sys_ptrace,+dac_read_search' };

/** Runs the attach worker: as root, or as nobody with none, one or both capabilities. */
async function attach(socketPath: string, as: As): Promise<Outcome> {
  const caps = CAPS[as] ? [`--inh-caps=${CAPS[as]}`, `--ambient-caps=${CAPS[as]}`] : [];
  const drop = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...caps, '--'];
  const command = [...(as === 'root' ? [] : drop), process.execPath, WORKER, socketPath];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const lines: string[] = [];
  for await (const line of createInterface({ input: child.stdout })) lines.push(line);
  const status = await exited;
  if (status !== 0 || lines.length !== 1) throw new Error(`attach worker (${as}) exited with ${status}: ${lines.join('\n')}${stderr}`);
  return JSON.parse(lines[0]!) as Outcome;
}

for (const version of QEMU_VERSIONS) {
  test.serial(`${version}: nobody attaching to root's QEMU gets QemuAccessError naming the capabilities and ptrace_scope; CAP_SYS_PTRACE alone is not enough; with CAP_DAC_READ_SEARCH too, or as root, it attaches`, async (t) => {
    const qemu = await startForeignQemu(version, ARGS);
    try {
      chmodSync(dirname(qemu.socketPath), 0o755);
      chmodSync(qemu.socketPath, 0o666);
      const denied = await attach(qemu.socketPath, 'nobody');
      t.false(denied.ok);
      t.true(denied.accessError, `${denied.name} ${denied.code}: ${denied.message}`);
      t.is(denied.name, 'QemuAccessError');
      t.is(denied.code, 'ERR_QEMU_PTRACE_DENIED');
      t.is(denied.pid, qemu.process.pid);
      t.is(denied.qemuUid, 0);
      t.is(denied.uid, NOBODY);
      t.false(denied.hasCapSysPtrace);
      t.false(denied.hasCapDacReadSearch);
      t.regex(denied.message!, new RegExp(`^cannot list the fds of QEMU \\(pid ${qemu.process.pid}\\) \\(EACCES\\): it runs as uid 0 and we as uid ${NOBODY} without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH;`));
      t.regex(denied.message!, /run as uid 0, or grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH \(e\.g\. systemd AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH\)/);
      t.regex(denied.message!, denied.ptraceScope === null ? /\(no Yama\)$/ : new RegExp(`Yama kernel\\.yama\\.ptrace_scope is ${denied.ptraceScope}\\)$`));
      t.log(`as nobody: ${denied.message}`);

      // CAP_SYS_PTRACE alone: still denied, and the message asks for the one that is missing.
      const half = await attach(qemu.socketPath, 'nobody+ptrace');
      t.true(half.accessError, half.message);
      t.true(half.hasCapSysPtrace);
      t.false(half.hasCapDacReadSearch);
      t.regex(half.message!, /without CAP_DAC_READ_SEARCH; .* grant CAP_DAC_READ_SEARCH /);

      // The fix the message names works: both capabilities, same user.
      const withCap = await attach(qemu.socketPath, 'nobody+ptrace+dac');
      t.true(withCap.ok, withCap.message);
      t.is(withCap.uid, NOBODY);
      t.deepEqual(withCap.backends, ['mem']);
      const root = await attach(qemu.socketPath, 'root');
      t.true(root.ok, root.message);
      t.deepEqual(root.backends, ['mem']);
    } finally {
      await qemu.kill();
    }
  });
}

checkBaseline();
