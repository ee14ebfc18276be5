#!/usr/bin/env node
// Builds on the host what the VM suite's vhost-user-gpu tests boot nested (the test VM sees the
// cache read-only): the GPU guest kernel and the GPU guest for it and for Debian's kernels.
// Usage: node dist/vm/gpu-guest-cli.js [KERNEL...]   (default: tiny 6.1)
import { prepareGpuGuests, TINY } from './gpu-guest-boot.js';

const choices = process.argv.length > 2 ? process.argv.slice(2) : [TINY, '6.1'];
const log = (line: string): void => void process.stderr.write(`gpu-guest: ${line}\n`);
for (const boot of prepareGpuGuests(choices, log)) {
  console.log(`${boot.kernel.version}: -kernel ${boot.image} (${boot.entry}) -initrd ${boot.initramfs}`);
}
