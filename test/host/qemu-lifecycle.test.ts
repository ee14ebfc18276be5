// GuestMemorySession against real QEMU 7.2 and 10.0 on the host: a guest reset is announced
// (after the cache is emptied), a DIMM hot-plugged at run time appears after refresh(), and
// QEMU quitting announces shutdown, then closes the session and the memfds it took.
import test from 'ava';
import { ClosedError, GuestMemorySession, SurfaceCache, type DiscoveredGuestMemory, type QmpEvent } from '../../lib/index.js';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';
import { ownMemfds } from './fixtures/support.js';

const G = 1n << 30n;

for (const version of QEMU_VERSIONS) {
  test.serial(`${version}: reset, hot-plugged DIMM with refresh(), quit: events to holders, memfds closed at the end`, async (t) => {
    const qemu = await startForeignQemu(version, ['-machine', 'q35,memory-backend=mem', '-m', '1G,slots=2,maxmem=4G', '-object', 'memory-backend-memfd,id=mem,size=1G,share=on']);
    try {
      const qmp = await qemu.connect(30_000);
      using cache = new SurfaceCache();
      const session = await GuestMemorySession.start(qmp, { cache });
      t.is(session.discovered.regions.length, 2);

      const reset = new Promise<QmpEvent>((resolve) => session.once('reset', resolve));
      await qmp.execute('system_reset');
      t.is((await reset).event, 'RESET');

      await qmp.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'dimm1', size: Number(G), share: true });
      await qmp.execute('device_add', { driver: 'pc-dimm', id: 'd1', memdev: 'dimm1' });
      const changed = new Promise<DiscoveredGuestMemory>((resolve) => session.once('memory-changed', resolve));
      await session.refresh();
      const next = await changed;
      t.deepEqual(next.regions.map((r) => r.backend), ['mem', 'mem', 'dimm1']);
      t.is(session.memory.size, next.memory.size);
      t.is(next.regions[2]!.gpa, 4n * G);
      // Same-sized backends: the earlier match rules 'mem''s memfd out for 'dimm1' (7.2 has no host addresses).
      t.is(next.evidence.get('mem'), 'earlier');
      t.is(next.evidence.get('dimm1'), version === '7.2' ? 'size' : 'host-address');

      const shutdown = new Promise<QmpEvent>((resolve) => session.once('shutdown', resolve));
      const closed = new Promise<unknown>((resolve) => session.once('closed', resolve));
      await qmp.execute('quit').catch(() => undefined);
      t.is((await shutdown).event, 'SHUTDOWN');
      t.is(((await closed) as { code?: string } | undefined)?.code, 'ERR_QMP_CLOSED');
      t.true(session.closed);
      t.throws(() => session.memory, { instanceOf: ClosedError });
      t.deepEqual(ownMemfds(), []);
      qmp.close();
    } finally {
      await qemu.kill();
    }
  });
}
