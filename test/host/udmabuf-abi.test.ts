// The udmabuf ABI encodings match the kernel's: ioctl numbers and struct layouts.
import test from 'ava';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';

test('ioctl numbers are upstream\'s', (t) => {
  t.is(abi.UDMABUF_CREATE, 0x40187542);
  t.is(abi.UDMABUF_CREATE_LIST, 0x40087543);
  t.is(dmaBufAbi.DMA_BUF_IOCTL_SYNC, 0x40086200);
  t.is(dmaBufAbi.DMA_BUF_SET_NAME, 0x40086201);
  t.is(dmaBufAbi.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xc0086202);
});

test('struct udmabuf_create is 24 little-endian bytes', (t) => {
  const bytes = abi.encodeCreate(1, { memfd: 5, offset: 0x1000n, size: 0x200000000n });
  t.deepEqual([...bytes], [5, 0, 0, 0, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
});

/** Little-endian bytes of a u32 and a u64, as the kernel lays them out on x86-64. */
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const u64 = (v: bigint): number[] => [...u32(Number(v & 0xffffffffn)), ...u32(Number(v >> 32n))];

test('struct udmabuf_create_list: 8-byte head (flags, count), then 24-byte items, every field in place', (t) => {
  const bytes = abi.encodeCreateList(abi.UDMABUF_FLAGS_CLOEXEC, [
    { memfd: 3, offset: 0n, size: 4096n },
    { memfd: 0x01020304, offset: 0x123456789000n, size: 0xa0000000n },
  ]);
  t.deepEqual([...bytes], [
    ...u32(1), ...u32(2), // flags, count
    ...u32(3), ...u32(0), ...u64(0n), ...u64(4096n), // memfd, __pad, offset, size
    ...u32(0x01020304), ...u32(0), ...u64(0x123456789000n), ...u64(0xa0000000n),
  ]);
  t.deepEqual([...abi.encodeCreateList(0, [{ memfd: 7, offset: 0n, size: 4096n }], 0)].slice(0, 8), [...u32(0), ...u32(0)], 'count as given, not as listed');
});

test('struct udmabuf_create_notify: flags, count, eventfd, pad, then items', (t) => {
  const bytes = abi.encodeCreateNotify(abi.UDMABUF_FLAGS_CLOEXEC, 9, [{ memfd: 4, offset: 0x2000n, size: 0x3000n }]);
  t.deepEqual([...bytes], [...u32(1), ...u32(1), ...u32(9), ...u32(0), ...u32(4), ...u32(0), ...u64(0x2000n), ...u64(0x3000n)]);
  t.deepEqual([...abi.encodeCreateNotify(0, -1, [])].slice(8, 12), [0xff, 0xff, 0xff, 0xff], 'eventfd -1 is all ones');
});
