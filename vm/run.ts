// Boots a VM on a Debian kernel with the project's module loaded, runs one command in it and
// reports its exit status, failing the run on kernel warnings or a module that cannot unload.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { accelArgs, chooseAccel, GUEST_KERNEL_ARGS } from './accel.js';
import { commandScript } from './command-script.js';
import { END_MARKER, START_MARKER } from './guest-init.js';
import { ensureInitramfs } from './initramfs.js';
import { guestReport } from './guest-report.js';
import { debugKernelProblems } from './debug-report.js';
import { resolveKernel } from './kernels.js';
import { buildModule } from './module-build.js';
import { PROJECT_ROOT } from './paths.js';
import { virtfsArgs } from './qemu-args.js';

export interface VmOptions {
  /** `6.1`, `6.12` or an exact release; default the newest installed. */
  kernel?: string;
  /** Do not build or load the project's module. */
  noModule?: boolean;
  /** Guest memory, QEMU syntax (`2G`). */
  mem?: string;
  cpus?: number;
  /** Host directories the guest may write, mounted at the same paths. */
  writable?: readonly string[];
  /** Host paths under /tmp the guest needs besides the project and cwd (its /tmp is its own). */
  keep?: readonly string[];
  /** Extra `name=value` parameters for the module. */
  moduleParams?: readonly string[];
  /** Extra kernel command-line parameters (e.g. `swiotlb=force`). */
  kernelArgs?: readonly string[];
  /** Wall-clock limit in seconds for the whole VM. */
  timeoutSeconds?: number;
  /** Show the boot and shutdown console too. */
  verbose?: boolean;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the command's console output goes; default process.stdout. */
  output?: (text: string) => void;
  log?: (line: string) => void;
}

export interface VmResult {
  /** The command's exit status, or null when the VM died before it ended. */
  commandStatus: number | null;
  kernelLogProblems: string[];
  moduleUnloadError: string | null;
  /** The guest init reached its end (completion marker written after rmmod and dmesg). */
  guestCompleted: boolean;
  /** On the debug kernel: lockdep/DMA-API debugging off or the log wrapped (vm/debug-report.ts); null elsewhere. */
  debugProblems: string[] | null;
  /** What the runner exits with: the command's status unless the kernel or the unload failed. */
  exitCode: number;
  bootSeconds: number;
}

