// What a leak in the vhost-user-gpu back end would leave in this process: fds (all of them, and
// dma-bufs among them), pages pinned by our driver for buffers this process created (its debugfs
// list), and locked_vm.
import type { ExecutionContext } from 'ava';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { native } from '../../../lib/core/native.js';
import { EventFd } from '../../../lib/fd/eventfd.js';
import { ourBuffers, type OurBuffer } from './dmabuf-debugfs.js';

export interface ProcessResources {
  fds: number;
  /** What each fd is (readlink), for saying which ones are extra. */
  links: string[];
  dmabufFds: number;
  /** Our driver's live buffers created by this process. */
  buffers: OurBuffer[];
  lockedKb: number;
}

function fdLinks(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return []; // closed while listing (the readdir's own fd)
    }
  });
}

export function processResources(): ProcessResources {
  const links = fdLinks();
  const locked = /^VmLck:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return {
    fds: links.length,
    links,
    dmabufFds: links.filter((l) => l.startsWith('/dmabuf:') || l === 'anon_inode:dmabuf').length,
    buffers: ourBuffers().filter((b) => b.creatorPid === process.pid),
    lockedKb: Number(locked?.[1] ?? NaN),
  };
}

/** Pages pinned by this process's live buffers. */
export const pinnedPages = (r: ProcessResources): number => r.buffers.reduce((sum, b) => sum + b.pages, 0);

/** The fds in `now` beyond those in `before`, by what they are. */
export function extraFds(before: ProcessResources, now: ProcessResources): string[] {
  const left = [...before.links];
  return now.links.filter((link) => {
    const at = left.indexOf(link);
    if (at < 0) return true;
    left.splice(at, 1);
    return false;
  });
}

/**
 * Starts the addon's poller (it polls on the event loop and keeps no fd of its own, but whatever
 * a first wait sets up should be in a baseline): call before taking a baseline.
 */
export async function startPoller(): Promise<void> {
  using eventfd = EventFd.create();
  setTimeout(() => eventfd.signal(), 10);
  await eventfd.wait();
}

/** Everything a back end took is given back: fds, dma-bufs, our driver's buffers, locked_vm, poller watches. */
export function assertBackToBaseline(t: ExecutionContext, baseline: ProcessResources, what: string): void {
  const now = processResources();
  t.is(now.fds, baseline.fds, `${what}: open fds (extra: ${extraFds(baseline, now).join(', ')})`);
  t.is(now.dmabufFds, baseline.dmabufFds, `${what}: dma-buf fds`);
  t.deepEqual(now.buffers, baseline.buffers, `${what}: our driver's buffers created by this process`);
  t.is(now.lockedKb, baseline.lockedKb, `${what}: locked_vm`);
  t.deepEqual(native.pollerStats(), { watches: 0, waits: 0 }, `${what}: no kick fd left watched`);
}
