#!/usr/bin/env node
// guest-dmabuf-vm: run a command inside a VM booted on a Debian kernel with our udmabuf module.
import { parseArgs } from 'node:util';
import { runInVm } from './run.js';

const HELP = `Usage: guest-dmabuf-vm [options] -- COMMAND [ARGS...]

Boots a Debian kernel under QEMU with the host's root visible read-only at the same paths,
loads the project's udmabuf module, runs COMMAND in the current directory, and exits with its
status. The run fails when the guest's kernel log shows WARNING/BUG/Oops/general protection/
refcount_t lines or KASAN, lockdep, kmemleak, DMA-API or sleeping-in-atomic reports, when the
module cannot be unloaded afterwards, or when the guest dies before saving its kernel log.

In the guest, GUEST_DMABUF_DEVICE is the path of our device: /dev/udmabuf where the kernel has
no udmabuf, /dev/guest-udmabuf where it has one built in (6.12; the in-tree one stays at
/dev/udmabuf). GUEST_DMABUF_HOST_CACHE is the host's cache directory (read-only there: what the
host built for the guest, e.g. the nested GPU guests of node dist/vm/gpu-guest-cli.js).
/tmp is writable scratch; --rw shares a host directory writably.

Options:
  --kernel K         6.1, 6.12, or an exact installed release (default: newest installed);
                     debug: a 6.1 kernel built with KASAN, lockdep, kmemleak, DMA-API
                     debugging and fault injection (built and cached on first use)
  --no-module        do not build or load the project's module
  --mem SIZE         guest memory, e.g. 2G (default 2G)
  --cpus N           guest CPUs (default 2)
  --rw DIR           make host directory DIR writable in the guest (repeatable); results
                     written there are on the host afterwards
  --module-param P   pass name=value to the module at load (repeatable)
  --append ARG       add ARG to the guest kernel's command line, e.g. swiotlb=force (repeatable)
  --timeout SECONDS  stop the VM after this long (default 3600)
  --verbose          also show the boot and shutdown console
  -h, --help         this text

Environment: GUEST_DMABUF_VM_DMESG=FILE keeps the guest's whole kernel log (and, on the debug
kernel, kmemleak's report) in FILE. GUEST_DMABUF_KERNEL_JOBS sets the debug kernel's build jobs.
GUEST_DMABUF_ACCEL=kvm|tcg overrides the accelerator choice (KVM is used only
where it works; under a PVM hypervisor it hangs, so TCG is chosen there).
`;

async function main(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  const own = split >= 0 ? argv.slice(0, split) : argv;
  let command = split >= 0 ? argv.slice(split + 1) : [];
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      kernel: { type: 'string' },
      'no-module': { type: 'boolean' },
      mem: { type: 'string' },
      cpus: { type: 'string' },
      rw: { type: 'string', multiple: true },
      'module-param': { type: 'string', multiple: true },
      append: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (command.length === 0) command = positionals;
  if (command.length === 0) {
    process.stderr.write('guest-dmabuf-vm: no command given\n\n' + HELP);
    return 2;
  }
  const number = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} takes a positive whole number, not "${text}"`);
    return n;
  };
  const result = await runInVm(command, {
    kernel: values.kernel,
    noModule: values['no-module'],
    mem: values.mem,
    cpus: number('cpus', values.cpus),
    writable: values.rw,
    moduleParams: values['module-param'],
    kernelArgs: values.append,
    timeoutSeconds: number('timeout', values.timeout),
    verbose: values.verbose,
  });
  return result.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`guest-dmabuf-vm: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
