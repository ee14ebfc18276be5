// The VM runner's unload check, when rmmod fails, names what keeps the module loaded
// (vm/guest-init.ts, module_holders): run here against this kernel's /proc with real holders,
// a child process that has the device open and one of our dma-bufs as fds, as a program left
// running after a test (a QEMU that still has /dev/udmabuf open) would.
import test from 'ava';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Memfd, Udmabuf } from '../../lib/index.js';
import { MODULE_HOLDERS } from '../../vm/guest-init.js';

const devName = basename(process.env.GUEST_DMABUF_DEVICE ?? '/dev/udmabuf');
const holders = (): string[] =>
  execFileSync('busybox', ['sh', '-c', `${MODULE_HOLDERS}\nmodule_holders "$1"`, 'sh', devName], { encoding: 'utf8' }).split('\n').filter(Boolean);

test('module_holders names a process holding the device and one of our dma-bufs, and forgets it once gone', async (t) => {
  using dev = Udmabuf.open();
  using memfd = Memfd.create('module-holders', 1 << 16, { seals: ['shrink'] });
  using dmabuf = dev.create([{ memfd, offset: 0, size: 1 << 16 }]);
  const child = spawn('sleep', ['600'], { stdio: ['ignore', 'ignore', 'ignore', dev.fd, dmabuf.fd] });
  const gone = new Promise((resolve) => child.on('exit', resolve));
  try {
    const listed = holders();
    t.log(listed.join('\n'));
    t.true(listed.includes(`pid ${child.pid} (sleep) has /dev/${devName} open as fd 3`), 'the device, by pid, command and fd');
    t.true(listed.includes(`pid ${child.pid} (sleep) holds a guest_udmabuf dma-buf as fd 4`), 'our dma-buf, told by its exporter name');
    t.true(listed.some((l) => l.startsWith(`pid ${process.pid} (`)), 'this process too: it holds both');
    // What QEMU does (it opens /dev/udmabuf at realize and never closes it): the module must not
    // go while anyone holds the device or a buffer.
    const rmmod = spawnSync('rmmod', ['guest_udmabuf'], { encoding: 'utf8' });
    t.not(rmmod.status, 0, 'rmmod refuses while the device is held');
    t.regex(rmmod.stderr, /in use/i, rmmod.stderr);
    t.true(existsSync('/sys/module/guest_udmabuf'), 'the module is still loaded');
  } finally {
    child.kill('SIGKILL');
    await gone;
  }
  t.false(holders().some((l) => l.startsWith(`pid ${child.pid} `)), 'a process that ended is not listed');
});
