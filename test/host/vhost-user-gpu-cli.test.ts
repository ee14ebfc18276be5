// The guest-dmabuf-vhost-user-gpu program as QEMU and libvirt run it (QEMU's back-end program
// conventions): --help, --print-capabilities, clear errors with a non-zero exit, serving the
// scripted front end on --socket-path and on an inherited --fd, SIGTERM; and the vhost-user.json
// description that `guest-dmabuf vhost-user-gpu install` writes for libvirt.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { describeBackend, gpuCapabilities } from '../../qemu-glue/vhost-user-gpu/description.js';
import { Request } from '../../qemu-glue/vhost-user/protocol.js';
import { DriverQueue, FrontEnd, GuestRam } from './fixtures/vhost-front-end.js';
import { collect, exited } from './fixtures/support.js';

const BINARY = fileURLToPath(new URL('../../qemu-glue/vhost-user-gpu-cli.js', import.meta.url));
const MAIN_CLI = fileURLToPath(new URL('../../qemu-glue/cli.js', import.meta.url));
const TEMPLATE = fileURLToPath(new URL('../../../qemu-glue/vhost-user-gpu/50-guest-dmabuf-gpu.json', import.meta.url));

const run = (args: string[], cli = BINARY): { status: number | null; stdout: string; stderr: string } => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000 });

