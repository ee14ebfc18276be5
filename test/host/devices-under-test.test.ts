// When the VM suite must find the in-tree udmabuf beside ours (test/vm/helpers/devices.ts).
import test from 'ava';
import { inTreeRequirement } from '../vm/helpers/devices.js';

test('6.12 and newer, or a kernel with /sys/module/udmabuf, must have the in-tree driver', (t) => {
  t.is(inTreeRequirement('6.1.0-56-amd64', false), null);
  t.regex(inTreeRequirement('6.12.95+deb12-amd64', false)!, /6\.12 or newer/);
  t.regex(inTreeRequirement('6.13.0', false)!, /6\.12 or newer/);
  t.regex(inTreeRequirement('7.0.1', false)!, /6\.12 or newer/);
  t.is(inTreeRequirement('6.11.9', false), null);
  t.is(inTreeRequirement('5.15.0', false), null);
  t.regex(inTreeRequirement('6.1.0-56-amd64', true)!, /\/sys\/module\/udmabuf/);
  t.throws(() => inTreeRequirement('weird', false), { message: /cannot read a kernel version/ });
});
