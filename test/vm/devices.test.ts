// The devices the suite compares: the in-tree udmabuf must be present where the kernel has it
// built in, and its absence there fails loudly instead of dropping every side-by-side case.
import test from 'ava';
import { existsSync, renameSync } from 'node:fs';
import { release } from 'node:os';
import { devicesUnderTest, inTreeBuiltOrLoaded, inTreeRequirement, ourDevice } from './helpers/devices.js';

const required = inTreeRequirement(release(), inTreeBuiltOrLoaded());

test.serial(`this kernel (${release()}) gets the devices it should`, (t) => {
  const devices = devicesUnderTest();
  if (/^6\.12\./.test(release())) t.truthy(required, '6.12 requires the in-tree driver');
  if (/^6\.1\./.test(release())) t.is(required, null, '6.1 has no in-tree udmabuf');
  if (required) {
    t.deepEqual(devices.map((d) => [d.label, d.path]), [['ours', '/dev/guest-udmabuf'], ['in-tree', '/dev/udmabuf']]);
    t.true(existsSync('/sys/module/udmabuf/parameters/size_limit_mb'), 'the in-tree module is the one behind /dev/udmabuf');
  } else {
    t.deepEqual(devices.map((d) => [d.label, d.path]), [['ours', '/dev/udmabuf']]);
  }
  t.is(ourDevice().path, process.env.GUEST_DMABUF_DEVICE ?? 'unset');
});

// Only where the in-tree driver is required (on 6.1 there is nothing to hide).
if (required) test.serial('a missing /dev/udmabuf on a kernel that must have it fails loudly', (t) => {
  renameSync('/dev/udmabuf', '/dev/udmabuf.hidden');
  try {
    t.throws(() => devicesUnderTest(), { message: /the in-tree udmabuf should be here .*\/dev\/udmabuf is missing/ });
  } finally {
    renameSync('/dev/udmabuf.hidden', '/dev/udmabuf');
  }
  t.is(devicesUnderTest().length, 2);
});
