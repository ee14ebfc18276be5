// The QEMU glue against real QEMUs on the host (TCG, -S: nothing boots), on 7.2 and on 10.0
// (setup-host.sh unpacks it; a missing one fails here, it is never skipped): launchQemu,
// attaching to a QEMU someone else started (pid from SO_PEERCRED, memfds by pidfd_getfd),
// discovery equal to `info mtree -f`, refused RAM explained, and QEMU killed mid-session.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discoverGuestMemory, GuestMemory, guestRamRanges, launchQemu, Memfd, QmpClient, QmpError, verifyMapping, QmpConnectionError, unmap, type GuestDmabufError } from '../../lib/index.js';
import { openFdCount, ownMemfds, warmUp } from './fixtures/support.js';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';

test.before(warmUp);

const G = 1n << 30n;
const quiet = ['-S', '-nodefaults', '-display', 'none', '-accel', 'tcg'];

for (const version of QEMU_VERSIONS) {
  test.serial(`${version}: launchQemu q35 6 GiB: memfds given to QEMU, discovery equals info mtree -f`, async (t) => {
    const before = openFdCount();
    const started = performance.now();
    const qemu = await launchQemu({ qemu: version, machine: 'q35', args: quiet, memory: [{ id: 'ram0', size: 6n * G }] });
    t.log(`launch to discovered memory: ${(performance.now() - started).toFixed(0)} ms`);
    try {
      t.is(qemu.qmp.version.major, version === '7.2' ? 7 : 10);
      const mtree = guestRamRanges(await qemu.qmp.hmp('info mtree -f'));
      t.deepEqual(qemu.discovered.regions, mtree.map((r) => ({ gpa: r.start, size: r.end - r.start, backend: r.region, offset: r.offset })));
      t.deepEqual(qemu.discovered.regions.map((r) => r.gpa), [0n, 0x100000n, 4n * G]);
      t.is(qemu.discovered.regions[2]!.offset, 2n * G);
      // QEMU holds our memfd (reopened through /proc/self/fd/N): the same inode.
      const link = readlinkSync(`/proc/${qemu.process.pid}/fd/3`);
      t.regex(link, /^\/memfd:guest-ram:ram0/);
      t.deepEqual(qemu.memfds.get('ram0')!.seals.sort(), ['grow', 'shrink']);
    } finally {
      await qemu.close();
    }
    t.is(openFdCount(), before);
  });

  test.serial(`${version}: attach to a QEMU started with -qmp unix: pc 4 GiB (memfd backend), memfd taken by pidfd_getfd`, async (t) => {
    const before = openFdCount();
    const qemu = await startForeignQemu(version, ['-machine', 'pc,memory-backend=mem', '-m', '4G', '-object', 'memory-backend-memfd,id=mem,size=4G,share=on']);
    try {
      await using qmp = await qemu.connect(30_000);
      t.is(qmp.peer.pid, qemu.process.pid!, 'SO_PEERCRED names QEMU');
      using found = await discoverGuestMemory(qmp);
      t.deepEqual(found.regions.map((r) => [r.gpa, r.size, r.offset]), [
        [0n, 0xc0000n, 0n],
        [0x100000n, 0xc0000000n - 0x100000n, 0x100000n],
        [4n * G, 1n * G, 0xc0000000n],
      ]);
      t.is(found.evidence.get('mem'), version === '7.2' ? 'size' : 'host-address');
      const memfd = found.memfds.get('mem')!;
      t.is(memfd.size, 4n * G);
      t.true(memfd.seals.includes('shrink'), 'memory-backend-memfd seals by default');
      t.is(found.memory.size, 4n * G - 0x40000n);
      // The same pages as QEMU's: bytes written through our memfd at the offset discovery
      // gives for GPA 4 GiB + 8 KiB, read back by QEMU's pmemsave of that GPA.
      const view = memfd.map();
      try {
        const bytes = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 0xff);
        view.set(bytes, 0xc0000000 + 0x2000);
        const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-pmemsave-'));
        try {
          await qmp.execute('pmemsave', { val: Number(4n * G + 0x2000n), size: 4096, filename: join(dir, 'out') });
          t.deepEqual(new Uint8Array(readFileSync(join(dir, 'out'))), bytes);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      } finally {
        unmap(view);
      }
    } finally {
      await qemu.kill();
    }
    t.deepEqual(ownMemfds(), []);
    t.is(openFdCount(), before);
  });

  test.serial(`${version}: attach with a hot-plugged DIMM: two backends, each its own memfd`, async (t) => {
    const qemu = await startForeignQemu(version, [
      '-machine', 'q35,memory-backend=mem',
      '-m', '2G,slots=2,maxmem=8G',
      '-object', 'memory-backend-memfd,id=mem,size=2G,share=on',
      '-object', 'memory-backend-memfd,id=dimm0,size=1G,share=on',
      '-device', 'pc-dimm,id=d0,memdev=dimm0',
    ]);
    try {
      await using qmp = await qemu.connect(30_000);
      using found = await discoverGuestMemory(qmp);
      t.deepEqual(found.regions.map((r) => `${r.backend} ${r.gpa.toString(16)}+${r.size.toString(16)}@${r.offset.toString(16)}`), [
        'mem 0+c0000@0',
        'mem 100000+7ff00000@100000',
        'dimm0 100000000+40000000@0',
      ]);
      t.not(found.memfds.get('mem'), found.memfds.get('dimm0'));
      t.is(found.memfds.get('dimm0')!.size, G);
    } finally {
      await qemu.kill();
    }
  });

  test.serial(`${version}: RAM that is private (memory-backend-ram) or not share=on is refused with how to start QEMU`, async (t) => {
    for (const object of ['memory-backend-ram,id=mem,size=256M', 'memory-backend-memfd,id=mem,size=256M,share=off']) {
      const qemu = await startForeignQemu(version, ['-machine', 'q35,memory-backend=mem', '-m', '256M', '-object', object]);
      try {
        await using qmp = await qemu.connect(30_000);
        const err = await t.throwsAsync(discoverGuestMemory(qmp));
        t.is((err as GuestDmabufError).code, 'ERR_QEMU_RAM_NOT_SHAREABLE');
        t.regex(err!.message, /-object memory-backend-memfd,id=mem,size=268435456,share=on/);
      } finally {
        await qemu.kill();
      }
    }
  });

  test.serial(`${version}: memfd without F_SEAL_SHRINK (seal=off) is refused, saying seal=on`, async (t) => {
    const qemu = await startForeignQemu(version, ['-machine', 'q35,memory-backend=mem', '-m', '256M', '-object', 'memory-backend-memfd,id=mem,size=256M,share=on,seal=off']);
    try {
      await using qmp = await qemu.connect(30_000);
      const err = await t.throwsAsync(discoverGuestMemory(qmp));
      t.is((err as GuestDmabufError).code, 'ERR_MEMFD_SEALS');
      t.regex(err!.message, /seal=on/);
    } finally {
      await qemu.kill();
    }
    t.deepEqual(ownMemfds(), [], 'the memfd taken for the check was closed');
  });

  test.serial(`${version}: killing QEMU mid-session rejects pending calls with ERR_QMP_CLOSED; launchQemu leaves no fds`, async (t) => {
    const before = openFdCount();
    const qemu = await launchQemu({ qemu: version, args: quiet, memory: [{ id: 'ram0', size: 256n << 20n }] });
    try {
      const closed = new Promise<unknown>((resolve) => qemu.qmp.once('close', resolve));
      // Commands QEMU is still busy with (or has not read) when it dies.
      const pending = Array.from({ length: 20 }, () => qemu.qmp.hmp('info mtree -f'));
      qemu.process.kill('SIGKILL');
      const results = await Promise.allSettled(pending);
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      t.true(failures.length > 0, 'some calls were still pending when QEMU died');
      for (const failure of failures) {
        t.true(failure.reason instanceof QmpConnectionError);
        t.is(failure.reason.code, 'ERR_QMP_CLOSED');
        t.regex(failure.reason.message, /human-monitor-command did not complete: QEMU \(pid \d+\) closed the QMP connection/);
      }
      t.is(((await closed) as QmpConnectionError).code, 'ERR_QMP_CLOSED');
    } finally {
      await qemu.close();
    }
    t.deepEqual(await qemu.exited, { code: null, signal: 'SIGKILL' });
    t.deepEqual(ownMemfds(), []);
    t.is(openFdCount(), before);
  });
}

