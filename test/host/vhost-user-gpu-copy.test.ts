// Copy-on-transfer: the scanout's dma-buf is a host memfd per resource, and TRANSFER_TO_HOST_2D
// copies exactly its rectangle from the guest's backing into it (QEMU's 2D semantics). The
// stand-in exports mirror the memfd they are made from (fixtures/gpu-rig.ts), so these tests
// read what the display would read.
import test from 'ava';
import { GpuRequest } from '../../qemu-glue/vhost-user-gpu/gpu-socket.js';
import { Response as R } from '../../qemu-glue/vhost-user-gpu/virtio-gpu-protocol.js';
import { attach, create2d, detach, flush, Rig, setScanout, transfer, unref } from './fixtures/gpu-rig.js';
import { HIGH_GPA } from './fixtures/vhost-front-end.js';
import { openFdCount, pattern, warmUp } from './fixtures/support.js';

test.before(warmUp);

const [W, H, STRIDE] = [64, 64, 256];
const SIZE = STRIDE * H; // 16384: four pages

/** The expected host image after copying `rect` of `source` (a backing laid out like the image) into `image`. */
function applyRect(image: Uint8Array, source: Uint8Array, x: number, y: number, w: number, h: number): void {
  for (let row = y; row < y + h; row++) image.set(source.subarray(row * STRIDE + x * 4, row * STRIDE + (x + w) * 4), row * STRIDE + x * 4);
}

