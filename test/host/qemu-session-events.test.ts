// GuestMemorySession's reaction to each QEMU event, against a scripted QMP peer: the events a
// nested QEMU under -S cannot produce on its own (BALLOON_CHANGE needs a guest balloon driver)
// are covered here; the real QEMUs cover RESET, DEVICE_DELETED, SHUTDOWN and exit in
// test/host/qemu-lifecycle.test.ts and test/vm/qmp-lifecycle.test.ts.
import test from 'ava';
import { DmaBuf, GuestMemorySession, Memfd, QmpClient, SurfaceCache, type QmpEvent } from '../../lib/index.js';
import { native } from '../../lib/core/native.js';
import { ownMemfds, warmUp } from './fixtures/support.js';
import { scriptedPair, type ScriptedPeer } from './fixtures/qmp-peer.js';

test.before(warmUp);

const SIZE = 16 * 4096;
const MTREE = ['FlatView #0', ' AS "memory", root: system', ' Root memory region: system', `  0000000000000000-${(SIZE - 1).toString(16).padStart(16, '0')} (prio 0, ram): ram0`, ''].join('\n');

/** Answers discovery's commands (query-memdev, qom-get, info mtree -f) as QEMU would for one memfd backend. */
async function answerDiscovery(peer: ScriptedPeer): Promise<void> {
  const replies: Record<string, unknown> = {
    'query-memdev': [{ id: 'ram0', size: SIZE, share: true, merge: true, dump: true, prealloc: false, policy: 'default', 'host-nodes': [] }],
    'qom-get': 'memory-backend-memfd',
    'human-monitor-command': MTREE,
  };
  for (let i = 0; i < 3; i++) {
    const command = await peer.command();
    await peer.send({ return: replies[command.execute!], id: command.id });
  }
}

async function started(): Promise<{ qmp: QmpClient; peer: ScriptedPeer; session: GuestMemorySession; cache: SurfaceCache; memfd: Memfd }> {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd, { timeoutMs: 5000 });
  await peer.greet();
  await peer.negotiate();
  const qmp = await connecting;
  const memfd = Memfd.create('session-events', SIZE, { seals: ['shrink'] });
  const cache = new SurfaceCache();
  const starting = GuestMemorySession.start(qmp, { cache, memfds: { ram0: memfd } });
  await answerDiscovery(peer);
  return { qmp, peer, session: await starting, cache, memfd };
}

/** One cached buffer (a memfd stands in for the dma-buf: the cache only dups and closes fds); the caller's copy is closed. */
function cacheOne(cache: SurfaceCache, memfd: Memfd): void {
  cache.getOrCreate([{ memfd, offset: 0n, size: 4096n }], 'fb', () => new DmaBuf(native.dup(memfd.fd), 4096n)).close();
}

const event = (name: string, data: object): object => ({ event: name, data, timestamp: { seconds: 1, microseconds: 0 } });

for (const [name, data, announced] of [
  ['BALLOON_CHANGE', { actual: SIZE / 2 }, 'balloon'],
  ['RESET', { guest: true, reason: 'guest-reset' }, 'reset'],
] as const) {
  test.serial(`${name}: the cache is emptied before holders hear '${announced}'; memory stays`, async (t) => {
    const { qmp, peer, session, cache, memfd } = await started();
    cacheOne(cache, memfd);
    t.is(cache.stats.entries, 1);
    const heard = await new Promise<{ event: QmpEvent; entries: number }>((resolve) => {
      session.once(announced, (e) => resolve({ event: e, entries: cache.stats.entries }));
      void peer.send(event(name, data));
    });
    t.is(heard.event.event, name);
    t.deepEqual(heard.event.data, data);
    t.is(heard.entries, 0, 'emptied before the announcement');
    t.false(session.closed);
    t.is(session.memory.size, BigInt(SIZE));
    session.close();
    qmp.close();
    peer.close();
    cache.close();
    memfd.close();
    t.deepEqual(ownMemfds(), []);
  });
}

test.serial('an event the session does not act on leaves the cache alone', async (t) => {
  const { qmp, peer, session, cache, memfd } = await started();
  cacheOne(cache, memfd);
  const seen = new Promise<void>((resolve) => qmp.once('STOP', () => resolve()));
  await peer.send(event('STOP', {}));
  await seen;
  t.is(cache.stats.entries, 1);
  session.close();
  t.is(cache.stats.entries, 0, 'close empties it');
  qmp.close();
  peer.close();
  cache.close();
  memfd.close();
  t.deepEqual(ownMemfds(), []);
});

test.serial('the peer vanishing closes the session with ERR_QMP_CLOSED and empties the cache; the given memfd stays the caller\'s', async (t) => {
  const { qmp, peer, session, cache, memfd } = await started();
  cacheOne(cache, memfd);
  const closed = new Promise<unknown>((resolve) => session.once('closed', resolve));
  peer.close();
  t.is(((await closed) as { code?: string }).code, 'ERR_QMP_CLOSED');
  t.true(session.closed);
  t.is(cache.stats.entries, 0);
  t.false(memfd.closed);
  t.true(qmp.closed);
  memfd.close();
  t.deepEqual(ownMemfds(), []);
});