export async function runInVm(command: readonly string[], options: VmOptions = {}): Promise<VmResult> {
  if (command.length === 0) throw new Error('no command given: guest-dmabuf-vm [options] -- COMMAND [ARGS...]');
  const log = options.log ?? ((line: string) => process.stderr.write(`guest-dmabuf-vm: ${line}\n`));
  const output = options.output ?? ((text: string) => process.stdout.write(text));
  const kernel = resolveKernel(options.kernel, log);
  const initramfs = ensureInitramfs(kernel, log);
  const ko = options.noModule ? null : buildModule(kernel, log);
  const writable = (options.writable ?? []).map((d) => resolve(d));
  for (const dir of writable) {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--rw ${dir}: not a directory`);
  }

  const control = mkdtempSync(join(tmpdir(), 'guest-dmabuf-vm-'));
  try {
    writeFileSync(join(control, 'command.sh'), commandScript(command, options.cwd ?? process.cwd(), options.env ?? process.env));
    writeFileSync(join(control, 'rw.list'), writable.join('\n') + '\n');
    // The guest's /tmp is its own tmpfs; host paths under /tmp it needs are bound back in.
    writeFileSync(join(control, 'keep.list'), [PROJECT_ROOT, options.cwd ?? process.cwd(), ...(options.keep ?? [])].join('\n') + '\n');
    if (ko) {
      writeFileSync(join(control, 'module.path'), ko);
      writeFileSync(join(control, 'module.params'), (options.moduleParams ?? []).join(' '));
    }
    if (kernel.modulesDir) writeFileSync(join(control, 'modules.dir'), kernel.modulesDir);
    const accel = chooseAccel(options.env ?? process.env);
    const share = virtfsArgs;
    const args = [
      ...accelArgs(accel),
      '-m', options.mem ?? '2G',
      '-smp', String(options.cpus ?? 2),
      '-nographic', '-no-reboot', '-net', 'none',
      '-kernel', kernel.image, '-initrd', initramfs,
      '-append', [...GUEST_KERNEL_ARGS, 'quiet mitigations=off rdinit=/init', ...(kernel.cmdline ?? []), ...(options.kernelArgs ?? [])].join(' '),
      ...share('hostroot', '/', true),
      ...share('control', control, false),
      ...writable.flatMap((dir, i) => share(`rw${i}`, dir, false)),
    ];
    log(`booting ${kernel.version} (${accel}, ${options.mem ?? '2G'}, ${options.cpus ?? 2} cpus)`);
    const started = Date.now();
    let bootSeconds = 0;
    await runQemu(args, options.timeoutSeconds ?? 3600, (text, phase) => {
      if (phase === 'command') output(text);
      else if (options.verbose) process.stderr.write(text);
    }, () => {
      bootSeconds = (Date.now() - started) / 1000;
      log(`command started after ${bootSeconds.toFixed(1)} s`);
    });

    const read = (name: string): string | null => (existsSync(join(control, name)) ? readFileSync(join(control, name), 'utf8') : null);
    const { commandStatus, kernelLogProblems: problems, moduleUnloadError, completed } = guestReport(read, ko !== null);
    const debugProblems = kernel.debug ? debugKernelProblems(read) : null;
    // The whole guest kernel log (with kmemleak's report on the debug kernel), kept on request.
    if (process.env.GUEST_DMABUF_VM_DMESG) writeFileSync(process.env.GUEST_DMABUF_VM_DMESG, read('dmesg') ?? '');

    let exitCode = commandStatus ?? 125;
    if (commandStatus === null) log('the VM stopped before the command finished (crash, panic or timeout)');
    if (!completed) {
      log('the guest did not reach the end of its init (no completion marker): it died or hung after the command');
      if (exitCode === 0) exitCode = 1;
    }
    if (problems.length > 0) {
      log('the kernel log has problems:');
      for (const line of problems) log(`  ${line}`);
      if (exitCode === 0) exitCode = 1;
    }
    if (debugProblems?.length) {
      log('the debug checkers did not cover the whole run:');
      for (const line of debugProblems) log(`  ${line}`);
      if (exitCode === 0) exitCode = 1;
    }
    if (moduleUnloadError !== null) {
      log(`unloading the module failed (a leaked reference?): ${moduleUnloadError}`);
      if (exitCode === 0) exitCode = 1;
    }
    return { commandStatus, kernelLogProblems: problems, moduleUnloadError, guestCompleted: completed, debugProblems, exitCode, bootSeconds };
  } finally {
    rmSync(control, { recursive: true, force: true });
  }
}

type Phase = 'boot' | 'command' | 'shutdown';

/** Runs QEMU, splitting its console into boot, command and shutdown by the init's markers. */
function runQemu(args: string[], timeoutSeconds: number, onText: (text: string, phase: Phase) => void, onStart: () => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let phase: Phase = 'boot';
    let pending = '';
    const timer = setTimeout(() => {
      onText(`\nguest-dmabuf-vm: timed out after ${timeoutSeconds} s, stopping the VM\n`, 'command');
      qemu.kill('SIGKILL');
    }, timeoutSeconds * 1000);

    const consume = (chunk: Buffer): void => {
      pending += chunk.toString('utf8').replace(/\r/g, '');
      for (;;) {
        const marker = phase === 'boot' ? START_MARKER : phase === 'command' ? END_MARKER : null;
        const at = marker ? pending.indexOf(marker) : -1;
        if (marker && at >= 0) {
          onText(pending.slice(0, at), phase);
          pending = pending.slice(at + marker.length).replace(/^\n/, '');
          phase = phase === 'boot' ? 'command' : 'shutdown';
          if (phase === 'command') onStart();
          continue;
        }
        // Keep a possible partial marker back; flush the rest.
        const keep = marker ? marker.length : 0;
        const cut = phase === 'command' ? Math.max(0, pending.lastIndexOf('\n', pending.length - keep) + 1) : pending.length - keep;
        if (cut > 0) {
          onText(pending.slice(0, cut), phase);
          pending = pending.slice(cut);
        }
        return;
      }
    };
    qemu.stdout.on('data', consume);
    let stderr = '';
    qemu.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    qemu.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start qemu-system-x86_64 (${err.message}): run \`npm run setup\``));
    });
    qemu.on('close', (code) => {
      clearTimeout(timer);
      if (pending) onText(pending, phase);
      if (phase === 'boot') onText(`\nguest-dmabuf-vm: the guest never reached the command${stderr ? `; qemu said: ${stderr}` : ''}\n`, 'command');
      if (code !== 0 && code !== null && stderr) process.stderr.write(stderr);
      resolvePromise();
    });
  });
}