test.serial('launchQemu: a QEMU that fails to start rejects with its message, leaving nothing open', async (t) => {
  const before = openFdCount();
  const err = await t.throwsAsync(launchQemu({ args: ['-no-such-option'], memory: [{ id: 'ram0', size: 64n << 20n }] }));
  t.is((err as GuestDmabufError).code, 'ERR_QEMU_START');
  t.regex(err!.message, /QEMU 7\.2 .* exited with status 1: .*-no-such-option: invalid option/);
  t.deepEqual(ownMemfds(), []);
  t.is(openFdCount(), before);
});

test.serial('verifyMapping: QEMU\'s pmemsave and the memfds agree across the 4 GiB split; a wrong map is caught at the first differing byte', async (t) => {
  const qemu = await launchQemu({ args: quiet, memory: [{ id: 'ram0', size: 3n * G }] });
  try {
    const memfd = qemu.memfds.get('ram0')!;
    const view = memfd.map();
    try {
      for (let i = 0; i < 2 << 20; i++) view[0x7ff00000 + i] = Math.imul(i, 2654435761) >>> 24; // no period a page shift hides
    } finally {
      unmap(view);
    }
    // 1 MiB below the PCI hole (GPA 0x7ff00000) and 1 MiB at 4 GiB: memfd-contiguous.
    t.deepEqual(await verifyMapping(qemu.qmp, qemu.memory, 0x7ff00000n, 1 << 20), { matches: true });
    t.deepEqual(await verifyMapping(qemu.qmp, qemu.memory, 4n * G, 1 << 20), { matches: true });
    // A map that puts high RAM one page off.
    const wrong = new GuestMemory(qemu.memory.regions.map((r) => (BigInt(r.gpa) === 4n * G ? { ...r, offset: BigInt(r.offset) - 4096n } : r)));
    const result = await verifyMapping(qemu.qmp, wrong, 4n * G, 1 << 20);
    t.false(result.matches);
    t.true(result.firstMismatch !== undefined && result.firstMismatch >= 4n * G && result.firstMismatch < 4n * G + 16n, `first mismatch at ${result.firstMismatch}`);
  } finally {
    await qemu.close();
  }
});

