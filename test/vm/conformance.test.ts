// Upstream udmabuf behaviour, case by case: the kselftest's seven behaviours and every
// validation upstream makes, with upstream's errno. On 6.12 each case runs against the in-tree
// driver too, so the two are shown to agree.
import test from 'ava';
import { openSync, readFileSync } from 'node:fs';
import * as L from '../../lib/core/linux.js';
import * as abi from '../../lib/kernel/udmabuf-abi.js';
import * as dmaBufAbi from '../../lib/kernel/dma-buf-abi.js';
import { baselineGuard } from './helpers/baseline.js';
import { devicesUnderTest, readParam } from './helpers/devices.js';
import { reserveHugePages } from './helpers/memory.js';
import { create, createList, fillPattern, mapShared, memfd, native, openDevice, outcome, PAGE, syncBuffer, unmapView } from './helpers/raw.js';

const HUGE = 2 << 20;
reserveHugePages(16);
const checkBaseline = baselineGuard(test);

/** Creates `items` over `fd`, writes the memfd after (or before) creating, and compares. */
function assertShowsMemfdWrites(dev: number, fd: number, memfdSize: number, items: { offset: number; size: number }[], writeFirst: boolean): boolean {
  const source = mapShared(fd, memfdSize);
  try {
    if (writeFirst) fillPattern(source, 1);
    const buf = items.length === 1 ? create(dev, { memfd: fd, ...items[0]! }) : createList(dev, items.map((i) => ({ memfd: fd, ...i })));
    const total = items.reduce((s, i) => s + i.size, 0);
    const view = mapShared(buf, total, false);
    try {
      fillPattern(source, 7); // written after create: the dma-buf must see it
      let at = 0;
      for (const i of items) {
        if (Buffer.compare(view.subarray(at, at + i.size), source.subarray(i.offset, i.offset + i.size)) !== 0) return false;
        at += i.size;
      }
      return true;
    } finally {
      unmapView(view);
      native.close(buf);
    }
  } finally {
    unmapView(source);
    native.close(fd);
  }
}

