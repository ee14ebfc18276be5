// How a process called udmabuf, recorded by the LD_PRELOAD shim fixtures/udmabuf-trace.c (built
// here with gcc into a scratch folder: the shim's format is documented at its top).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../../vm/paths.js';

export interface TracedItem {
  offset: bigint;
  size: bigint;
}

export interface TracedCreate {
  kind: 'create' | 'create_list';
  /** The new dma-buf fd, or -errno. */
  ret: number;
  flags: number;
  items: TracedItem[];
  bytes: bigint;
  /** The ioctl's own time. */
  ns: number;
}

export interface TracedMmap {
  fd: number;
  len: number;
  prot: number;
  /** 0, or -errno. */
  ret: number;
  ns: number;
}

export interface TracedMemfd {
  /** The memfd, or -errno. */
  ret: number;
  /** memfd_create's flags (MFD_CLOEXEC 1, MFD_ALLOW_SEALING 2, MFD_HUGETLB 4). */
  flags: number;
  name: string;
}

export interface TracedSeals {
  fd: number;
  /** The seals F_ADD_SEALS added (F_SEAL_SEAL 1, SHRINK 2, GROW 4, WRITE 8, FUTURE_WRITE 16). */
  seals: number;
  /** 0, or -errno. */
  ret: number;
}

export interface UdmabufTrace {
  creates: TracedCreate[];
  mmaps: TracedMmap[];
  memfds: TracedMemfd[];
  seals: TracedSeals[];
}

/** Compiles the shim into `dir`; returns the .so for LD_PRELOAD. */
export function buildUdmabufTrace(dir: string): string {
  const source = join(PROJECT_ROOT, 'test', 'vm', 'fixtures', 'udmabuf-trace.c');
  const target = join(dir, 'udmabuf-trace.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', target, source, '-ldl'], { stdio: ['ignore', 'inherit', 'inherit'] });
  return target;
}

function fields(line: string): Map<string, string> {
  return new Map(line.split(' ').slice(1).map((f) => {
    const at = f.indexOf('=');
    if (at < 0) throw new Error(`udmabuf trace: a field without '=' in "${line}"`);
    return [f.slice(0, at), f.slice(at + 1)] as const;
  }));
}

function need(map: Map<string, string>, key: string, line: string): string {
  const value = map.get(key);
  if (value === undefined) throw new Error(`udmabuf trace: no ${key}= in "${line}"`);
  return value;
}

export function parseUdmabufTrace(text: string): UdmabufTrace {
  const trace: UdmabufTrace = { creates: [], mmaps: [], memfds: [], seals: [] };
  for (const line of text.split('\n')) {
    if (!line) continue;
    const kind = line.split(' ', 1)[0];
    const f = fields(line);
    if (kind === 'create' || kind === 'create_list') {
      const list = need(f, 'items', line);
      const items = list ? list.split(',').map((item) => {
        const [offset, size] = item.split('+');
        return { offset: BigInt(offset!), size: BigInt(size!) };
      }) : [];
      const count = Number(need(f, 'count', line));
      if (items.length !== count) throw new Error(`udmabuf trace: count=${count} but ${items.length} items in "${line.slice(0, 200)}"`);
      trace.creates.push({ kind, ret: Number(need(f, 'ret', line)), flags: Number(need(f, 'flags', line)), items, bytes: BigInt(need(f, 'bytes', line)), ns: Number(need(f, 'ns', line)) });
    } else if (kind === 'mmap') {
      trace.mmaps.push({ fd: Number(need(f, 'fd', line)), len: Number(need(f, 'len', line)), prot: Number(need(f, 'prot', line)), ret: Number(need(f, 'ret', line)), ns: Number(need(f, 'ns', line)) });
    } else if (kind === 'memfd') {
      trace.memfds.push({ ret: Number(need(f, 'ret', line)), flags: Number(need(f, 'flags', line)), name: need(f, 'name', line) });
    } else if (kind === 'seals') {
      trace.seals.push({ fd: Number(need(f, 'fd', line)), seals: Number(need(f, 'seals', line)), ret: Number(need(f, 'ret', line)) });
    } else {
      throw new Error(`udmabuf trace: unknown line "${line.slice(0, 200)}"`);
    }
  }
  return trace;
}

export const micros = (ns: number): string => `${(ns / 1000).toFixed(0)} µs`;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}
