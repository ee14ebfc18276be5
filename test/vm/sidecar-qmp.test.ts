// `guest-dmabuf sidecar --qmp` with every part real: QEMU 7.2 and 10.0 (memfd guest RAM, -S),
// the sidecar program attached over QMP serving a framebuffer described on its command line
// through our udmabuf driver, and peers that are well-behaved or not, all at once:
//   - the bystander's buffer maps the guest's pixels (written into QEMU's own memfd);
//   - a peer of another uid is refused (a real process of that uid: SO_PEERCRED);
//   - garbage, a disconnect mid-request, a peer that subscribes and never reads, and one that
//     holds buffers past --max-buffers get an error or are dropped, and the bystander goes on;
//   - a peer describes a framebuffer (export-framebuffer) and everyone sees it;
//   - guest resets (system_reset on a second monitor) replace every buffer, and the old ones
//     are unpinned once their holders let go;
//   - QEMU killed withdraws everything and the sidecar keeps serving, holding no memfd or
//     dma-buf; SIGTERM exits 0; the driver's list and this process's fds are back to baseline.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAP_SHARED, PROT_READ } from '../../lib/core/linux.js';
import { mapShared, unmap } from '../../lib/fd/mapping.js';
import { SidecarClient, SidecarError, type SurfaceBuffer, type SurfaceSubscription } from '../../lib/index.js';
import { QmpClient } from '../../qemu-glue/qmp/client.js';
import { PROJECT_ROOT } from '../../vm/paths.js';
import { nextEvent } from '../host/fixtures/sidecar-events.js';
import { RawPeer } from '../host/fixtures/sidecar-rig.js';
import { pattern } from '../host/fixtures/support.js';
import { QEMU_VERSIONS, startForeignQemu } from '../qemu-attach.js';
import { ourBuffers } from './helpers/dmabuf-debugfs.js';
import { until } from './helpers/draw-drm.js';
import { extraFds, processResources, startPoller } from './helpers/process-resources.js';

const CLI = join(PROJECT_ROOT, 'dist', 'qemu-glue', 'cli.js');
const PEER = join(PROJECT_ROOT, 'dist', 'test', 'host', 'fixtures', 'sidecar-peer.js');
const FB = { gpa: 0x1000000, width: 640, height: 480, stride: 2560 } as const;
const FB_BYTES = FB.stride * FB.height;
const RAM_BYTES = 256 << 20;
const PEER_FB = { gpa: '0x2000000', width: 320, height: 200, stride: 640, format: 'RG16' } as const;

/** The fds of process `pid` that are guest memory or dma-bufs: what the sidecar must not keep. */
function heldBuffers(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      return /^\/memfd:|^\/dmabuf:|^anon_inode:dmabuf/.test(link) ? [link] : [];
    } catch {
      return [];
    }
  });
}

/** Writes `bytes` at guest-physical `gpa` through QEMU's own guest-RAM memfd (gpa = offset below 3 GiB on pc). */
function guestWrite(qemuPid: number, gpa: number, bytes: Uint8Array): void {
  const fd = readdirSync(`/proc/${qemuPid}/fd`).find((n) => {
    try {
      return readlinkSync(`/proc/${qemuPid}/fd/${n}`).startsWith('/memfd:') && statSync(`/proc/${qemuPid}/fd/${n}`).size === RAM_BYTES;
    } catch {
      return false;
    }
  });
  if (fd === undefined) throw new Error(`QEMU ${qemuPid} has no memfd of ${RAM_BYTES} bytes (its guest RAM)`);
  const file = openSync(`/proc/${qemuPid}/fd/${fd}`, 'r+');
  try {
    writeSync(file, bytes, 0, bytes.length, gpa);
  } finally {
    closeSync(file);
  }
}

/** Every byte of the buffer's framebuffer against `expected`. */
function bufferHolds(buffer: SurfaceBuffer, expected: Uint8Array): boolean {
  const offset = buffer.planes[0]!.offset;
  const view = mapShared(buffer.dmabuf.fd, offset + expected.length, PROT_READ, MAP_SHARED);
  try {
    return Buffer.compare(view.subarray(offset), expected) === 0;
  } finally {
    unmap(view);
  }
}

