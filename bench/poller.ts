// Host micro-benchmark of the addon's fd poller: the per-wait cost of waiting on fds, through
// the library. Each round trip is two polled waits (one on each side of a ping-pong):
//   eventfd: A signals eventfd 1 and waits on eventfd 2; B waits on 1 and signals 2.
//   socket:  a 1-byte message over a UnixSocket pair and back (send, receive, send, receive).
//   raw:     the eventfd ping-pong on the addon's calls alone (eventfdWrite, waitFd, eventfdRead).
// Prints wall time and process CPU (user + system, all threads) per round trip.
// Usage: node dist/bench/poller.js [roundTrips=20000] [repeats=3]
import { EventFd, UnixSocket } from '../lib/index.js';
import { native } from '../lib/core/native.js';
import { EPOLLIN } from '../lib/fd/readiness.js';

const roundTrips = Number(process.argv[2] ?? 20_000);
const repeats = Number(process.argv[3] ?? 3);

async function eventfdPingPong(n: number): Promise<void> {
  using ping = EventFd.create();
  using pong = EventFd.create();
  const responder = (async () => {
    for (let i = 0; i < n; i++) {
      await ping.wait();
      pong.signal();
    }
  })();
  for (let i = 0; i < n; i++) {
    ping.signal();
    await pong.wait();
  }
  await responder;
}

// receive() allocates a maxBytes buffer per call: 64 KiB by default, which costs more than the
// wait itself, so the ping-pong receives with maxBytes 64 (what a small protocol message needs).
async function socketPingPong(n: number): Promise<void> {
  const [a, b] = UnixSocket.pair();
  const small = { maxBytes: 64 };
  const byte = new Uint8Array([1]);
  const responder = (async () => {
    for (let i = 0; i < n; i++) {
      await b.receive(small);
      await b.send(byte);
    }
  })();
  for (let i = 0; i < n; i++) {
    await a.send(byte);
    await a.receive(small);
  }
  await responder;
  a.close();
  b.close();
}

let nextId = 1e14; // raw watch and wait ids, far from the library's own
async function rawPingPong(n: number): Promise<void> {
  const ping = native.eventfd(0, false);
  const pong = native.eventfd(0, false);
  const pingWatch = nextId++;
  const pongWatch = nextId++;
  const responder = (async () => {
    for (let i = 0; i < n; i++) {
      await native.waitFd(pingWatch, ping, EPOLLIN, nextId++);
      native.eventfdRead(ping);
      native.eventfdWrite(pong, 1);
    }
  })();
  for (let i = 0; i < n; i++) {
    native.eventfdWrite(ping, 1);
    await native.waitFd(pongWatch, pong, EPOLLIN, nextId++);
    native.eventfdRead(pong);
  }
  await responder;
  native.cancelWatch(pingWatch);
  native.cancelWatch(pongWatch);
  native.close(ping);
  native.close(pong);
}

interface Figures {
  wallUs: number;
  cpuUs: number;
}

async function measure(run: (n: number) => Promise<void>): Promise<Figures> {
  await run(Math.min(2000, roundTrips)); // warm up: JIT, the poller's first use
  const start = performance.now();
  const cpu = process.cpuUsage();
  await run(roundTrips);
  const used = process.cpuUsage(cpu);
  return { wallUs: ((performance.now() - start) * 1000) / roundTrips, cpuUs: (used.user + used.system) / roundTrips };
}

const median = (values: number[]): number => [...values].sort((x, y) => x - y)[values.length >> 1]!;

console.log(`node ${process.version}, libuv ${process.versions.uv}; ${roundTrips} round trips, median of ${repeats} runs`);
for (const [name, run] of [
  ['eventfd ping-pong', eventfdPingPong],
  ['unix socket ping-pong', socketPingPong],
  ['raw eventfd ping-pong', rawPingPong],
] as const) {
  const runs: Figures[] = [];
  for (let i = 0; i < repeats; i++) runs.push(await measure(run));
  const wall = median(runs.map((r) => r.wallUs));
  const cpu = median(runs.map((r) => r.cpuUs));
  console.log(`${name.padEnd(22)} ${wall.toFixed(2).padStart(7)} µs/round trip wall  ${cpu.toFixed(2).padStart(7)} µs/round trip CPU`);
}
const stats = native.pollerStats();
if (stats.watches !== 0 || stats.waits !== 0) throw new Error(`the poller still holds ${JSON.stringify(stats)}`);
