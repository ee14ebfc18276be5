// Choosing QEMU's accelerator, and the kernel arguments a guest needs under it. KVM only where
// it really works: under a PVM hypervisor a stock kernel hangs with -enable-kvm instead of
// failing, so PVM means TCG.
import { accessSync, constants, existsSync } from 'node:fs';

export type Accel = 'kvm' | 'tcg';

export function chooseAccel(env: NodeJS.ProcessEnv = process.env): Accel {
  const forced = env.GUEST_DMABUF_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (forced) throw new Error(`GUEST_DMABUF_ACCEL must be "kvm" or "tcg", not "${forced}"`);
  if (existsSync('/sys/module/kvm_pvm')) return 'tcg';
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return 'kvm';
  } catch {
    return 'tcg';
  }
}

export function accelArgs(accel: Accel): string[] {
  return accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max'];
}

/**
 * Kernel arguments every guest we boot gets. no_timer_check: under TCG on a loaded machine the
 * kernel's IO-APIC timer probe can miss its ticks, and then it panics ("IO-APIC + timer doesn't
 * work!"); seen in CI on a nested guest. Cloud images pass it for the same reason.
 */
export const GUEST_KERNEL_ARGS: readonly string[] = ['console=ttyS0', 'panic=-1', 'loglevel=4', 'no_timer_check'];