function tempDir(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-user-gpu-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves with the stderr text once `pattern` appears in it. */
function waitFor(text: () => string, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (pattern.test(text())) resolve(text());
      else if (Date.now() > deadline) reject(new Error(`no ${pattern} in:\n${text()}`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

test('--help describes the options and exits 0', (t) => {
  const { status, stdout } = run(['--help']);
  t.is(status, 0);
  for (const option of ['--socket-path=PATH', '--fd=FDNUM', '--print-capabilities', '--copy-on-transfer', 'SIGTERM', 'memory-backend-memfd']) t.true(stdout.includes(option), option);
});

test('--print-capabilities prints vhost-user.json capabilities of type gpu, ignoring everything else', (t) => {
  for (const args of [['--print-capabilities'], ['--no-such-option', '--print-capabilities', '--fd=oops']]) {
    const { status, stdout, stderr } = run(args);
    t.is(status, 0, stderr);
    const capabilities = JSON.parse(stdout) as unknown;
    t.deepEqual(capabilities, { type: 'gpu', features: [] }, 'no render node, no virgl: neither option is supported');
    t.deepEqual(capabilities, gpuCapabilities());
  }
});

const usageErrors: [string[], RegExp][] = [
  [[], /give exactly one of --socket-path=PATH and --fd=FDNUM/],
  [['--socket-path=/tmp/x', '--fd=3'], /give exactly one of/],
  [['--fd=three'], /--fd must be a file descriptor number, not "three"/],
  [['--socket-path='], /--socket-path needs a path/],
  [['--fd=3', '--virgl'], /--virgl is not supported: this back end is virtio-gpu 2D only/],
  [['--fd=3', '--render-node=/dev/dri/renderD128'], /--render-node is not supported/],
  [['--fd=3', '--frobnicate'], /Unknown option '--frobnicate'/],
];

for (const [args, message] of usageErrors) {
  test(`bad usage ${JSON.stringify(args)} exits 64 with a clear message`, (t) => {
    const { status, stdout, stderr } = run(args);
    t.is(status, 64);
    t.is(stdout, '');
    t.regex(stderr, message);
  });
}

test('what cannot be served exits 1 naming the problem: a socket path that is a file, an fd that is not open', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'not-a-socket');
  writeFileSync(file, '');
  const onFile = run([`--socket-path=${file}`]);
  t.is(onFile.status, 1);
  t.regex(onFile.stderr, /exists and is not a socket: choose another --socket-path/);
  const badFd = run(['--fd=63']);
  t.is(badFd.status, 1);
  t.regex(badFd.stderr, /fd 63 is not open .*ERR_VHOST_USER_BAD_FD/);
});

async function startFrontEnd(socket: UnixSocket): Promise<{ front: FrontEnd; done: () => void }> {
  const ram = new GuestRam();
  const queues = [new DriverQueue(ram, 0, 64, 0x1000), new DriverQueue(ram, 1, 16, 0x4000)];
  const front = new FrontEnd(socket);
  await front.start(ram, queues);
  return {
    front,
    done: () => {
      socket.close();
      for (const q of queues) q.close();
      ram[Symbol.dispose]();
    },
  };
}

test('--socket-path: serves QEMU, serves the next after a disconnect, and SIGTERM removes the socket and exits 0', async (t) => {
  const path = join(tempDir(t), 'gpu.sock');
  const child = spawn(process.execPath, [BINARY, `--socket-path=${path}`, '--verbose'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = collect(child.stderr);
  const end = exited(child);
  await waitFor(stderr, /listening on .*gpu\.sock \(zero-copy\)/);
  child.kill('SIGUSR1');
  await waitFor(stderr, /stats: no front end connected/);
  for (const n of [1, 2]) {
    const { front, done } = await startFrontEnd(await UnixSocket.connect(path));
    t.is(await front.askU64(Request.GET_QUEUE_NUM), 2n);
    child.kill('SIGUSR1');
    await waitFor(stderr, /stats: commands=0 flushes=0 .*bytesCopied=0 /);
    done();
    await waitFor(stderr, new RegExp(`front end ${n} disconnected after \\d+ requests \\(commands=0 flushes=0 [^)]*\\); the device was reset, waiting for the next`));
  }
  child.kill('SIGTERM');
  const { code } = await end;
  t.is(code, 0, stderr());
  t.false(existsSync(path), 'the socket file is removed');
  t.regex(stderr(), /front end 1 connected \(pid \d+/);
  t.regex(stderr(), /front end 1: SET_MEM_TABLE \(5\), \d+ bytes, 2 fds/, '--verbose logs requests');
  t.regex(stderr(), /SIGTERM: disconnecting and exiting/);
});

test('--fd: serves the inherited socketpair end (as libvirt passes it) and exits 0 when QEMU closes it', async (t) => {
  const [ours, theirs] = UnixSocket.pair();
  const child = spawn(process.execPath, [BINARY, '--fd=3', '--copy-on-transfer'], { stdio: ['ignore', 'pipe', 'pipe', theirs.fd] });
  theirs.close();
  const stderr = collect(child.stderr);
  const end = exited(child);
  await waitFor(stderr, /serving fd 3 \(copy-on-transfer\)/);
  const { front, done } = await startFrontEnd(ours);
  t.is(await front.askU64(Request.GET_QUEUE_NUM), 2n);
  done();
  const { code } = await end;
  t.is(code, 0, stderr());
  t.regex(stderr(), /front end 1 disconnected/);
});

test('the description template is what the installer writes, and install --dir writes it with this installation\'s executable binary', (t) => {
  t.deepEqual(JSON.parse(readFileSync(TEMPLATE, 'utf8')), describeBackend('@BINARY@'));
  const dir = tempDir(t);
  const { status, stdout, stderr } = run(['vhost-user-gpu', 'install', '--dir', dir], MAIN_CLI);
  t.is(status, 0, stderr);
  const file = join(dir, '50-guest-dmabuf-gpu.json');
  t.is(stdout.trim(), `wrote ${file}`);
  const description = JSON.parse(readFileSync(file, 'utf8')) as { type: string; binary: string; description: string };
  t.is(description.type, 'gpu');
  t.true(description.binary.startsWith('/') && description.binary.endsWith('vhost-user-gpu-cli.js'));
  t.notThrows(() => accessSync(description.binary, constants.X_OK), 'libvirt executes it directly');
  // What libvirt does with it: run the binary for its capabilities.
  const caps = spawnSync(description.binary, ['--print-capabilities'], { encoding: 'utf8' });
  t.is(caps.status, 0, caps.stderr);
  t.is((JSON.parse(caps.stdout) as { type: string }).type, 'gpu');
  const clash = run(['vhost-user-gpu', 'install', '--dir', dir, '--system'], MAIN_CLI);
  t.is(clash.status, 64);
  t.regex(clash.stderr, /one of --dir, --system and --print, not --dir and --system/);
});