for (const dut of devicesUnderTest()) {
  const name = (what: string): string => `${dut.label}: ${what}`;
  const withDev = <T>(fn: (dev: number) => T): T => {
    const dev = openDevice(dut.path);
    try {
      return fn(dev);
    } finally {
      native.close(dev);
    }
  };

  test.serial(name('an unaligned offset fails with EINVAL'), (t) => {
    withDev((dev) => {
      const fd = memfd(64 * PAGE);
      t.is(outcome(() => create(dev, { memfd: fd, offset: PAGE - 1, size: PAGE })), 'EINVAL');
      native.close(fd);
    });
  });

  test.serial(name('an unaligned size fails with EINVAL'), (t) => {
    withDev((dev) => {
      const fd = memfd(64 * PAGE);
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE + 1 })), 'EINVAL');
      native.close(fd);
    });
  });

  test.serial(name('a fd that is not a memfd fails with EBADFD'), (t) => {
    withDev((dev) => {
      const devnull = openSync('/dev/null', 'r');
      t.is(outcome(() => create(dev, { memfd: devnull, offset: 0, size: PAGE })), 'EBADFD');
      native.close(devnull);
      const regular = openSync('/proc/self/stat', 'r');
      t.is(outcome(() => create(dev, { memfd: regular, offset: 0, size: PAGE })), 'EBADFD');
      native.close(regular);
    });
  });

  test.serial(name('a closed fd fails with EBADFD'), (t) => {
    withDev((dev) => {
      const fd = memfd(PAGE);
      native.close(fd);
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'EBADFD');
    });
  });

  test.serial(name('a 4-page create succeeds and the dma-buf has that size'), (t) => {
    withDev((dev) => {
      const fd = memfd(64 * PAGE);
      const buf = create(dev, { memfd: fd, offset: 0, size: 4 * PAGE });
      t.true(buf >= 0);
      t.regex(readFdinfo(buf), new RegExp(`^size:\\s+${4 * PAGE}$`, 'm'));
      native.close(buf);
      native.close(fd);
    });
  });

  test.serial(name('a 4-entry CREATE_LIST over a 1024-page memfd shows the memfd\'s later writes'), (t) => {
    withDev((dev) => {
      const items = [0, 100, 300, 1020].map((p) => ({ offset: p * PAGE, size: 4 * PAGE }));
      t.true(assertShowsMemfdWrites(dev, memfd(1024 * PAGE), 1024 * PAGE, items, true));
    });
  });

  test.serial(name('the same over a 2 MiB hugetlb memfd'), (t) => {
    withDev((dev) => {
      const items = [0, 64, 200, 508].map((p) => ({ offset: p * PAGE, size: 4 * PAGE }));
      t.true(assertShowsMemfdWrites(dev, memfd(HUGE, L.F_SEAL_SHRINK, true), HUGE, items, true));
    });
  });

  test.serial(name('a buffer created before the memfd is first written sees the writes (shmem)'), (t) => {
    withDev((dev) => {
      const items = [0, 100, 300, 1020].map((p) => ({ offset: p * PAGE, size: 4 * PAGE }));
      t.true(assertShowsMemfdWrites(dev, memfd(1024 * PAGE), 1024 * PAGE, items, false));
    });
  });

  test.serial(name('a buffer created before the memfd is first written sees the writes (hugetlb)'), (t) => {
    withDev((dev) => {
      const items = [0, 64, 200, 508].map((p) => ({ offset: p * PAGE, size: 4 * PAGE }));
      t.true(assertShowsMemfdWrites(dev, memfd(HUGE, L.F_SEAL_SHRINK, true), HUGE, items, false));
    });
  });

  test.serial(name('seals: missing shrink, or write / future-write present, fail with EINVAL'), (t) => {
    withDev((dev) => {
      const cases: [string, number][] = [
        ['no seals', 0],
        ['grow only', L.F_SEAL_GROW],
        ['shrink + write', L.F_SEAL_SHRINK | L.F_SEAL_WRITE],
        ['shrink + future-write', L.F_SEAL_SHRINK | L.F_SEAL_FUTURE_WRITE],
      ];
      for (const [label, seals] of cases) {
        const fd = memfd(4 * PAGE, seals);
        t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: PAGE })), 'EINVAL', label);
        native.close(fd);
      }
      const ok = memfd(4 * PAGE, L.F_SEAL_SHRINK | L.F_SEAL_GROW | L.F_SEAL_SEAL);
      t.is(outcome(() => create(dev, { memfd: ok, offset: 0, size: PAGE })), 'OK', 'shrink + grow + seal');
      native.close(ok);
    });
  });

  test.serial(name('zero size fails with EINVAL'), (t) => {
    withDev((dev) => {
      const fd = memfd(4 * PAGE);
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: 0 })), 'EINVAL');
      t.is(outcome(() => createList(dev, [{ memfd: fd, offset: 0, size: 0 }, { memfd: fd, offset: PAGE, size: 0 }])), 'EINVAL');
      native.close(fd);
    });
  });

  test.serial(name('a range past the end of the memfd fails with EINVAL'), (t) => {
    withDev((dev) => {
      const fd = memfd(4 * PAGE);
      t.is(outcome(() => create(dev, { memfd: fd, offset: 4 * PAGE, size: PAGE })), 'EINVAL');
      native.close(fd);
    });
  });

  test.serial(name('more items than list_limit fail with EINVAL'), (t) => {
    withDev((dev) => {
      const limit = Number(readParam(dut, 'list_limit'));
      const fd = memfd((limit + 1) * PAGE);
      const items = Array.from({ length: limit + 1 }, (_, i) => ({ memfd: fd, offset: i * PAGE, size: PAGE }));
      t.is(outcome(() => createList(dev, items)), 'EINVAL');
      t.is(outcome(() => createList(dev, items.slice(0, limit))), 'OK');
      native.close(fd);
    });
  });

  test.serial(name('a buffer over size_limit_mb fails with EINVAL'), (t) => {
    withDev((dev) => {
      const limit = Number(readParam(dut, 'size_limit_mb')) << 20;
      const fd = memfd(limit + PAGE);
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: limit + PAGE })), 'EINVAL');
      t.is(outcome(() => create(dev, { memfd: fd, offset: 0, size: limit })), 'OK');
      native.close(fd);
    });
  });

  test.serial(name('an unknown ioctl fails with ENOTTY'), (t) => {
    withDev((dev) => {
      t.is(outcome(() => native.ioctl(dev, L.ioc('w', 'u', 0x44, 8), new Uint8Array(8))), 'ENOTTY');
    });
  });

  test.serial(name('mmap is MAP_SHARED only'), (t) => {
    withDev((dev) => {
      const fd = memfd(4 * PAGE);
      const buf = create(dev, { memfd: fd, offset: 0, size: 4 * PAGE });
      const err = t.throws(() => native.mmap(buf, 4 * PAGE, L.PROT_READ, L.MAP_PRIVATE, 0));
      t.is((err as { code?: string }).code, 'EINVAL');
      native.close(buf);
      native.close(fd);
    });
  });

  test.serial(name('DMA_BUF_IOCTL_SYNC: END without START fails with EINVAL; START then END works'), (t) => {
    withDev((dev) => {
      const fd = memfd(4 * PAGE);
      const buf = create(dev, { memfd: fd, offset: 0, size: 4 * PAGE });
      const sync = (flags: number): string => syncBuffer(buf, flags);
      t.is(sync(dmaBufAbi.DMA_BUF_SYNC_END | dmaBufAbi.DMA_BUF_SYNC_RW), 'EINVAL');
      t.is(sync(dmaBufAbi.DMA_BUF_SYNC_START | dmaBufAbi.DMA_BUF_SYNC_RW), 'OK');
      t.is(sync(dmaBufAbi.DMA_BUF_SYNC_END | dmaBufAbi.DMA_BUF_SYNC_RW), 'OK');
      native.close(buf);
      native.close(fd);
    });
  });

  test.serial(name('UDMABUF_FLAGS_CLOEXEC sets close-on-exec on the new fd'), (t) => {
    withDev((dev) => {
      const fd = memfd(PAGE);
      for (const [flags, expected] of [[abi.UDMABUF_FLAGS_CLOEXEC, true], [0, false]] as const) {
        const buf = create(dev, { memfd: fd, offset: 0, size: PAGE }, flags);
        const octal = /^flags:\s+(\d+)$/m.exec(readFdinfo(buf))![1]!;
        t.is((parseInt(octal, 8) & 0o2000000) !== 0, expected);
        native.close(buf);
      }
      native.close(fd);
    });
  });
}

function readFdinfo(fd: number): string {
  return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
}

checkBaseline();
