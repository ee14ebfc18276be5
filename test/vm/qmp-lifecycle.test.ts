// GuestMemorySession with real dma-bufs, in the VM: nested QEMU 7.2 and 10.0 (TCG, -S), their
// guest RAM exported through a SurfaceCache. A guest reset empties the cache before holders
// hear 'reset' (their own buffers stay valid: they decide); a DIMM unplugged (device_del, then
// the eject a guest's ACPI driver would write to QEMU's memory-hotplug registers) is
// announced by DEVICE_DELETED and memory is discovered without it; quitting, or QEMU killed
// mid-session, rejects pending calls, closes the session and leaves no memfd or dma-buf fd;
// a sidecar that loses QMP while QEMU lives attaches again and exports as before.
import test from 'ava';
import { readdirSync, readlinkSync } from 'node:fs';
import {
  exportFramebuffer,
  GuestMemorySession,
  QmpConnectionError,
  SurfaceCache,
  Udmabuf,
  unmap,
  verifyMapping,
  type DiscoveredGuestMemory,
  type ExportedSurface,
  type QmpClient,
  type QmpEvent,
} from '../../lib/index.js';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';
import { baselineGuard } from './helpers/baseline.js';
import { pmemsave } from './helpers/pmemsave.js';

const checkBaseline = baselineGuard(test);

const M = 1n << 20n;
const FB = { width: 256, height: 256, stride: 1024, format: 'XR24' } as const;
const DIMM_ARGS = ['-machine', 'q35,memory-backend=mem', '-m', '1G,slots=2,maxmem=4G', '-object', 'memory-backend-memfd,id=mem,size=1G,share=on', '-object', 'memory-backend-memfd,id=dimm0,size=512M,share=on', '-device', 'pc-dimm,id=d0,memdev=dimm0'];
const RAM_ARGS = ['-machine', 'pc,memory-backend=mem', '-m', '1G', '-object', 'memory-backend-memfd,id=mem,size=1G,share=on'];

/**
 * This process's memfds and dma-bufs, by link text (not the udmabuf device or its sysfs
 * parameter files, which the suite's openFdCount also counts): what a leak would leave.
 */
function buffers(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      return /^\/memfd:|^\/dmabuf:|^anon_inode:dmabuf/.test(link) ? [link] : [];
    } catch {
      return []; // closed while listing
    }
  });
}

/** How many buffers beyond `before`, with the list in the assertion's message. */
function extra(t: import('ava').ExecutionContext, before: readonly string[], count: number, what: string): void {
  const now = buffers();
  t.is(now.length - before.length, count, `${what}: ${JSON.stringify(now)} (before: ${JSON.stringify(before)})`);
}

function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function write(surface: ExportedSurface, bytes: Uint8Array): void {
  const view = surface.dmabuf.map({ write: true });
  surface.dmabuf.sync('write', () => view.set(bytes, surface.planes[0].offset));
  unmap(view);
}


/**
 * Unplugs a pc-dimm as a guest would let it go: device_del asks (an ACPI notification), then
 * the guest's _EJ0 selects the slot and sets the eject bit in QEMU's memory-hotplug registers
 * (I/O 0xa00: selector at +0, flags at +0x14, bit 3 ejects). QEMU then really unplugs it.
 */
async function unplugDimm(qmp: QmpClient, id: string, slot: number): Promise<void> {
  await qmp.execute('device_del', { id });
  await qmp.hmp(`o 0xa00 ${slot}`);
  await qmp.hmp('o 0xa14 8');
}

function once<T>(session: GuestMemorySession, name: 'reset' | 'shutdown' | 'memory-changed' | 'closed'): Promise<T> {
  return new Promise<T>((resolve) => session.once(name as 'closed', resolve as (reason: unknown) => void));
}

