// `guest-dmabuf qemu info` against a real QEMU 7.2 on the host: text and JSON, exit status 2
// with the reason for RAM that cannot be exported, usage errors.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startForeignQemu } from '../qemu-attach.js';

const CLI = fileURLToPath(new URL('../../qemu-glue/cli.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });

test.serial('qemu info --json: backends, the RAM map and the memfd evidence; exit 0', async (t) => {
  const qemu = await startForeignQemu('7.2', ['-machine', 'q35,memory-backend=mem', '-m', '6G', '-object', 'memory-backend-memfd,id=mem,size=6G,share=on']);
  try {
    (await qemu.connect()).close(); // listening now
    const result = run('qemu', 'info', '--qmp', qemu.socketPath, '--json');
    t.is(result.status, 0, result.stderr);
    const info = JSON.parse(result.stdout);
    t.is(info.qemu.pid, qemu.process.pid);
    t.true(info.exportable);
    t.deepEqual(info.backends.map((b: { id: string; type: string; memfd?: { evidence: string } }) => [b.id, b.type, b.memfd?.evidence]), [['mem', 'memory-backend-memfd', 'size']]);
    t.deepEqual(info.ram.map((r: { start: number }) => r.start), [0, 0x100000, 0x100000000]);
    const text = run('qemu', 'info', '--qmp', qemu.socketPath);
    t.is(text.status, 0, text.stderr);
    t.regex(text.stdout, /^QEMU 7\.2\.\d+ .*, pid \d+\n/);
    t.regex(text.stdout, /0x0000000100000000-0x00000001ffffffff  mem @0x0000000080000000/);
    t.regex(text.stdout, /exportable: yes/);
  } finally {
    await qemu.kill();
  }
});

test.serial('qemu info on private RAM: exit 2 with how to start QEMU', async (t) => {
  const qemu = await startForeignQemu('7.2', ['-m', '256M']);
  try {
    (await qemu.connect()).close(); // listening now
    const result = run('qemu', 'info', '--qmp', qemu.socketPath);
    t.is(result.status, 2, result.stderr);
    t.regex(result.stdout, /pc\.ram +memory-backend-ram/);
    t.regex(result.stdout, /exportable: no: .*memory-backend-memfd,id=pc\.ram,size=268435456,share=on/);
  } finally {
    await qemu.kill();
  }
});

test('usage: --help exits 0, a missing --qmp or unknown command exits 64, nobody listening exits 1', (t) => {
  const help = run('--help');
  t.is(help.status, 0);
  t.regex(help.stdout, /Usage: guest-dmabuf qemu info --qmp PATH/);
  t.is(run('qemu', 'info').status, 64);
  t.is(run('frobnicate').status, 64);
  const missing = run('qemu', 'info', '--qmp', '/nonexistent/qmp.sock');
  t.is(missing.status, 1);
  t.regex(missing.stderr, /ENOENT/);
});