/** The number of bytes where a and b differ. */
function differing(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

async function copyRig(backing: [number, number][] = [[0x100000, SIZE]]): Promise<Rig> {
  const rig = new Rig({ mode: 'copy-on-transfer', mirror: true, observable: true });
  await rig.start();
  for (const request of [create2d(1, W, H), attach(1, backing), setScanout(0, 1, W, H)]) {
    if ((await rig.type(request)) !== R.OK_NODATA) throw new Error('setup refused');
  }
  return rig;
}

test.serial('a sub-rectangle transfer changes exactly that rectangle of the exported host copy', async (t) => {
  const before = openFdCount();
  const rig = await copyRig();
  const scanout = await rig.display!.waitFor(GpuRequest.DMABUF_SCANOUT2, 1);
  t.is(scanout.length, 1);
  t.true(scanout[0]!.fdLinks[0]!.startsWith('/memfd:virtio-gpu resource 1'), `QEMU was sent the host copy (${scanout[0]!.fdLinks[0]})`);
  t.true(rig.device.hostCopies.get(1)!.memfd.seals.includes('shrink'), 'sealed as udmabuf needs');
  const exported = rig.exports[0]!;
  t.is(differing(rig.exportedBytes(exported), new Uint8Array(SIZE)), 0, 'a fresh host image is all zeros, whatever the backing holds');

  const first = pattern(1, SIZE);
  rig.ram.at(0x100000, SIZE).set(first);
  t.is(differing(rig.exportedBytes(exported), new Uint8Array(SIZE)), 0, 'guest writes alone do not reach the display');
  t.is(await rig.type(transfer(1, W, H)), R.OK_NODATA);
  t.is(differing(rig.exportedBytes(exported), first), 0, 'a full transfer copies everything');
  t.is(rig.device.stats.bytesCopied, SIZE);

  const second = pattern(2, SIZE);
  rig.ram.at(0x100000, SIZE).set(second);
  // Linux's offset for a rectangle at (x, y): y × stride + x × bpp.
  const [x, y, w, h] = [8, 4, 16, 10];
  t.is(await rig.type(transfer(1, w, h, BigInt(y * STRIDE + x * 4), x, y)), R.OK_NODATA);
  const expected = first.slice();
  applyRect(expected, second, x, y, w, h);
  const after = rig.exportedBytes(exported);
  t.is(differing(after, expected), 0, 'the rectangle came from the new backing, the rest is as before');
  t.true(differing(after, first) > 0.9 * w * h * 4, 'and the rectangle did change');
  t.is(rig.device.stats.bytesCopied, SIZE + w * h * 4, 'only the rectangle was copied');
  t.is(await rig.type(flush(1, W, H)), R.OK_NODATA);
  t.is(rig.exports.length, 1, 'one export for the resource, updated in place');
  t.deepEqual(rig.warnings.map((w) => w.message), []);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('a transfer from a backing in two pieces, across the RAM regions, lands where it should', async (t) => {
  const rig = await copyRig([[0x100000, SIZE / 2], [HIGH_GPA + 0x4000, SIZE / 2]]);
  const source = pattern(3, SIZE);
  rig.ram.at(0x100000, SIZE / 2).set(source.subarray(0, SIZE / 2));
  rig.ram.at(HIGH_GPA + 0x4000, SIZE / 2).set(source.subarray(SIZE / 2));
  // Rows 28..35 straddle the two pieces (the split is at row 32); columns 60..63 end at the right edge.
  const [x, y, w, h] = [60, 28, 4, 8];
  t.is(await rig.type(transfer(1, w, h, BigInt(y * STRIDE + x * 4), x, y)), R.OK_NODATA);
  const expected = new Uint8Array(SIZE);
  applyRect(expected, source, x, y, w, h);
  t.is(differing(rig.exportedBytes(rig.exports[0]!), expected), 0);
  await rig.close();
});

const badTransfers: [string, Uint8Array, number][] = [
  ['a rectangle past the right edge', transfer(1, 8, 8, 0n, 60, 0), R.ERR_INVALID_PARAMETER],
  ['a rectangle past the bottom', transfer(1, 64, 2, 0n, 0, 63), R.ERR_INVALID_PARAMETER],
  ['a rectangle whose x + width wraps u32', transfer(1, 0xffff_fff8, 1, 0n, 16, 0), R.ERR_INVALID_PARAMETER],
  ['an offset that reads past the backing', transfer(1, 64, 64, 4n), R.ERR_INVALID_PARAMETER],
  ['an offset near 2^64', transfer(1, 1, 1, 0xffff_ffff_ffff_fff0n), R.ERR_INVALID_PARAMETER],
];

for (const [name, request, expected] of badTransfers) {
  test.serial(`copy-on-transfer: ${name} gets 0x${expected.toString(16)} and copies nothing`, async (t) => {
    const rig = await copyRig();
    rig.ram.at(0x100000, SIZE).set(pattern(4, SIZE));
    t.is(await rig.type(request), expected);
    t.is(rig.device.stats.bytesCopied, 0);
    t.is(differing(rig.exportedBytes(rig.exports[0]!), new Uint8Array(SIZE)), 0, 'the host image is untouched');
    await rig.close();
  });
}

test.serial('zero copy copies nothing and keeps no host memory', async (t) => {
  const rig = new Rig({ mirror: true });
  await rig.start();
  for (const request of [create2d(1, W, H), attach(1, [[0x100000, SIZE]]), setScanout(0, 1, W, H), transfer(1, W, H), transfer(1, 8, 8, 0n, 8, 8), flush(1, W, H)]) {
    t.is(await rig.type(request), R.OK_NODATA);
  }
  t.is(rig.device.stats.bytesCopied, 0);
  t.is(rig.device.hostCopies.bytes, 0);
  // The export is the guest's own pages: a guest write shows without any transfer.
  rig.ram.at(0x100000, SIZE).set(pattern(5, SIZE));
  t.is(differing(rig.exportedBytes(rig.exports[0]!), pattern(5, SIZE)), 0);
  await rig.close();
});

test.serial('host copies count against maxHostCopyBytes: over it OUT_OF_MEMORY, and UNREF gives it back', async (t) => {
  const before = openFdCount();
  const rig = new Rig({ mode: 'copy-on-transfer', limits: { maxHostCopyBytes: 2 * SIZE } });
  await rig.start();
  for (const id of [1, 2, 3]) {
    t.is(await rig.type(create2d(id, W, H)), R.OK_NODATA);
    t.is(await rig.type(attach(id, [[0x100000 * id, SIZE]])), R.OK_NODATA);
  }
  t.is(await rig.type(transfer(1, W, H)), R.OK_NODATA);
  t.is(await rig.type(setScanout(0, 2, W, H)), R.OK_NODATA);
  t.is(rig.device.hostCopies.bytes, 2 * SIZE);
  t.is(await rig.type(transfer(3, W, H)), R.ERR_OUT_OF_MEMORY);
  t.is(await rig.type(setScanout(0, 3, W, H)), R.ERR_OUT_OF_MEMORY);
  t.is(rig.device.hostCopies.bytes, 2 * SIZE);
  t.is(await rig.type(unref(1)), R.OK_NODATA);
  t.is(rig.device.hostCopies.bytes, SIZE);
  t.is(await rig.type(transfer(3, W, H)), R.OK_NODATA);
  t.is(rig.device.hostCopies.bytes, 2 * SIZE);
  await rig.close();
  t.is(openFdCount(), before);
});

test.serial('copy-on-transfer: DETACH_BACKING neither waits nor blanks the display; the host image stays', async (t) => {
  const rig = await copyRig();
  rig.ram.at(0x100000, SIZE).set(pattern(6, SIZE));
  t.is(await rig.type(transfer(1, W, H)), R.OK_NODATA);
  rig.exports[0]!.hold(); // QEMU's display still shows it
  const started = performance.now();
  t.is(await rig.type(detach(1)), R.OK_NODATA);
  t.true(performance.now() - started < 1000);
  t.not(rig.device.scanout(0), null, 'still shown');
  t.false(rig.exports[0]!.disposed);
  rig.ram.at(0x100000, SIZE).fill(0); // the guest reuses its pages
  t.is(differing(rig.exportedBytes(rig.exports[0]!), pattern(6, SIZE)), 0, 'the display still reads the transferred picture');
  t.is(await rig.type(transfer(1, W, H)), R.ERR_UNSPEC, 'no backing to transfer from');
  t.is(rig.display!.of(GpuRequest.DMABUF_SCANOUT).length, 0, 'no disable was sent');
  await rig.close();
});
