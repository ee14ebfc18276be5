// The udmabuf devices under test in this VM: ours always; the in-tree one too where the
// kernel has it built in (6.12), so conformance cases can be run against both.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

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

export function devicesUnderTest(): DeviceUnderTest[] {
  const ours = ourDevice();
  const list = [ours];
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
