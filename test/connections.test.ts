// Connections that never send a byte: Node's own timeouts start with a request's first byte, so berth held each one
// for good, and ~20,000 of them took every file descriptor it had (/healthz and new sessions failed). Now a
// connection must send its first request within server.idleConnectionTimeout, and at most server.maxConnections are
// open: past it a new connection is closed as soon as it is accepted, while the ones already open go on. And at most
// server.maxConnectionsPerAddress from one client address, so one client's flood leaves the others room.
// Build first: npm run build && node --import tsx --test test/connections.test.ts
import assert from 'node:assert/strict';
import { Agent, get } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { after, before, test } from 'node:test';
import { connect, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { addressKey } from '../src/http/listener.ts';

const CAP = 20;
const IDLE = 3000;
const SILENT = 2 * CAP;
let berth: BerthProcess;
let origin: URL;

/** A berth with the probe server and no sandbox: these tests are about its listener. */
const PLAIN = ['--isolation', 'process', '--network', 'host', '--warm-pool', '1'];

before(async () => {
  berth = await runBerth([
    ...PLAIN,
    '--max-connections',
    String(CAP),
    '--idle-connection-timeout',
    `${IDLE / 1000}s`,
    // The total cap alone here (every connection of this test comes from 127.0.0.1); the per-address cap has its own test.
    '--max-connections-per-address',
    '0',
  ]);
  origin = new URL(new URL(berth.url).origin);
});
after(() => berth?.stop());

/** One GET; `agent: false` opens a connection of its own. Rejects when the connection is closed without an answer. */
function httpGet(path: string, agent: Agent | false, at: URL = origin): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: at.hostname, port: at.port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
  });
}

interface Silent {
  connectedAt?: number;
  closedAt?: number;
}

/** A connection that sends nothing (from `from`, a loopback address); resolves once it is connected or closed. */
function silent(s: Silent, at: URL = origin, from?: string): Promise<void> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: at.hostname, port: Number(at.port), ...(from ? { localAddress: from } : {}) }, () => {
      s.connectedAt = performance.now();
      resolve();
    });
    sock.on('error', () => undefined); // a reset is one way of being closed
    sock.on('close', () => {
      s.closedAt = performance.now();
      resolve();
    });
  });
}

/** A metric's value; `name` may carry its labels ({cap="total"}). */
const sample = (text: string, name: string) =>
  Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);

