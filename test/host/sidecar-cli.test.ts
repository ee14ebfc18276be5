// `guest-dmabuf sidecar` as a program: --help, bad usage, serving as QEMU's vhost-user-gpu back
// end, peers of other uids refused unless --allow-uid names them (real processes run as
// those uids: SO_PEERCRED is the kernel's word), logs on stderr, SIGTERM exits 0 and removes
// both socket files.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SidecarClient } from '../../lib/index.js';
import { tempSocketPath } from './fixtures/sidecar-rig.js';
import { collect, exited, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

const here = dirname(fileURLToPath(import.meta.url));
const CLI = `${here}/../../qemu-glue/cli.js`;
const PEER = `${here}/fixtures/sidecar-peer.js`;

test('sidecar --help, and bad usage exits 64 saying what is wrong', (t) => {
  const help = spawnSync(process.execPath, [CLI, 'sidecar', '--help'], { encoding: 'utf8' });
  t.is(help.status, 0);
  t.regex(help.stdout, /--allow-uid UID/);
  t.regex(spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout, /guest-dmabuf sidecar --listen PATH/);
  const noFb = spawnSync(process.execPath, [CLI, 'sidecar', '--listen', '/tmp/x', '--vhost-user-gpu', '/tmp/y', '--framebuffer', 'gpa=0,width=1,height=1,stride=4,format=XR24'], { encoding: 'utf8' });
  t.is(noFb.status, 64);
  t.regex(noFb.stderr, /--framebuffer needs --qmp/);
  const badFb = spawnSync(process.execPath, [CLI, 'sidecar', '--listen', '/tmp/x', '--qmp', '/tmp/q', '--framebuffer', 'gpa=0,width=1,heigth=1'], { encoding: 'utf8' });
  t.is(badFb.status, 64);
  t.regex(badFb.stderr, /unknown key "heigth"/);
});

test.serial('serves peers as the vhost-user-gpu back end; another uid is refused unless allowed; SIGTERM exits 0 and removes the sockets', async (t) => {
  const listen = tempSocketPath(t, 'sidecar.sock');
  const gpu = `${dirname(listen)}/gpu.sock`;
  chmodSync(dirname(listen), 0o755);
  const child = spawn(process.execPath, [CLI, 'sidecar', '--listen', listen, '--vhost-user-gpu', gpu, '--allow-uid', '65533'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = collect(child.stderr);
  const done = exited(child);
  for (let i = 0; i < 500 && !/listening on .*sidecar\.sock/.test(stderr()); i++) await sleep(10);
  t.regex(stderr(), /attached to vhost-user-gpu back end on .*gpu\.sock/);
  chmodSync(listen, 0o777); // let the other users reach the socket: the sidecar itself is what refuses them

  {
    await using client = await SidecarClient.connect(listen);
    t.deepEqual(await client.list(), []);
  }
  const asUser = (uid: number): unknown => JSON.parse(spawnSync(process.execPath, [PEER, listen], { uid, gid: uid, encoding: 'utf8' }).stdout);
  t.like(asUser(65534), { code: 'ERR_SIDECAR_PEER_REFUSED' });
  t.regex((asUser(65534) as { message: string }).message, /--allow-uid 65534/);
  t.deepEqual(asUser(65533), { ok: 0 });
  const logged = async (pattern: RegExp): Promise<void> => {
    for (let i = 0; i < 500 && !pattern.test(stderr()); i++) await sleep(10);
    t.regex(stderr(), pattern);
  };
  await logged(/refused pid \d+ \(uid 65534\)/);
  await logged(/serving peer \d+ \(pid \d+, uid 65533\)/);

  child.kill('SIGTERM');
  t.like(await done, { code: 0 });
  t.regex(stderr(), /SIGTERM: withdrawing every surface and exiting/);
  t.false(existsSync(listen));
  t.false(existsSync(gpu));
});
