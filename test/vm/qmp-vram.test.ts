// VGA VRAM as device RAM, in the VM with the udmabuf driver: a nested QEMU with `-device VGA`
// runs briefly so SeaBIOS maps the VRAM BAR, then stops. On 10.0 with
// `-machine aux-ram-share=on`, discovery lists the VRAM at the BAR's address with its own
// memfd (`/memfd:0000:00:02.0/vga.vram`), in the GuestMemory: bytes written through that memfd
// are what QEMU's pmemsave reads at the BAR. But QEMU makes that memfd without
// MFD_ALLOW_SEALING, so it lacks F_SEAL_SHRINK forever, and udmabuf (the kernel itself, not
// only our check) refuses it: the export fails with ERR_MEMFD_SEALS saying so. Without
// aux-ram-share (10.0) or on 7.2, the VRAM is listed with the reason it has no memfd.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { discoverGuestMemory, exportFramebuffer, guestRamRanges, Udmabuf, unmap, verifyMapping, type QmpClient } from '../../lib/index.js';
import { errnoCode } from '../../lib/core/errors.js';
import { native } from '../../lib/core/native.js';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import { startForeignQemu, type ForeignQemu } from '../qemu-attach.js';
import { baselineGuard } from './helpers/baseline.js';

const checkBaseline = baselineGuard(test);

const CLI = fileURLToPath(new URL('../../qemu-glue/cli.js', import.meta.url));
const VRAM = 16n << 20n;
const args = (auxRamShare: boolean): string[] => ['-machine', `pc,memory-backend=mem${auxRamShare ? ',aux-ram-share=on' : ''}`, '-m', '256M', '-object', 'memory-backend-memfd,id=mem,size=256M,share=on', '-device', 'VGA'];

interface PciRegion {
  bar: number;
  address: number;
  size: number;
}