test(`${SILENT} silent connections against maxConnections ${CAP}: the excess closed at once, the rest after ${IDLE} ms, kept-alive connections served meanwhile`, async () => {
  const keeper = new Agent({ keepAlive: true, maxSockets: 1 });
  const session = await connect(berth.url);
  assert.equal(textOf(await session.client.callTool({ name: 'echo', arguments: { text: 'before' } })), 'before');
  assert.equal((await httpGet('/healthz', keeper)).status, 200);

  const sockets: Silent[] = Array.from({ length: SILENT }, () => ({}));
  const opened = performance.now();
  await Promise.all(sockets.map((s) => silent(s)));

  // While the silent ones fill the cap: a new connection is closed without an answer...
  await assert.rejects(httpGet('/healthz', false), /socket hang up|ECONNRESET|EPIPE/);
  // ...and one kept alive from before is still served, as is what the cap says of itself.
  const health = await httpGet('/healthz', keeper);
  assert.equal(health.status, 200);
  assert.ok(health.reused, 'served on the connection opened before the flood');
  const metrics = await httpGet('/metrics', keeper);
  assert.ok(performance.now() - opened < IDLE, 'still within the silent connections’ idle time (a machine this slow cannot show the cap)');
  const refused = sample(metrics.body, 'berth_connections_refused_total{cap="total"}');
  assert.ok(refused >= SILENT - CAP, `berth_connections_refused_total ${refused}`);
  assert.ok(sample(metrics.body, 'berth_connections_open') <= CAP, 'open connections within the cap');

  // Every silent connection is closed by berth: the ones over the cap at once, the others once idle.
  for (let t = 0; sockets.some((s) => s.closedAt === undefined); t++) {
    assert.ok(
      t < 200,
      `${sockets.filter((s) => s.closedAt === undefined).length} silent connections still open ${Math.round(performance.now() - opened)} ms after they opened`,
    );
    await new Promise((r) => setTimeout(r, 50));
  }
  const lived = sockets.map((s) => s.closedAt! - (s.connectedAt ?? s.closedAt!));
  const atOnce = lived.filter((ms) => ms < IDLE / 2).length;
  assert.ok(atOnce >= SILENT - CAP, `${atOnce} closed at once (over the cap)`);
  for (const ms of lived.filter((x) => x >= IDLE / 2)) assert.ok(ms >= IDLE - 50, `an idle connection closed after ${Math.round(ms)} ms`);
  assert.ok(atOnce < SILENT, 'some were accepted (and closed only once idle)');

  // Normal clients are served again: a new connection, the open session, a new session.
  assert.equal((await httpGet('/healthz', false)).status, 200);
  assert.equal(textOf(await session.client.callTool({ name: 'echo', arguments: { text: 'after' } })), 'after');
  const fresh = await connect(berth.url);
  assert.equal(textOf(await fresh.client.callTool({ name: 'echo', arguments: { text: 'fresh' } })), 'fresh');

  // berth said so in a line or two with the count (the first refusal at once, the rest within 10 s), not one a connection.
  const total = sample((await httpGet('/metrics', false)).body, 'berth_connections_refused_total{cap="total"}');
  const lines = () =>
    berth
      .logs()
      .split('\n')
      .filter((l) => l.includes('server.maxConnections'))
      .map((l) => JSON.parse(l) as { count: number; msg: string });
  for (let t = 0; lines().reduce((n, l) => n + l.count, 0) !== total; t++) {
    assert.ok(t < 300, `the log counts ${lines().reduce((n, l) => n + l.count, 0)} refused connections, the metric ${total}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(lines().length <= 2, `${lines().length} log lines about refused connections`);
  for (const l of lines()) assert.match(l.msg, /^\d+ client connections? closed at once .*: 20 were open \(server\.maxConnections\)$/);
  const idleClosed = sample((await httpGet('/metrics', false)).body, 'berth_connections_idle_closed_total');
  assert.ok(idleClosed >= SILENT - atOnce, `berth_connections_idle_closed_total ${idleClosed}`);

  keeper.destroy();
  await session.client.close();
  await fresh.client.close();
});

test('one address holding maxConnectionsPerAddress connections: its next ones closed at once, another address served', async () => {
  const PER = 5;
  const other = await runBerth([...PLAIN, '--max-connections', '40', '--max-connections-per-address', String(PER)]);
  try {
    const at = new URL(new URL(other.url).origin);
    // 127.0.0.2 is this host's loopback too: a second client address without leaving the machine.
    const flood: Silent[] = Array.from({ length: 3 * PER }, () => ({}));
    await Promise.all(flood.map((s) => silent(s, at, '127.0.0.2')));
    for (let t = 0; flood.filter((s) => s.closedAt !== undefined).length < 2 * PER; t++) {
      assert.ok(t < 200, `${flood.filter((s) => s.closedAt !== undefined).length} of 127.0.0.2's connections closed`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Its first PER are open (until idle, 30 s by default); 127.0.0.1 still gets in, and a session works.
    assert.equal(flood.filter((s) => s.closedAt === undefined).length, PER);
    const get = (path: string) => httpGet(path, false, at);
    assert.equal((await get('/healthz')).status, 200);
    const session = await connect(other.url);
    assert.equal(textOf(await session.client.callTool({ name: 'echo', arguments: { text: 'in' } })), 'in');
    await session.client.close();
    const metrics = (await get('/metrics')).body;
    assert.equal(sample(metrics, 'berth_connections_refused_total{cap="address"}'), 2 * PER);
    assert.ok(!(sample(metrics, 'berth_connections_refused_total{cap="total"}') > 0), 'nothing refused for the total cap');
    // Said in the log with the address and the setting, in a line or two.
    const lines = () =>
      other
        .logs()
        .split('\n')
        .filter((l) => l.includes('server.maxConnectionsPerAddress'));
    for (let t = 0; lines().length === 0; t++) {
      assert.ok(t < 300, 'no log line about the per-address cap');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(lines()[0]!, /5 were open from 127\.0\.0\.2 \(server\.maxConnectionsPerAddress\)/);
  } finally {
    await other.stop();
  }
});

test('connections are counted per IPv4 address, an IPv4-mapped address as its IPv4 one, and IPv6 per /64', () => {
  assert.equal(addressKey('127.0.0.2'), '127.0.0.2');
  assert.equal(addressKey('::ffff:127.0.0.2'), '127.0.0.2');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2::9'), addressKey('2001:db8:1:2:ffff::1'));
  assert.notEqual(addressKey('2001:db8:1:2::9'), addressKey('2001:db8:1:3::9'));
  assert.equal(addressKey('::1'), '::/64');
});
