// The `info mtree -f` parser on outputs captured from real QEMU 7.2 and 10.0 (fixtures/mtree:
// q35 with 6 GiB, pc with 4 GiB, q35 with 2 GiB and a 1 GiB hot-plugged DIMM).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { guestRamRanges, parseFlatViews } from '../../lib/index.js';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../../../test/host/fixtures/mtree/${name}`, import.meta.url)), 'utf8');
const G = 1n << 30n;
const M = 1n << 20n;
const summary = (text: string): string[] => guestRamRanges(text).map((r) => `${r.region} ${r.start.toString(16)}-${r.end.toString(16)} @${r.offset.toString(16)}`);

for (const version of ['7.2', '10.0']) {
  test(`QEMU ${version} q35 6 GiB: 2 GiB below 4 GiB (minus the VGA/BIOS hole), 4 GiB above at offset 2 GiB`, (t) => {
    t.deepEqual(summary(fixture(`qemu-${version}-q35-6G.txt`)), ['ram0 0-c0000 @0', 'ram0 100000-80000000 @100000', 'ram0 100000000-200000000 @80000000']);
  });
  test(`QEMU ${version} pc 4 GiB: 3 GiB below 4 GiB, 1 GiB above at offset 3 GiB`, (t) => {
    const ranges = guestRamRanges(fixture(`qemu-${version}-pc-4G.txt`));
    t.deepEqual(summary(fixture(`qemu-${version}-pc-4G.txt`)), ['ram0 0-c0000 @0', 'ram0 100000-c0000000 @100000', 'ram0 100000000-140000000 @c0000000']);
    t.is(ranges.reduce((sum, r) => sum + (r.end - r.start), 0n), 4n * G - 256n * 1024n);
  });
  test(`QEMU ${version} q35 2 GiB + DIMM: the DIMM is its own backend at 4 GiB, other address spaces ignored`, (t) => {
    const text = fixture(`qemu-${version}-q35-2G-dimm.txt`);
    t.deepEqual(summary(text), ['ram0 0-c0000 @0', 'ram0 100000-80000000 @100000', 'dimm0 100000000-140000000 @0']);
    // Other views (cpu-smm, and on 10.0 the DIMM's own at 0) repeat ranges: only "memory" counts.
    t.true(parseFlatViews(text).filter((v) => v.ranges.some((r) => r.region === 'dimm0')).length >= 2);
  });
}

test('ROM, I/O and priorities are parsed; ram ranges only are guest RAM', (t) => {
  const views = parseFlatViews(fixture('qemu-7.2-q35-6G.txt'));
  const cpu = views.find((v) => v.addressSpaces.includes('memory'))!;
  t.is(cpu.root, 'system');
  t.true(cpu.ranges.some((r) => r.type === 'rom' && r.region === 'pc.bios' && r.offset === 0x20000n));
  t.true(cpu.ranges.some((r) => r.type === 'i/o' && r.region === 'apic-msi' && r.priority === 4096));
  t.is(cpu.ranges.filter((r) => r.type === 'ram').length, 3);
  t.is(M, 1n << 20n);
});

test('suffixes after the offset (KVM) and CRLF are tolerated; unknown lines are named', (t) => {
  const text = 'FlatView #0\r\n AS "memory", root: system\r\n Root memory region: system\r\n  0000000000000000-000000007fffffff (prio 0, ram): pc.ram KVM\r\n  0000000100000000-000000017fffffff (prio 0, ram): pc.ram @0000000080000000 KVM\r\n';
  t.deepEqual(summary(text), ['pc.ram 0-80000000 @0', 'pc.ram 100000000-180000000 @80000000']);
  t.throws(() => parseFlatViews('FlatView #0\n AS "memory", root: system\n  garbage here\n'), { message: /line 3 of `info mtree -f`: "  garbage here"/ });
  t.throws(() => guestRamRanges('FlatView #0\n AS "I/O", root: io\n'), { message: /no flat view for address space "memory"/ });
});