test.serial('7.2: two same-sized backends cannot be told apart by size: the error asks for qemuFds, which resolves it', async (t) => {
  const qemu = await startForeignQemu('7.2', [
    '-machine', 'q35,memory-backend=mem', '-m', '1G,slots=2,maxmem=4G',
    '-object', 'memory-backend-memfd,id=mem,size=1G,share=on',
    '-object', 'memory-backend-memfd,id=dimm0,size=1G,share=on',
    '-device', 'pc-dimm,id=d0,memdev=dimm0',
  ]);
  try {
    await using qmp = await qemu.connect(30_000);
    const err = await t.throwsAsync(discoverGuestMemory(qmp));
    t.is((err as GuestDmabufError).code, 'ERR_QEMU_MEMFD_AMBIGUOUS');
    t.regex(err!.message, /qemuFds: \{ '(mem|dimm0)': <fd number in QEMU> \}/);
    t.deepEqual(ownMemfds(), [], 'nothing taken on failure');
    // QEMU creates backends in command-line order: the lower fd is 'mem'.
    const fds = readdirSync(`/proc/${qemu.process.pid}/fd`).map(Number).filter((fd) => readlinkSync(`/proc/${qemu.process.pid}/fd/${fd}`).startsWith('/memfd:')).sort((a, b) => a - b);
    using found = await discoverGuestMemory(qmp, { qemuFds: { mem: fds[0]!, dimm0: fds[1]! } });
    t.is(found.evidence.get('mem'), 'named');
    t.deepEqual(found.regions.map((r) => r.backend), ['mem', 'mem', 'dimm0']);
    t.true(await verifyDimmAt4G(qmp, found.memfds.get('dimm0')!), 'the fd named for dimm0 holds the RAM at 4 GiB');
  } finally {
    await qemu.kill();
  }
});

/** Writes a pattern through `memfd` at offset 0 and checks QEMU reads it at GPA 4 GiB. */
async function verifyDimmAt4G(qmp: QmpClient, memfd: Memfd): Promise<boolean> {
  const view = memfd.map();
  const bytes = Uint8Array.from({ length: 4096 }, (_, i) => Math.imul(i + 1, 2654435761) >>> 24);
  try {
    view.set(bytes);
  } finally {
    unmap(view);
  }
  const dir = mkdtempSync(join(tmpdir(), 'guest-dmabuf-pmemsave-'));
  try {
    await qmp.execute('pmemsave', { val: Number(4n * G), size: 4096, filename: join(dir, 'out') });
    return Buffer.compare(readFileSync(join(dir, 'out')), Buffer.from(bytes)) === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const version of QEMU_VERSIONS) {
  test.serial(`${version}: fds sent with the command bytes reach QEMU: getfd then closefd, add-fd then query-fdsets`, async (t) => {
    const qemu = await launchQemu({ qemu: version, args: quiet, memory: [{ id: 'ram0', size: 64n << 20n }] });
    try {
      using memfd = Memfd.create('qmp-fd-passing', 4096);
      await qemu.qmp.execute('getfd', { fdname: 'passed' }, { fds: [memfd] });
      // closefd fails with GenericError when QEMU holds no fd of that name.
      await qemu.qmp.execute('closefd', { fdname: 'passed' });
      await t.throwsAsync(qemu.qmp.execute('closefd', { fdname: 'passed' }), { instanceOf: QmpError });
      const added = await qemu.qmp.execute<{ 'fdset-id': number; fd: number }>('add-fd', { 'fdset-id': 7, opaque: 'guest-dmabuf' }, { fds: [memfd] });
      t.is(added['fdset-id'], 7);
      const fdsets = await qemu.qmp.execute<{ 'fdset-id': number; fds: { fd: number; opaque?: string }[] }[]>('query-fdsets');
      t.deepEqual(fdsets.map((s) => [s['fdset-id'], s.fds.map((f) => f.opaque)]), [[7, ['guest-dmabuf']]]);
      t.regex(readlinkSync(`/proc/${qemu.process.pid}/fd/${added.fd}`), /^\/memfd:qmp-fd-passing/);
    } finally {
      await qemu.close();
    }
  });
}
