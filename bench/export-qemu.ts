// The bench:export row against QEMU itself: making a 3840x2160 XRGB8888 frame of a real
// (nested, stopped) QEMU's guest RAM available to another process, through QEMU's own copy
// path, `pmemsave` (QEMU writes the range to a file; the consumer reads it), against our
// export of the same range of the same QEMU's memfd (create a dma-buf, release it). A QMP
// round trip that does nothing (query-status) is measured too, to show what of pmemsave's
// cost is the monitor rather than the copy.
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportFramebuffer, launchQemu, Udmabuf, unmap, type QemuVersion } from '../lib/index.js';
import { formatNs, median, printTable } from './stats.js';

const WIDTH = 3840;
const HEIGHT = 2160;
const BYTES = WIDTH * HEIGHT * 4;
const GPA = 16 << 20;

async function timeAsyncNs(fn: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started);
}

async function measureAsync(run: () => Promise<number>, rounds: number, warmup: number): Promise<number> {
  const samples: number[] = [];
  for (let round = 0; round < warmup + rounds; round++) {
    const ns = await run();
    if (round >= warmup) samples.push(ns);
  }
  return median(samples);
}

/** Measures the rows with QEMU `version`; prints the table and returns the summary line. */
export async function qemuCopyPathRows(dev: Udmabuf, version: QemuVersion, rounds: number, warmup: number): Promise<string> {
  const title = `${WIDTH}x${HEIGHT} XRGB8888 (${(BYTES / 2 ** 20).toFixed(1)} MiB) from a nested QEMU ${version}'s guest RAM`;
  const qemu = await launchQemu({ qemu: version, args: ['-S', '-nodefaults', '-display', 'none', '-accel', 'tcg'], memory: [{ id: 'ram0', size: 256n << 20n }] });
  const dir = mkdtempSync(join(tmpdir(), 'bench-pmemsave-'));
  try {
    const fb = { gpa: GPA, width: WIDTH, height: HEIGHT, stride: WIDTH * 4, format: 'XR24' };
    // A frame that is not all zeros, and proof that both paths hand out the same bytes.
    {
      using surface = exportFramebuffer(dev, qemu.memory, fb);
      const view = surface.dmabuf.map({ write: true });
      surface.dmabuf.sync('write', () => {
        for (let i = 0; i < BYTES; i += 4093) view[i] = (i >>> 12) & 0xff;
      });
      const mine = Buffer.from(view);
      unmap(view);
      await qemu.qmp.execute('pmemsave', { val: GPA, size: BYTES, filename: join(dir, 'check') });
      if (!readFileSync(join(dir, 'check')).equals(mine)) throw new Error('bench bug: pmemsave and the dma-buf disagree');
    }
    const file = join(dir, 'frame');
    const figures: [string, number][] = [
      ['QMP round trip (query-status)', await measureAsync(() => timeAsyncNs(async () => void (await qemu.qmp.execute('query-status'))), rounds, warmup)],
      ['QEMU copy path: pmemsave to tmpfs + read', await measureAsync(() => timeAsyncNs(async () => {
        await qemu.qmp.execute('pmemsave', { val: GPA, size: BYTES, filename: file });
        readFileSync(file);
        unlinkSync(file);
      }), rounds, warmup)],
      ['ours: export (create + release)', await measureAsync(() => timeAsyncNs(async () => exportFramebuffer(dev, qemu.memory, fb)[Symbol.dispose]()), rounds, warmup)],
    ];
    const copy = figures[1]![1];
    const ours = figures[2]![1];
    console.log(`\n${title}`);
    printTable(['row', 'median', 'vs pmemsave'], figures.map(([name, ns]) => [name, formatNs(ns), (ns / copy).toFixed(4)]));
    return `${title}: our export is ${(copy / ours).toFixed(0)}x cheaper than QEMU's pmemsave copy path (${formatNs(ours)} vs ${formatNs(copy)})`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await qemu.close();
  }
}
