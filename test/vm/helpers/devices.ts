// The udmabuf devices under test in this VM: ours always; the in-tree one too where the
// kernel has it built in (6.12), so conformance cases can be run against both.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';

export interface DeviceUnderTest {
  /** 'ours' or 'in-tree'. */
  label: 'ours' | 'in-tree';
  path: string;
  parameters: string;
}

export function ourDevice(): DeviceUnderTest {
  const path = process.env.GUEST_DMABUF_DEVICE;
  if (!path) throw new Error('GUEST_DMABUF_DEVICE is not set: run the VM suites through guest-dmabuf-vm');
  return { label: 'ours', path, parameters: '/sys/module/guest_udmabuf/parameters' };
}

/**
 * Why this kernel must have the in-tree udmabuf (a reason), or null when it need not. The
 * module's sysfs directory says it is there; from 6.12 on the suite's kernels (Debian's
 * bookworm-backports) build it in, so its absence there is a broken setup, not a kernel without
 * it: failing loudly keeps every side-by-side case from disappearing silently.
 */
export function inTreeRequirement(release: string, hasSysModule: boolean): string | null {
  if (hasSysModule) return '/sys/module/udmabuf exists';
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (!match) throw new Error(`cannot read a kernel version from the release "${release}"`);
  const [major, minor] = [Number(match[1]), Number(match[2])];
  if (major > 6 || (major === 6 && minor >= 12)) return `kernel ${release} is 6.12 or newer, which the suite runs with udmabuf built in`;
  return null;
}

/**
 * The in-tree module is in this kernel and was let register. The debug kernel has it built in
 * (so /sys/module/udmabuf exists, for its parameters) but keeps it from registering with
 * initcall_blacklist=udmabuf_dev_init (vm/debug-kernel.ts says why): not there, deliberately.
 */
export function inTreeBuiltOrLoaded(): boolean {
  const keptOut = /(?:^|\s)initcall_blacklist=\S*\budmabuf_dev_init\b/.test(readFileSync('/proc/cmdline', 'utf8'));
  return existsSync('/sys/module/udmabuf') && !keptOut;
}

export function devicesUnderTest(): DeviceUnderTest[] {
  const ours = ourDevice();
  const list = [ours];
  const required = inTreeRequirement(release(), inTreeBuiltOrLoaded());
  if (required) {
    if (ours.path === '/dev/udmabuf') throw new Error(`the in-tree udmabuf should be here (${required}), but our module took /dev/udmabuf`);
    if (!existsSync('/dev/udmabuf')) throw new Error(`the in-tree udmabuf should be here (${required}), but /dev/udmabuf is missing: the side-by-side cases cannot run`);
  }
  if (ours.path !== '/dev/udmabuf' && existsSync('/dev/udmabuf')) {
    list.push({ label: 'in-tree', path: '/dev/udmabuf', parameters: '/sys/module/udmabuf/parameters' });
  }
  return list;
}

export function readParam(dev: DeviceUnderTest, name: string): string {
  return readFileSync(`${dev.parameters}/${name}`, 'utf8').trim();
}

/** Runs `fn` with a module parameter changed, restoring it afterwards. */
export async function withParam<T>(dev: DeviceUnderTest, name: string, value: string, fn: () => T | Promise<T>): Promise<T> {
  const old = readParam(dev, name);
  writeFileSync(`${dev.parameters}/${name}`, value);
  try {
    return await fn();
  } finally {
    writeFileSync(`${dev.parameters}/${name}`, old);
  }
}
