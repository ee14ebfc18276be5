// What the guest left on the control share, judged. The guest's init writes, in order: the
// command's exit status, the module unload's outcome, the kernel log, and last a completion
// marker. A file that is missing means the guest never got that far (it hung or panicked, in
// the command or in rmmod, and was killed): that is a failure, never a clean result.
import { kernelLogProblems } from './kernel-log.js';

/** The names of the files the guest init writes, in the order it writes them. */
export const GUEST_FILES = {
  status: 'status',
  rmmodStatus: 'rmmod.status',
  rmmodErr: 'rmmod.err',
  dmesg: 'dmesg',
  finished: 'finished',
} as const;

export interface GuestReport {
  /** The command's exit status, or null when the VM died before it ended. */
  commandStatus: number | null;
  /** Flagged kernel-log lines, or a line saying the log was never saved. */
  kernelLogProblems: string[];
  /** Why the module did not unload cleanly, or null (also null when no module was loaded). */
  moduleUnloadError: string | null;
  /** The guest init reached its end: rmmod and dmesg are saved. */
  completed: boolean;
}

export const KERNEL_LOG_MISSING = 'the kernel log was never saved (the guest died or hung before its end)';
export const UNLOAD_MISSING = 'the module unload never finished (the guest died or hung in rmmod)';

/** Judges the control files; `read` returns a file's text or null when it does not exist. */
export function guestReport(read: (name: string) => string | null, moduleLoaded: boolean): GuestReport {
  const statusText = read(GUEST_FILES.status);
  const status = statusText === null ? NaN : Number(statusText.trim());
  const commandStatus = statusText !== null && statusText.trim() !== '' && Number.isInteger(status) ? status : null;
  const dmesg = read(GUEST_FILES.dmesg);
  const problems = dmesg === null ? [KERNEL_LOG_MISSING] : kernelLogProblems(dmesg);
  let moduleUnloadError: string | null = null;
  if (moduleLoaded) {
    const unload = read(GUEST_FILES.rmmodStatus)?.trim();
    if (unload === undefined || unload === '') moduleUnloadError = UNLOAD_MISSING;
    else if (unload !== 'ok') moduleUnloadError = (read(GUEST_FILES.rmmodErr) ?? '').trim() || 'rmmod failed';
  }
  return { commandStatus, kernelLogProblems: problems, moduleUnloadError, completed: read(GUEST_FILES.finished)?.trim() === 'done' };
}
