// Pinned-memory accounting (guest_udmabuf): pages pinned by a buffer are charged to the
// creating user's locked_vm against RLIMIT_MEMLOCK (ENOMEM over it), exactly once, until the
// final release, whoever holds the buffer by then; CAP_IPC_LOCK is exempt; a module parameter
// turns it off. Workers run as an unprivileged user with RLIMIT_MEMLOCK of 4 MiB.
import test from 'ava';
import { chmodSync, statSync } from 'node:fs';
import { baselineGuard } from './helpers/baseline.js';
import { ourDevice, withParam } from './helpers/devices.js';
import { isLive, ourBuffers } from './helpers/dmabuf-debugfs.js';
import { native } from './helpers/raw.js';
import type { Step } from './fixtures/memlock-worker.js';
import { codes, MiB, NOBODY, PAGES_PER_MIB, runWorker, type Outcome } from './helpers/memlock.js';

const checkBaseline = baselineGuard(test);
const rowsOf = (pid: number) => ourBuffers().filter((b) => b.creatorPid === pid);

let mode = 0;
test.before(() => {
  // The device node is root-only by default; the workers are not root.
  mode = statSync(ourDevice().path).mode & 0o777;
  chmodSync(ourDevice().path, 0o666);
});
test.after.always(() => chmodSync(ourDevice().path, mode));

test.serial('over RLIMIT_MEMLOCK creation fails with ENOMEM; earlier buffers keep working; releasing makes room again', async (t) => {
  const mib = (n: number): Step => ({ create: n * MiB });
  let charged: { uid: number; pages: number }[] = [];
  const outcomes = await runWorker(
    [mib(1), mib(1), mib(1), mib(1), { hold: true }, mib(1), { check: 0 }, { check: 3 }, { close: 0 }, mib(1), { create: 4096 },
      { close: 1 }, { close: 2 }, { close: 3 }, { close: 4 }, mib(4), { create: 4096 }],
    { onHold: ({ pid }) => void (charged = rowsOf(pid).map((r) => ({ uid: r.chargedUid, pages: r.chargedPages }))) },
  );
  t.deepEqual(codes(outcomes), ['OK', 'OK', 'OK', 'OK', 'ENOMEM', 'OK', 'OK', 'OK', 'ENOMEM', 'OK', 'ENOMEM']);
  t.regex(outcomes[4]!.message!, /RLIMIT_MEMLOCK.*ulimit -l.*CAP_IPC_LOCK/, 'the error says what to do');
  t.deepEqual(charged, Array(4).fill({ uid: NOBODY, pages: PAGES_PER_MIB }), 'debugfs shows each buffer charged to its creator');
});

test.serial('the creator exiting while another process holds the buffer neither leaks nor double-uncharges', async (t) => {
  let held = -1;
  let ino = 0;
  await runWorker([{ create: 3 * MiB }, { hold: true }], {
    onHold: ({ pid, fds }) => {
      const pidfd = native.pidfdOpen(pid);
      held = native.pidfdGetfd(pidfd, fds[0]!);
      native.close(pidfd);
      ino = Number(native.fstat(held).ino);
    },
  });
  const row = ourBuffers().find((b) => b.ino === ino);
  t.like(row, { chargedUid: NOBODY, chargedPages: 3 * PAGES_PER_MIB }, 'the charge outlives its creator');

  let releasedInBetween = false;
  const outcomes = await runWorker([{ create: 2 * MiB }, { create: MiB }, { close: 0 }, { hold: true }, { create: 4 * MiB }, { create: 4096 }], {
    onHold: () => {
      native.close(held);
      releasedInBetween = !isLive(ino);
    },
  });
  t.true(releasedInBetween, 'closing the last holder released the buffer');
  t.deepEqual(codes(outcomes), ['ENOMEM', 'OK', 'OK', 'ENOMEM'], 'charged until released, then back to exactly the limit');
});

test.serial('CAP_IPC_LOCK is exempt; without it root is limited like anyone', async (t) => {
  let rows: { chargedUid: number; chargedPages: number }[] = [];
  const withCap = await runWorker([{ create: 16 * MiB }, { hold: true }], { uid: 0, onHold: ({ pid }) => void (rows = rowsOf(pid)) });
  t.deepEqual(codes(withCap), ['OK']);
  t.like(rows[0], { chargedUid: -1, chargedPages: 0 }, 'nothing charged');
  const withoutCap = await runWorker([{ create: 16 * MiB }, { create: 4 * MiB }], { uid: 0, withoutIpcLock: true });
  t.deepEqual(codes(withoutCap), ['ENOMEM', 'OK']);
});

test.serial('account_pinned=N turns accounting off, and the driver says so', async (t) => {
  const outcomes = await withParam(ourDevice(), 'account_pinned', 'N', () => runWorker([{ extensions: true }, { create: 16 * MiB }]));
  t.deepEqual(outcomes[0], { releaseNotification: true, accounting: false } as unknown as Outcome);
  t.deepEqual(codes(outcomes.slice(1)), ['OK']);
  const back = await runWorker([{ extensions: true }, { create: 16 * MiB }]);
  t.deepEqual(back[0], { releaseNotification: true, accounting: true } as unknown as Outcome);
  t.deepEqual(codes(back.slice(1)), ['ENOMEM']);
});

checkBaseline();
