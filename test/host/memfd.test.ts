// Memfd on the host: memfd_create, seals, shared views, punch hole, and the errors.
import test from 'ava';
import { isUnmapped, Memfd, unmap } from '../../lib/index.js';

test('create sizes the memfd and adds the requested seals', (t) => {
  using memfd = Memfd.create('host-test', 64 * 1024, { seals: ['shrink', 'grow'] });
  t.is(memfd.size, 65536n);
  t.deepEqual(memfd.seals.sort(), ['grow', 'shrink']);
  memfd.addSeals(['seal']);
  t.true(memfd.seals.includes('seal'));
  const err = t.throws(() => memfd.addSeals(['write']));
  t.is((err as { code?: string }).code, 'EPERM', 'F_SEAL_SEAL forbids further seals');
});

test('two views of the same memfd share memory; unmap detaches a view', (t) => {
  using memfd = Memfd.create('host-test', 8192);
  const a = memfd.map();
  const b = memfd.map();
  a[5000] = 0xab;
  t.is(b[5000], 0xab);
  unmap(a);
  t.true(isUnmapped(a));
  t.true(a[5000] === undefined, 'an unmapped view reads nothing, it never touches freed memory');
  unmap(a); // idempotent
  t.is(b[5000], 0xab);
  unmap(b);
});

test('punchHole zeroes the range and keeps the size', (t) => {
  using memfd = Memfd.create('host-test', 3 * 4096, { seals: ['shrink'] });
  const view = memfd.map();
  view.fill(7);
  memfd.punchHole(4096, 4096);
  t.is(view[4096], 0);
  t.is(view[8191], 0);
  t.is(view[0], 7);
  t.is(view[8192], 7);
  unmap(view);
});

test('a closed memfd throws a ClosedError; close is idempotent', (t) => {
  const memfd = Memfd.create('host-test', 4096);
  memfd.close();
  memfd.close();
  t.true(memfd.closed);
  const err = t.throws(() => memfd.fd);
  t.is((err as { code?: string }).code, 'ERR_CLOSED');
});

test('bad inputs give named errors', (t) => {
  t.is((t.throws(() => Memfd.create('x', -1)) as { code?: string }).code, 'ERR_OUT_OF_RANGE');
  t.is((t.throws(() => Memfd.create('x', 4096, { seals: ['bogus' as 'seal'] })) as { code?: string }).code, 'ERR_INVALID_ARG_VALUE');
  const growBeyond = t.throws(() => {
    using memfd = Memfd.create('x', 4096, { seals: ['write'] });
    memfd.map();
  });
  t.is((growBeyond as { code?: string }).code, 'EPERM', 'a write-sealed memfd cannot be mapped writable');
});
