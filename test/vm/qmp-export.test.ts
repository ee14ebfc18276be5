// End to end in the VM, with the udmabuf driver: real nested QEMU 7.2 and 10.0 (TCG, -S),
// both ways in (launchQemu, and attaching to a QEMU started with -qmp unix:). Discovery gives
// exactly `info mtree -f`'s RAM; bytes written through exported dma-bufs (one spanning the
// 4 GiB split, one framebuffer above it) read back identically through QEMU's pmemsave;
// killing QEMU mid-session rejects pending calls and leaves no fd behind.
import test from 'ava';
import { readdirSync, readlinkSync } from 'node:fs';
import {
  discoverGuestMemory,
  exportFramebuffer,
  exportVirtioGpuResource,
  guestRamRanges,
  launchQemu,
  QmpClient,
  QmpConnectionError,
  Udmabuf,
  unmap,
  type GuestMemory,
  type QemuVersion,
} from '../../lib/index.js';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';
import { pmemsave } from './helpers/pmemsave.js';

const G = 1n << 30n;
const M = 1 << 20;
const quiet = ['-S', '-nodefaults', '-display', 'none', '-accel', 'tcg'];

/** This process's memfds and dma-bufs. */
function heldBuffers(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      return /memfd:|dmabuf/.test(link) ? [`${fd} ${link}`] : [];
    } catch {
      return [];
    }
  });
}

function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}


/** Writes through a dma-buf spanning the 4 GiB split and through a framebuffer above it; QEMU reads them back. */
async function writeAndReadBack(t: import('ava').ExecutionContext, qmp: QmpClient, memory: GuestMemory, lowEnd: bigint): Promise<void> {
  using dev = Udmabuf.open();
  // Backing entries as a guest driver gives them: the last MiB below the hole, the first above 4 GiB.
  const below = lowEnd - BigInt(M);
  {
    using surface = exportVirtioGpuResource(dev, memory, { resourceId: 1, format: 2, width: 1024, height: 512, entries: [{ addr: below, length: M }, { addr: 4n * G, length: M }] });
    t.is(surface.dmabuf.size, BigInt(2 * M));
    const bytes = pattern(1, 2 * M);
    const view = surface.dmabuf.map({ write: true });
    surface.dmabuf.sync('write', () => view.set(bytes));
    unmap(view);
    t.deepEqual(await pmemsave(qmp, below, M), bytes.subarray(0, M), 'the part below 4 GiB');
    t.deepEqual(await pmemsave(qmp, 4n * G, M), bytes.subarray(M), 'the part above 4 GiB');
  }
  {
    const gpa = 4n * G + 16n * BigInt(M) + 0x800n; // not page-aligned: a plane offset
    using fb = exportFramebuffer(dev, memory, { gpa, width: 640, height: 480, stride: 2560, format: 'XR24' });
    const offset = fb.planes[0].offset;
    t.is(offset, 0x800);
    const bytes = pattern(2, 2560 * 480);
    const view = fb.dmabuf.map({ write: true });
    fb.dmabuf.sync('write', () => view.set(bytes, offset));
    unmap(view);
    t.deepEqual(await pmemsave(qmp, gpa, bytes.length), bytes, 'the framebuffer');
  }
}

async function checkDiscovery(t: import('ava').ExecutionContext, qmp: QmpClient, regions: readonly { gpa: bigint; size: bigint; backend: string; offset: bigint }[]): Promise<void> {
  const mtree = guestRamRanges(await qmp.hmp('info mtree -f'));
  t.deepEqual(regions, mtree.map((r) => ({ gpa: r.start, size: r.end - r.start, backend: r.region, offset: r.offset })));
}

