// Edges of the create ABI: the item __pad (upstream ignores it in CREATE_LIST, so we do too;
// our own CREATE_NOTIFY refuses a non-zero one), and a size_limit_mb raised so far that the
// extent array would pass kvmalloc's INT_MAX: a clean E2BIG before anything is pinned, never
// a kernel warning.
import test from 'ava';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, ourDevice, withParam } from './helpers/devices.js';
import { readFileSync, writeFileSync } from 'node:fs';
import * as L from '../../lib/core/linux.js';
import { freeHugePages, reserveHugePages } from './helpers/memory.js';
import { memfd, native, openDevice, outcome, PAGE } from './helpers/raw.js';

const checkBaseline = baselineGuard(test);
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages';

/** The list encoded with `pad` in every item's __pad. */
function withPad(bytes: Uint8Array, headSize: number, count: number, pad: number): Uint8Array {
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) view.setUint32(headSize + 24 * i + 4, pad, true);
  return bytes;
}

for (const dut of devicesUnderTest()) {
  test.serial(`${dut.label}: CREATE_LIST ignores a non-zero item __pad, as upstream does`, (t) => {
    const dev = openDevice(dut.path);
    const fd = memfd(4 * PAGE);
    const items = [{ memfd: fd, offset: 0n, size: BigInt(2 * PAGE) }, { memfd: fd, offset: BigInt(2 * PAGE), size: BigInt(PAGE) }];
    const arg = withPad(abi.encodeCreateList(abi.UDMABUF_FLAGS_CLOEXEC, items), 8, 2, 0xdeadbeef);
    t.is(outcome(() => native.ioctl(dev, abi.UDMABUF_CREATE_LIST, arg)), 'OK');
    native.close(fd);
    native.close(dev);
  });
}

test.serial('ours: CREATE_NOTIFY refuses a non-zero item __pad with EINVAL', (t) => {
  const dev = openDevice(ourDevice().path);
  const fd = memfd(4 * PAGE);
  const efd = native.eventfd(0, false);
  const items = [{ memfd: fd, offset: 0n, size: BigInt(PAGE) }];
  const encode = (pad: number): Uint8Array => withPad(abi.encodeCreateNotify(abi.UDMABUF_FLAGS_CLOEXEC, efd, items), 16, 1, pad);
  t.is(outcome(() => native.ioctl(dev, abi.UDMABUF_CREATE_NOTIFY, encode(1))), 'EINVAL');
  t.is(outcome(() => native.ioctl(dev, abi.UDMABUF_CREATE_NOTIFY, encode(0))), 'OK');
  for (const f of [efd, fd, dev]) native.close(f);
});

test.serial('ours: a buffer whose extent array would pass INT_MAX bytes fails with E2BIG, no warning', async (t) => {
  const dev = openDevice(ourDevice().path);
  const size = 400n << 30n; // 100 Mi pages: 100 Mi extents of 4 KiB shmem pages
  const fd = memfd(size); // sparse: nothing is allocated before the driver refuses
  await withParam(ourDevice(), 'size_limit_mb', String(1 << 20), () => {
    t.is(outcome(() => native.ioctl(dev, abi.UDMABUF_CREATE, abi.encodeCreate(abi.UDMABUF_FLAGS_CLOEXEC, { memfd: fd, offset: 0n, size }))), 'E2BIG');
  });
  native.close(fd);
  native.close(dev);
});

test.serial('ours: a zero-size item at offset 0 of a hugetlb memfd is nothing to pin (it once hung the create)', (t) => {
  // Found by the ioctl fuzzer: the hugetlb scan ran from huge page 0 to (u64)-1 >> 21.
  const total = Number(readFileSync(NR_HUGEPAGES, 'utf8'));
  if (freeHugePages() < 1) reserveHugePages(total + 1);
  try {
    const dev = openDevice(ourDevice().path);
    const huge = memfd(2 << 20, L.F_SEAL_SHRINK, true);
    const small = memfd(PAGE);
    const items = [{ memfd: huge, offset: 0n, size: 0n }, { memfd: small, offset: 0n, size: BigInt(PAGE) }];
    const buf = native.ioctl(dev, abi.UDMABUF_CREATE_LIST, abi.encodeCreateList(abi.UDMABUF_FLAGS_CLOEXEC, items));
    t.is(native.fstat(buf).size, BigInt(PAGE), 'the buffer is the other item alone');
    for (const f of [buf, small, huge, dev]) native.close(f);
  } finally {
    writeFileSync(NR_HUGEPAGES, String(total)); // the file's baseline counts free huge pages
  }
});

checkBaseline();
