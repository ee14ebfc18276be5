// Accounting charges what a buffer really pins: a page of a 2 MiB folio (hugetlb, or a shmem
// transparent huge page) pins the whole folio, so the buffer is charged the whole folio, once
// per buffer however many of its pages the buffer uses. Workers run as nobody with
// RLIMIT_MEMLOCK of 4 MiB (1024 pages, two huge folios).
import test from 'ava';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Step } from './fixtures/memlock-worker.js';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice } from './helpers/devices.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { meminfoKb, reserveHugePages } from './helpers/memory.js';
import { codes, runWorker } from './helpers/memlock.js';

reserveHugePages(16); // the worker's 16 MiB memfd is 8 of them
const checkBaseline = baselineGuard(test);
const HUGE = 2 << 20;
const FOLIO_PAGES = HUGE / 4096;
const SHMEM_ENABLED = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';

let mode = 0;
test.before(() => {
  mode = statSync(ourDevice().path).mode & 0o777;
  chmodSync(ourDevice().path, 0o666);
});
test.after.always(() => chmodSync(ourDevice().path, mode));

/** What each buffer the worker holds at its 'hold' step is charged, in creation order. */
async function chargesOf(steps: Step[], options: { hugetlb?: boolean }, atHold: () => void = () => {}): Promise<{ codes: string[]; charged: number[] }> {
  let charged: number[] = [];
  const outcomes = await runWorker(steps, {
    ...options,
    onHold: ({ pid }) => {
      atHold();
      charged = ourBuffers().filter((b) => b.creatorPid === pid).map((b) => b.chargedPages);
    },
  });
  return { codes: codes(outcomes), charged };
}

const cases: Step[] = [
  { create: 4096, offset: 0 }, // one page of huge folio 0: charged the folio
  { createList: [{ offset: 4096, size: 4096 }, { offset: 3 * 4096, size: 4096 }] }, // two pages of folio 0: the folio once
  { create: 4096, offset: HUGE }, // folio 1: over 4 MiB (three folios charged in all)
  { hold: true },
  { close: 0 },
  { create: 4096, offset: HUGE }, // room for one folio again
];

test.serial('hugetlb: a 4 KiB buffer is charged its whole 2 MiB folio, once per buffer', async (t) => {
  const result = await chargesOf(cases, { hugetlb: true });
  t.deepEqual(result.codes, ['OK', 'OK', 'ENOMEM', 'OK']);
  t.deepEqual(result.charged, [FOLIO_PAGES, FOLIO_PAGES]);
});

test.serial('shmem THP: a 4 KiB buffer is charged its whole 2 MiB folio, once per buffer', async (t) => {
  const old = /\[(\w+)\]/.exec(readFileSync(SHMEM_ENABLED, 'utf8'))![1]!;
  writeFileSync(SHMEM_ENABLED, 'force'); // the worker's memfd gets huge folios when it fills it
  let hugeKb = 0;
  try {
    const result = await chargesOf(cases, {}, () => void (hugeKb = meminfoKb('ShmemHugePages')));
    t.true(hugeKb >= 16 << 10, `the worker's memfd is in huge folios (ShmemHugePages ${hugeKb} kB)`);
    t.deepEqual(result.codes, ['OK', 'OK', 'ENOMEM', 'OK']);
    t.deepEqual(result.charged, [FOLIO_PAGES, FOLIO_PAGES]);
  } finally {
    writeFileSync(SHMEM_ENABLED, old);
  }
});

test.serial('4 KiB shmem pages are still charged page by page, a page used twice once', async (t) => {
  const result = await chargesOf([{ createList: [{ offset: 0, size: 8192 }, { offset: 4096, size: 8192 }] }, { create: 4096 }, { hold: true }], {});
  t.deepEqual(result.codes, ['OK', 'OK']);
  t.deepEqual(result.charged, [3, 1]);
});

checkBaseline();