for (const version of QEMU_VERSIONS as readonly QemuVersion[]) {
  test.serial(`${version}: launchQemu q35 6 GiB: discovery equals info mtree -f; dma-buf writes across the 4 GiB split read back through pmemsave`, async (t) => {
    const before = heldBuffers();
    const started = performance.now();
    const qemu = await launchQemu({ qemu: version, args: quiet, memory: [{ id: 'ram0', size: 6n * G }] });
    t.log(`QEMU ${version} launched and memory discovered in ${(performance.now() - started).toFixed(0)} ms`);
    try {
      await checkDiscovery(t, qemu.qmp, qemu.discovered.regions);
      t.deepEqual(qemu.discovered.regions.map((r) => r.gpa), [0n, 0x100000n, 4n * G]);
      await writeAndReadBack(t, qemu.qmp, qemu.memory, 0x80000000n);
    } finally {
      await qemu.close();
    }
    t.deepEqual(heldBuffers(), before);
  });

  test.serial(`${version}: attach (-qmp unix:) to pc 4 GiB: memfd by pidfd_getfd; dma-buf writes across the split read back`, async (t) => {
    const before = heldBuffers();
    const started = performance.now();
    const qemu = await startForeignQemu(version, ['-machine', 'pc,memory-backend=mem', '-m', '4G', '-object', 'memory-backend-memfd,id=mem,size=4G,share=on']);
    try {
      await using qmp = await qemu.connect(60_000);
      t.log(`QEMU ${version} answered QMP ${(performance.now() - started).toFixed(0)} ms after spawn`);
      using found = await discoverGuestMemory(qmp);
      await checkDiscovery(t, qmp, found.regions);
      await writeAndReadBack(t, qmp, found.memory, 0xc0000000n);
    } finally {
      await qemu.kill();
    }
    t.deepEqual(heldBuffers(), before);
  });

  test.serial(`${version}: attach with a hot-plugged DIMM: the DIMM's own memfd exports and reads back`, async (t) => {
    const qemu = await startForeignQemu(version, [
      '-machine', 'q35,memory-backend=mem', '-m', '2G,slots=2,maxmem=8G',
      '-object', 'memory-backend-memfd,id=mem,size=2G,share=on',
      '-object', 'memory-backend-memfd,id=dimm0,size=1G,share=on',
      '-device', 'pc-dimm,id=d0,memdev=dimm0',
    ]);
    try {
      await using qmp = await qemu.connect(60_000);
      using found = await discoverGuestMemory(qmp);
      await checkDiscovery(t, qmp, found.regions);
      const dimm = found.regions.find((r) => r.backend === 'dimm0')!;
      using dev = Udmabuf.open();
      using fb = exportFramebuffer(dev, found.memory, { gpa: dimm.gpa + 0x1000n, width: 256, height: 256, stride: 1024, format: 'XR24' });
      const bytes = pattern(3, 1024 * 256);
      const view = fb.dmabuf.map({ write: true });
      fb.dmabuf.sync('write', () => view.set(bytes));
      unmap(view);
      t.deepEqual(await pmemsave(qmp, dimm.gpa + 0x1000n, bytes.length), bytes);
    } finally {
      await qemu.kill();
    }
  });

  test.serial(`${version}: killing QEMU mid-session rejects pending calls with ERR_QMP_CLOSED and leaves no fds`, async (t) => {
    const before = heldBuffers();
    const qemu = await launchQemu({ qemu: version, args: quiet, memory: [{ id: 'ram0', size: 1n * G }] });
    try {
      using dev = Udmabuf.open();
      using fb = exportFramebuffer(dev, qemu.memory, { gpa: 0x1000000, width: 64, height: 64, stride: 256, format: 'XR24' });
      t.true(fb.dmabuf.size > 0n);
      const pending = Array.from({ length: 20 }, () => qemu.qmp.hmp('info mtree -f'));
      qemu.process.kill('SIGKILL');
      const failures = (await Promise.allSettled(pending)).filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      t.true(failures.length > 0);
      for (const failure of failures) {
        t.true(failure.reason instanceof QmpConnectionError);
        t.is(failure.reason.code, 'ERR_QMP_CLOSED');
      }
      t.true(qemu.qmp.closed);
    } finally {
      await qemu.close();
    }
    t.deepEqual(heldBuffers(), before);
  });
}