for (const version of QEMU_VERSIONS) {
  test.serial(`${version}: reset, DIMM unplug, quit: the cache drops its dma-bufs before holders are told; memory is rediscovered; no fd left`, async (t) => {
    const before = buffers();
    const qemu = await startForeignQemu(version, DIMM_ARGS);
    try {
      const qmp = await qemu.connect(60_000);
      using cache = new SurfaceCache();
      const session = await GuestMemorySession.start(qmp, { cache });
      const dimm = session.discovered.regions.find((r) => r.backend === 'dimm0')!;
      t.is(dimm.size, 512n * M);
      using dev = Udmabuf.open();
      const fb = { ...FB, gpa: dimm.gpa + 0x1000n };
      const bytes = pattern(1, FB.stride * FB.height);
      {
        using held = exportFramebuffer(dev, session.memory, fb, { cache });
        write(held, bytes);
        t.deepEqual(await pmemsave(qmp, fb.gpa, bytes.length), bytes, 'the dma-buf is the DIMM');
        t.is(cache.stats.entries, 1);

        // Reset: the cache's reference goes before 'reset' reaches holders; theirs stays theirs.
        const reset = new Promise<{ event: QmpEvent; entries: number }>((resolve) => session.once('reset', (event) => resolve({ event, entries: cache.stats.entries })));
        await qmp.execute('system_reset');
        const heard = await reset;
        t.is(heard.event.event, 'RESET');
        t.is(heard.entries, 0, 'the cache was empty when holders heard of the reset');
        const view = held.dmabuf.map();
        t.deepEqual(view.subarray(0, 64), bytes.subarray(0, 64), "the holder's buffer still reads");
        unmap(view);
        const misses = cache.stats.misses;
        using again = exportFramebuffer(dev, session.memory, fb, { cache });
        t.not(again.dmabuf.fd, held.dmabuf.fd);
        t.is(cache.stats.misses, misses + 1, 'after a reset the next export creates a new buffer');
        t.is(cache.stats.entries, 1);
      }
      extra(t, before, 3, "the session's two memfds and the cache's buffer");

      // DIMM unplug: DEVICE_DELETED, rediscovery without it, the cache emptied, its memfd closed.
      const changed = once<DiscoveredGuestMemory>(session, 'memory-changed');
      const deleted = new Promise<QmpEvent>((resolve) => qmp.once('DEVICE_DELETED', resolve));
      await unplugDimm(qmp, 'd0', 0);
      t.is((await deleted).data?.['device'], 'd0');
      const next = await changed;
      t.deepEqual([...new Set(next.regions.map((r) => r.backend))], ['mem']);
      t.is(cache.stats.entries, 0);
      extra(t, before, 1, "only main RAM's memfd is held");
      t.throws(() => exportFramebuffer(dev, session.memory, fb, { cache }), { code: 'ERR_NOT_GUEST_RAM' }, 'the unplugged range is no longer guest RAM');

      // Quit: SHUTDOWN, then the connection ends and the session closes with it.
      const shutdown = once<QmpEvent>(session, 'shutdown');
      const closed = once<QmpConnectionError | undefined>(session, 'closed');
      await qmp.execute('quit').catch(() => undefined);
      t.is((await shutdown).event, 'SHUTDOWN');
      t.is((await closed)?.code, 'ERR_QMP_CLOSED');
      t.true(session.closed);
      qmp.close();
    } finally {
      await qemu.kill();
    }
    extra(t, before, 0, 'at the end');
  });

  test.serial(`${version}: QEMU killed mid-session: pending calls reject with ERR_QMP_CLOSED, the session closes, no fd left`, async (t) => {
    const before = buffers();
    const qemu = await startForeignQemu(version, RAM_ARGS);
    try {
      const qmp = await qemu.connect(60_000);
      using cache = new SurfaceCache();
      const session = await GuestMemorySession.start(qmp, { cache });
      using dev = Udmabuf.open();
      using held = exportFramebuffer(dev, session.memory, { ...FB, gpa: 0x100000n }, { cache });
      const closed = once<QmpConnectionError | undefined>(session, 'closed');
      const pending = Array.from({ length: 20 }, () => qmp.hmp('info mtree -f'));
      qemu.process.kill('SIGKILL');
      const results = await Promise.allSettled(pending);
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      t.true(failures.length > 0, 'some calls were still pending');
      for (const failure of failures) {
        t.true(failure.reason instanceof QmpConnectionError);
        t.is(failure.reason.code, 'ERR_QMP_CLOSED');
        t.regex(failure.reason.message, /QMP command human-monitor-command did not complete: QEMU \(pid \d+\) closed the QMP connection/);
      }
      t.is((await closed)?.code, 'ERR_QMP_CLOSED');
      t.is(cache.stats.entries, 0);
      extra(t, before, 1, "only the holder's own dma-buf is left, for the holder to close");
      held.dmabuf.close();
      await t.throwsAsync(qmp.execute('query-status'), { code: 'ERR_QMP_CLOSED' });
    } finally {
      await qemu.kill();
    }
    extra(t, before, 0, 'at the end');
  });

  test.serial(`${version}: a sidecar that loses QMP while QEMU runs attaches again: same map, exports read back`, async (t) => {
    const before = buffers();
    const qemu = await startForeignQemu(version, RAM_ARGS);
    try {
      using cache = new SurfaceCache();
      using dev = Udmabuf.open();
      const first = await qemu.connect(60_000);
      const session = await GuestMemorySession.start(first, { cache });
      exportFramebuffer(dev, session.memory, { ...FB, gpa: 0x100000n }, { cache }).dmabuf.close();
      const regions = session.discovered.regions;
      const closed = once<QmpConnectionError | undefined>(session, 'closed');
      first.close(); // the sidecar's end of the socket goes; QEMU's monitor listens again
      await closed;
      t.true(session.closed);
      t.is(cache.stats.entries, 0);
      extra(t, before, 0, 'nothing of the first session is held');

      await using second = await qemu.connect(60_000);
      using again = await GuestMemorySession.start(second, { cache });
      t.deepEqual(again.discovered.regions, regions);
      t.is((await second.execute<{ status: string }>('query-status')).status, 'prelaunch', 'the same QEMU, never restarted');
      const gpa = 0x200000n;
      {
        using fb = exportFramebuffer(dev, again.memory, { ...FB, gpa }, { cache });
        write(fb, pattern(2, FB.stride * FB.height));
      }
      t.deepEqual(await verifyMapping(second, again.memory, gpa, FB.stride * FB.height), { matches: true });
    } finally {
      await qemu.kill();
    }
    extra(t, before, 0, 'at the end');
  });
}

checkBaseline();