/** The next buffer event (surface or replaced), releasing the bystander's previous buffer. */
async function nextBuffer(subscription: SurfaceSubscription, previous: SurfaceBuffer | null): Promise<SurfaceBuffer> {
  for (;;) {
    const event = await nextEvent(subscription, 30_000);
    if (event.type === 'surface' || event.type === 'replaced') {
      previous?.close();
      return event.buffer;
    }
    if (event.type === 'withdrawn') throw new Error(`withdrawn (${event.reason}) while waiting for a buffer`);
  }
}

async function sidecarWithPeers(t: ExecutionContext, version: (typeof QEMU_VERSIONS)[number]): Promise<void> {
  const before = processResources();
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-qmp-'));
  chmodSync(dir, 0o755);
  const listen = join(dir, 'sidecar.sock');
  const monitor = join(dir, 'monitor.sock');
  // Two monitors: the sidecar takes the first; the test resets the guest through the second.
  const qemu = await startForeignQemu(version, ['-machine', 'pc,memory-backend=mem', '-m', '256M', '-object', `memory-backend-memfd,id=mem,size=${RAM_BYTES},share=on`, '-chardev', `socket,id=mon2,path=${monitor},server=on,wait=off`, '-mon', 'chardev=mon2,mode=control']);
  const qemuPid = qemu.process.pid!;
  const picture = pattern(version === '7.2' ? 72 : 100, FB_BYTES);

  const sidecar = spawn(process.execPath, [CLI, 'sidecar', '--listen', listen, '--qmp', qemu.socketPath, '--framebuffer', `gpa=0x${FB.gpa.toString(16)},width=${FB.width},height=${FB.height},stride=${FB.stride},format=XR24,name=screen`, '--max-buffers', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  sidecar.stderr!.setEncoding('utf8').on('data', (s: string) => {
    log += s;
    for (const line of s.split('\n').filter(Boolean)) t.log(`sidecar: ${line}`);
  });
  const exited = new Promise<number | null>((resolve) => sidecar.once('exit', resolve));
  const logged = async (re: RegExp, what: string): Promise<void> => {
    t.true(await until(() => re.test(log), 30_000), `${what} (${re})`);
  };
  const sidecarBuffers = () => ourBuffers().filter((b) => b.creatorPid === sidecar.pid);
  let second: QmpClient | null = null;
  try {
    guestWrite(qemuPid, FB.gpa, picture);
    await logged(new RegExp(`attached to QEMU ${version.replace('.', '\\.')}\\.\\d+ \\(pid ${qemuPid}\\)`), 'the sidecar says which QEMU it attached to');
    await logged(/listening on .*sidecar\.sock/, 'the sidecar listens');
    chmodSync(listen, 0o777); // other uids reach the socket: the sidecar itself must refuse them
    second = await QmpClient.connect(monitor, { timeoutMs: 30_000 });

    await using bystander = await SidecarClient.connect(listen, { clientName: 'bystander' });
    t.like(await bystander.list(), [{ surface: 1, name: 'screen', width: FB.width, height: FB.height }]);
    const watching = bystander.subscribe(1);
    let shown = await nextBuffer(watching, null);
    t.true(bufferHolds(shown, picture), 'the bystander\'s buffer is the guest\'s pixels');
    t.like(sidecarBuffers(), [{ pages: FB_BYTES / 4096 }], 'one buffer of our driver, the framebuffer\'s pages');

    // Another uid, as a real process of that uid.
    const refused = JSON.parse(spawnSync(process.execPath, [PEER, listen], { uid: 65534, gid: 65534, encoding: 'utf8' }).stdout) as { code?: string; message?: string };
    t.is(refused.code, 'ERR_SIDECAR_PEER_REFUSED');
    t.regex(refused.message ?? '', /--allow-uid 65534/);
    await logged(/refused pid \d+ \(uid 65534\)/, 'the refusal is logged');

    // Garbage: an error naming it, and the peer goes on.
    {
      using garbage = await RawPeer.connect(listen);
      await garbage.hello();
      await garbage.writeNotJson();
      t.like(await garbage.next(), { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE' });
      await garbage.request({ type: 'subscribe', surface: 'one' });
      t.like(await garbage.next(), { type: 'error', code: 'ERR_SIDECAR_BAD_MESSAGE', field: 'surface' });
      await garbage.request({ type: 'list' });
      t.like(await garbage.next(), { type: 'surfaces' });
    }
    // A disconnect in the middle of a request, and one right after subscribing (its buffer unread).
    await RawPeer.disconnectRudely(listen);
    // A peer that subscribes and never reads again, and one that keeps every buffer.
    using stuck = await RawPeer.connect(listen);
    await stuck.hello();
    await stuck.request({ type: 'subscribe', surface: 1 });
    await using hoarder = await SidecarClient.connect(listen, { clientName: 'hoarder' });
    const hoarding = hoarder.subscribe(1);
    const held = [await nextBuffer(hoarding, null)];

    // A peer describes a framebuffer of its own: every peer sees it.
    {
      using describer = await RawPeer.connect(listen);
      await describer.hello();
      await describer.request({ type: 'export-framebuffer', name: 'peer-fb', framebuffer: PEER_FB });
      t.like(await describer.next(), { type: 'exported' });
      t.deepEqual((await bystander.list()).map((s) => s.name).sort(), ['peer-fb', 'screen']);
    }
    await logged(/\(peer-fb\) withdrawn: peer-left/, 'the describer\'s leaving is seen');
    t.deepEqual((await bystander.list()).map((s) => s.name), ['screen'], 'the described framebuffer is withdrawn when its peer leaves');

    // Guest resets: every buffer is replaced. The hoarder's third is over its cap.
    for (let reset = 1; reset <= 2; reset++) {
      await second.execute('system_reset');
      shown = await nextBuffer(watching, shown);
      t.true(bufferHolds(shown, picture), `after reset ${reset}, the new buffer is the guest's pixels`);
      if (reset === 1) {
        const event = await nextEvent(hoarding, 30_000);
        t.is(event.type, 'replaced');
        if (event.type === 'replaced') held.push(event.buffer);
      } else {
        const error = await t.throwsAsync(nextEvent(hoarding, 30_000), { instanceOf: SidecarError });
        t.is(error?.code, 'ERR_SIDECAR_BUFFER_CAP');
      }
    }
    await logged(/hoarder\).*the cap is 2/, 'the hoarder\'s cap is logged');
    // The guest draws; the bystander's buffer is still its memory.
    const drawn = pattern(7, FB_BYTES);
    guestWrite(qemuPid, FB.gpa, drawn);
    t.true(bufferHolds(shown, drawn), 'the bystander sees the guest\'s new pixels with no copy');
    // Old buffers live exactly as long as someone holds them: the hoarder's two, the stuck peer's unread ones.
    for (const buffer of held) buffer.close();
    await hoarder.list();
    stuck[Symbol.dispose]();
    t.true(await until(() => sidecarBuffers().length === 1, 10_000), `only the current buffer is left pinned once the holders let go: ${JSON.stringify(sidecarBuffers())}`);

    // QEMU dies: the surface is withdrawn, the sidecar keeps serving and holds no guest memory.
    await qemu.kill();
    const withdrawn = await nextEvent(watching, 30_000);
    t.like(withdrawn, { type: 'withdrawn' });
    shown.close();
    await logged(/QMP connection ended/, 'QEMU\'s death is logged');
    t.deepEqual(await bystander.list(), [], 'nothing is served once QEMU is gone');
    t.true(await until(() => sidecarBuffers().length === 0 && heldBuffers(sidecar.pid!).length === 0, 10_000), `the sidecar holds no memfd or dma-buf: ${JSON.stringify(heldBuffers(sidecar.pid!))}, driver list ${JSON.stringify(sidecarBuffers())}`);
  } finally {
    second?.close();
    await qemu.kill();
    sidecar.kill('SIGTERM');
  }
  t.is(await exited, 0, 'SIGTERM ends the sidecar with status 0');
  t.regex(log, /SIGTERM: withdrawing every surface and exiting/);
  t.notRegex(log, /TypeError|RangeError|at .*\.js:\d+/, 'no stack trace in the sidecar\'s log');
  rmSync(dir, { recursive: true, force: true });
  const now = processResources();
  t.deepEqual(extraFds(before, now), [], 'this process has no fd left');
  t.deepEqual(now.buffers, before.buffers);
}

// The addon's poller keeps its epoll fd and eventfd for the process's life: in the baseline.
test.before(startPoller);

for (const version of QEMU_VERSIONS) {
  test.serial(`QEMU ${version}: guest-dmabuf sidecar --qmp serves the described framebuffer; hostile and other-uid peers, resets and QEMU's death leave the bystander served and nothing behind`, async (t) => {
    await sidecarWithPeers(t, version);
  });
}
