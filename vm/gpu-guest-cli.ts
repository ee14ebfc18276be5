#!/usr/bin/env node
// Builds on the host what the VM suite's vhost-user-gpu tests boot nested (the test VM sees the
// cache read-only): the GPU guest kernel and the GPU guest for it and for Debian's kernels.
import { prepareGpuGuests, TINY } from './gpu-guest-boot.js';

const USAGE = `Usage: node dist/vm/gpu-guest-cli.js [KERNEL...]

Builds (or finds cached) the nested GPU test guests: for each KERNEL, the kernel image booted
through PVH where there is a vmlinux, and a busybox initramfs whose init draws a known picture
into /dev/fb0 on virtio-gpu. Prints one line per guest: its -kernel and -initrd.

KERNEL: ${TINY} (the GPU guest kernel built from linux-source-6.1 for the job, built and cached on
first use), 6.1, 6.12 or an installed release. Default: ${TINY} 6.1.

Options:
  -h, --help   this text`;

const args = process.argv.slice(2);
if (args.includes('-h') || args.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
const unknown = args.find((a) => a.startsWith('-'));
if (unknown) {
  console.error(`gpu-guest: unknown option ${unknown}\n\n${USAGE}`);
  process.exit(64);
}
const choices = args.length > 0 ? args : [TINY, '6.1'];
const log = (line: string): void => void process.stderr.write(`gpu-guest: ${line}\n`);
for (const boot of prepareGpuGuests(choices, log)) {
  console.log(`${boot.kernel.version}: -kernel ${boot.image} (${boot.entry}) -initrd ${boot.initramfs}`);
}
