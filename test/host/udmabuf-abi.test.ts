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

test('struct udmabuf_create_list: 8-byte head, then 24-byte items', (t) => {
  const bytes = abi.encodeCreateList(0, [
    { memfd: 3, offset: 0n, size: 4096n },
    { memfd: 4, offset: 8192n, size: 4096n },
  ]);
  t.is(bytes.length, 8 + 48);
  const view = new DataView(bytes.buffer);
  t.is(view.getUint32(4, true), 2);
  t.is(view.getUint32(8 + 24, true), 4);
  t.is(view.getBigUint64(8 + 24 + 8, true), 8192n);
});
