// Opening a device that is not there says how to load the module.
import test from 'ava';
import { DeviceUnavailableError, Udmabuf } from '../../lib/index.js';

test('a missing device throws DeviceUnavailableError with the loading instructions', (t) => {
  const err = t.throws(() => Udmabuf.open('/dev/no-such-udmabuf'));
  t.true(err instanceof DeviceUnavailableError);
  t.is((err as DeviceUnavailableError).code, 'ENOENT');
  t.regex(err!.message, /\/dev\/no-such-udmabuf/);
  t.regex(err!.message, /insmod|modprobe/);
});
