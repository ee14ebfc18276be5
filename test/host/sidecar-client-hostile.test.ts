// SidecarClient (what `guest-dmabuf show` and `capture` use) against a hostile sidecar: a raw
// unix socket server that answers hello with garbage, announces a 1 GiB frame, closes inside a
// frame, or never answers. Each connect fails with a typed SidecarConnectionError naming what was
// wrong, promptly, reading no more than its frame cap, and leaves no fd behind.
import test from 'ava';
import { SidecarConnectionError, SidecarClient } from '../../lib/index.js';
import { UnixListener } from '../../lib/ipc/unix-listener.js';
import type { UnixSocket } from '../../lib/ipc/unix-socket.js';
import { encodeFrame } from '../../qemu-glue/sidecar/framing.js';
import { tempSocketPath } from './fixtures/sidecar-rig.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';

test.before(warmUp);

/** A header claiming `length` bytes of JSON and `fds` fds, then `body`. */
function frame(length: number, body: Uint8Array = new Uint8Array(0), fds = 0): Uint8Array {
  const bytes = new Uint8Array(8 + body.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, length, true);
  view.setUint32(4, fds, true);
  bytes.set(body, 8);
  return bytes;
}

const CASES: [string, (socket: UnixSocket) => Promise<void>, RegExp, SidecarConnectionError['code']][] = [
  ['answers hello with bytes that are not JSON', (s) => s.send(frame(5, new TextEncoder().encode('{{{{{'))), /bad frame|cannot read|not JSON/i, 'ERR_SIDECAR_PROTOCOL'],
  ['announces a 1 GiB frame', (s) => s.send(frame(1 << 30)), /1073741824|frame/i, 'ERR_SIDECAR_PROTOCOL'],
  ['closes inside a frame', async (s) => {
    await s.send(frame(100, new TextEncoder().encode('{"type":')));
    s.close();
  }, /closed the connection inside a frame/, 'ERR_SIDECAR_PROTOCOL'],
  ['answers hello with another reply', (s) => s.send(encodeFrame({ type: 'ok', id: 1 })), /hello/, 'ERR_SIDECAR_PROTOCOL'],
];

for (const [what, behave, message, code] of CASES) {
  test.serial(`a sidecar that ${what}: connect fails with ${code}, and no fd is left`, async (t) => {
    const before = openFdCount();
    const path = tempSocketPath(t);
    const listener = UnixListener.listen(path);
    const served = (async () => {
      const socket = await listener.accept();
      await socket.receive({ maxBytes: 4096 }); // the hello
      await behave(socket);
      await sleep(200);
      if (!socket.closed) socket.close();
    })();
    const error = await t.throwsAsync(SidecarClient.connect(path, { timeoutMs: 5000 }), { instanceOf: SidecarConnectionError });
    t.is(error?.code, code, error?.message);
    t.regex(error?.message ?? '', message);
    await served;
    listener.close();
    t.is(openFdCount(), before);
  });
}

test.serial('a sidecar that never answers: connect gives up at its timeout, and no fd is left', async (t) => {
  const before = openFdCount();
  const path = tempSocketPath(t);
  const listener = UnixListener.listen(path);
  const accepted = listener.accept();
  const started = performance.now();
  await t.throwsAsync(SidecarClient.connect(path, { timeoutMs: 500 }), { message: /500|time/i });
  t.true(performance.now() - started < 3000, 'promptly');
  (await accepted).close();
  listener.close();
  t.is(openFdCount(), before);
});
