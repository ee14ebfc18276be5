// QmpClient against a scripted peer that stops reading, so our writes back up: the queue of
// unsent commands is capped (maxQueuedBytes) and execute() refuses past it with
// QmpBackpressureError rather than buffering without end; a call that times out or is aborted
// before any of its bytes were written is withdrawn (QEMU never sees it) and its fd
// duplicates closed; close() while backed up rejects everything and leaves no fd; when the
// peer reads again, it gets whole lines in order, without the withdrawn ones.
import test from 'ava';
import { AbortError, Memfd, QmpBackpressureError, QmpClient, QmpConnectionError } from '../../lib/index.js';
import { openFdCount, sleep, warmUp } from './fixtures/support.js';
import { scriptedPair, type ScriptedPeer } from './fixtures/qmp-peer.js';

test.before(warmUp);

const CAP = 256 * 1024;
const BIG = 'x'.repeat(60 * 1024);

async function connected(): Promise<{ qmp: QmpClient; peer: ScriptedPeer }> {
  const [clientEnd, peer] = scriptedPair();
  const connecting = QmpClient.connect(clientEnd, { timeoutMs: 5000, maxQueuedBytes: CAP });
  await peer.greet();
  await peer.negotiate();
  return { qmp: await connecting, peer };
}

/** Sends ~60 KiB commands the peer never reads until one is refused; returns the accepted calls (settled or not). */
async function fillUp(qmp: QmpClient): Promise<{ accepted: Promise<unknown>[]; refusal: unknown }> {
  const accepted: Promise<unknown>[] = [];
  for (let i = 0; i < 200; i++) {
    const call = qmp.execute('echo', { i, pad: BIG });
    call.catch(() => undefined);
    const early = await Promise.race([call.then(() => 'settled', (err: unknown) => err), sleep(5).then(() => 'pending')]);
    if (early !== 'pending') return { accepted, refusal: early };
    accepted.push(call);
  }
  throw new Error('200 commands of 60 KiB were accepted without any refusal: nothing caps the write queue');
}

test.serial('a peer that stops reading: the queue stops at maxQueuedBytes with QmpBackpressureError; timeouts and aborts withdraw unsent commands and their fds; close is clean', async (t) => {
  const before = openFdCount();
  const { qmp, peer } = await connected();
  const { accepted, refusal } = await fillUp(qmp);
  t.true(refusal instanceof QmpBackpressureError, String(refusal));
  const err = refusal as QmpBackpressureError;
  t.is(err.code, 'ERR_QMP_BACKPRESSURE');
  t.is(err.maxQueuedBytes, CAP);
  t.true(err.queuedBytes <= CAP && err.queuedBytes > CAP - 2 * BIG.length, `${err.queuedBytes} queued`);
  t.regex(err.message, /^QMP command echo was not sent: \d+ bytes of earlier commands are still waiting to be written because QEMU is not reading its monitor .*pass a larger maxQueuedBytes/);
  t.true(accepted.length > CAP / BIG.length, `${accepted.length} accepted: some went into the socket's buffer, the rest wait in the queue`);
  t.true(qmp.queuedBytes <= CAP);
  t.false(qmp.closed, 'backpressure is not a broken connection');

  // A small command still fits under the cap; timed out before any byte of it went, it is withdrawn.
  const queued = qmp.queuedBytes;
  const small = qmp.execute('query-status', undefined, { timeoutMs: 50 });
  t.true(qmp.queuedBytes > queued);
  const late = await t.throwsAsync(small, { instanceOf: QmpConnectionError });
  t.is((late as QmpConnectionError).code, 'ERR_QMP_TIMEOUT');
  t.regex(late!.message, /got no reply within 50 ms \(it was never sent/);
  t.is(qmp.queuedBytes, queued, 'withdrawn from the queue');

  // Another connection: a queued command with fds, aborted, is withdrawn and our duplicate closed.
  const fdsBefore = openFdCount();
  using memfd = Memfd.create('backpressure', 4096);
  const third = await connected();
  const controller = new AbortController();
  // Fill the socket's buffer until a command has to wait in our queue.
  const fillers: Promise<unknown>[] = [];
  while (third.qmp.queuedBytes === 0 && fillers.length < 100) {
    const call = third.qmp.execute('echo', { i: fillers.length, pad: BIG });
    call.catch(() => undefined);
    fillers.push(call);
    await sleep(5);
  }
  t.true(third.qmp.queuedBytes > 0 && third.qmp.queuedBytes <= CAP, `${fillers.length} fillers, ${third.qmp.queuedBytes} bytes queued`);
  const withFd = third.qmp.execute('getfd', { fdname: 'fb' }, { fds: [memfd], signal: controller.signal });
  const timed = third.qmp.execute('echo', { pad: 'y' }, { timeoutMs: 30 });
  t.is(openFdCount(), fdsBefore + 1 + 2 + 1, "our duplicate of the memfd waits with its command (besides the memfd and the new pair's two ends)");
  const queuedWithAll = third.qmp.queuedBytes;
  controller.abort();
  const aborted = await t.throwsAsync(withFd, { instanceOf: AbortError });
  t.regex(aborted!.message, /it was never sent: QEMU had not read the commands before it, so it was withdrawn/);
  const timedOut = await t.throwsAsync(timed, { instanceOf: QmpConnectionError });
  t.is((timedOut as QmpConnectionError).code, 'ERR_QMP_TIMEOUT');
  t.regex(timedOut!.message, /got no reply within 30 ms \(it was never sent/);
  t.true(third.qmp.queuedBytes < queuedWithAll, 'the withdrawn commands left the queue');
  t.is(openFdCount(), fdsBefore + 1 + 2, 'the duplicate is closed when its command is withdrawn');

  // The peer reads again: whole lines, in order, and neither withdrawn command.
  const seen: unknown[] = [];
  for (let i = 0; i < fillers.length; i++) {
    const command = await third.peer.command();
    seen.push(command.execute);
    t.deepEqual((command.arguments as { i: number }).i, i);
    await third.peer.send({ return: {}, id: command.id });
  }
  await Promise.all(fillers);
  t.is(third.qmp.queuedBytes, 0);
  t.deepEqual(await Promise.race([third.peer.command().then((c) => c.execute), sleep(100).then(() => 'nothing more')]), 'nothing more');
  third.qmp.close();
  third.peer.close();

  // Back to the first, still backed up: close() rejects every pending call and closes everything.
  qmp.close();
  const outcomes = await Promise.allSettled(accepted);
  t.true(outcomes.every((o) => o.status === 'rejected' && (o.reason as QmpConnectionError).code === 'ERR_QMP_CLOSED'));
  t.is(qmp.queuedBytes, 0);
  peer.close();
  memfd.close();
  t.is(openFdCount(), before);
});