/** Lets the firmware run until it has mapped the VGA device's BAR 0 (the VRAM), then stops the CPUs; returns the BAR's address. */
async function mapVramBar(qmp: QmpClient): Promise<bigint> {
  await qmp.execute('cont');
  const deadline = performance.now() + 120_000;
  try {
    for (;;) {
      const buses = await qmp.execute<{ devices: { class_info: { class: number }; regions: PciRegion[] }[] }[]>('query-pci');
      const vga = buses.flatMap((b) => b.devices).find((d) => d.class_info.class === 0x0300);
      const bar = vga?.regions.find((r) => r.bar === 0);
      // Unassigned BARs read back as 0, -1 or all ones; SeaBIOS assigns it below 4 GiB. Done
      // once the flat view maps the VRAM there (the legacy VGA window names vga.vram earlier).
      if (bar && bar.address > 0 && bar.address < 0xffff_ffff) {
        const address = BigInt(bar.address);
        const mapped = guestRamRanges(await qmp.hmp('info mtree -f')).some((r) => r.region === 'vga.vram' && r.start === address);
        if (mapped) return address;
      }
      if (performance.now() > deadline) throw new Error(`the firmware did not map the VGA BAR within 120 s: ${JSON.stringify(bar)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await qmp.execute('stop');
  }
}

async function withQemu(version: '7.2' | '10.0', auxRamShare: boolean, body: (qemu: ForeignQemu, qmp: QmpClient, bar: bigint) => Promise<void>): Promise<void> {
  const qemu = await startForeignQemu(version, args(auxRamShare));
  try {
    const qmp = await qemu.connect(60_000);
    try {
      await body(qemu, qmp, await mapVramBar(qmp));
    } finally {
      qmp.close();
    }
  } finally {
    await qemu.kill();
  }
}

test.serial('10.0 aux-ram-share=on: VGA VRAM is discovered at its BAR with its memfd, reads back through pmemsave, and its export is refused naming the missing seal', async (t) => {
  await withQemu('10.0', true, async (qemu, qmp, bar) => {
    using found = await discoverGuestMemory(qmp);
    const mtree = guestRamRanges(await qmp.hmp('info mtree -f')).filter((r) => r.region === 'vga.vram');
    t.deepEqual(mtree.map((r) => [r.start, r.end - r.start]), [[bar, VRAM]], 'info mtree -f maps the VRAM once, at the BAR');
    t.is(found.deviceRam.length, 1);
    const vram = found.deviceRam[0]!;
    t.like(vram, { gpa: bar, size: VRAM, region: 'vga.vram', offset: 0n, block: '0000:00:02.0/vga.vram' });
    t.truthy(vram.memfd);
    t.is(vram.memfd!.size, VRAM);
    t.deepEqual(vram.seals, ['seal']);
    t.regex(vram.reason ?? '', /without F_SEAL_SHRINK and sealed it against adding seals \(created without MFD_ALLOW_SEALING\)/);
    t.true(found.memory.regions.some((r) => r.name === 'vga.vram' && BigInt(r.gpa) === bar), 'the VRAM is in the GuestMemory');

    // Bytes put in the memfd are what the guest sees at the BAR.
    const view = vram.memfd!.map();
    for (let i = 0; i < 1 << 20; i++) view[0x1000 + i] = (i * 7 + 3) & 0xff;
    unmap(view);
    t.deepEqual(await verifyMapping(qmp, found.memory, bar + 0x1000n, 1 << 20), { matches: true });
    const other = vram.memfd!.map();
    other[0x1000] ^= 0xff;
    unmap(other);
    t.deepEqual(await verifyMapping(qmp, found.memory, bar + 0x1000n, 16), { matches: true }, 'a change through the memfd is seen by QEMU too');

    // Export: our check says why, and the kernel agrees (EINVAL) when asked directly.
    using dev = Udmabuf.open();
    const err = t.throws(() => exportFramebuffer(dev, found.memory, { gpa: bar, width: 1024, height: 768, stride: 4096, format: 'XR24' }));
    t.is((err as { code?: string }).code, 'ERR_MEMFD_SEALS');
    t.regex(err!.message, /cannot get it .*MFD_ALLOW_SEALING.*aux-ram-share/);
    let kernel: unknown;
    try {
      native.close(native.ioctl(dev.fd, abi.UDMABUF_CREATE, abi.encodeCreate(abi.UDMABUF_FLAGS_CLOEXEC, { memfd: vram.memfd!.fd, offset: 0n, size: 1n << 20n })));
    } catch (e) {
      kernel = e;
    }
    t.is(errnoCode(kernel), 'EINVAL', 'the driver refuses a memfd without F_SEAL_SHRINK');

    // guest-dmabuf qemu info lists it (QEMU takes one QMP client at a time: ours steps aside).
    qmp.close();
    const cli = spawnSync(process.execPath, [CLI, 'qemu', 'info', '--qmp', qemu.socketPath, '--json'], { encoding: 'utf8', timeout: 120_000 });
    t.is(cli.status, 0, cli.stderr);
    const info = JSON.parse(cli.stdout) as { deviceRam: { start: number; size: number; region: string; block?: string; seals?: string[]; exportable: boolean; reason?: string }[] };
    t.like(info.deviceRam[0], { start: Number(bar), size: Number(VRAM), region: 'vga.vram', block: '0000:00:02.0/vga.vram', seals: ['seal'], exportable: false });
    const text = spawnSync(process.execPath, [CLI, 'qemu', 'info', '--qmp', qemu.socketPath], { encoding: 'utf8', timeout: 120_000 });
    t.regex(text.stdout, new RegExp(`device RAM:\\n  0x${bar.toString(16).padStart(16, '0')}-0x[0-9a-f]{16}  vga\\.vram \\(block 0000:00:02\\.0/vga\\.vram\\)  memfd, seals seal: not exportable: QEMU made its memfd without F_SEAL_SHRINK`));
  });
});

for (const [version, auxRamShare, reason] of [
  ['10.0', false, /private memory: start QEMU 10\.0 or later with `-machine aux-ram-share=on`/],
  ['7.2', false, /no host addresses \(QEMU before 8\.0\)/],
] as const) {
  test.serial(`${version}${auxRamShare ? ' aux-ram-share=on' : ''}: VGA VRAM is listed at its BAR with why it has no memfd; guest RAM exports as before`, async (t) => {
    await withQemu(version, auxRamShare, async (_qemu, qmp, bar) => {
      using found = await discoverGuestMemory(qmp);
      t.is(found.deviceRam.length, 1);
      const vram = found.deviceRam[0]!;
      t.like(vram, { gpa: bar, size: VRAM, region: 'vga.vram' });
      t.is(vram.memfd, undefined);
      t.regex(vram.reason ?? '', reason);
      t.false(found.memory.regions.some((r) => r.name === 'vga.vram'));
      const mtree = guestRamRanges(await qmp.hmp('info mtree -f')).filter((r) => r.region === 'mem');
      t.deepEqual(found.regions, mtree.map((r) => ({ gpa: r.start, size: r.end - r.start, backend: 'mem', offset: r.offset })), 'guest RAM as before: exactly the backend ranges of info mtree -f');
    });
  });
}

checkBaseline();
