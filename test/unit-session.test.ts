// The session layer on its own, with real servers: each Session and pool member is the probe fixture launched by
// launch()/launchReady() with the process sandbox driver, and calls go through its real upstream to a loopback
// node:http server's responses. Durations are short (hundreds of ms); every wait is a condition with a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { ANONYMOUS } from '../src/security/auth.ts';
import { launchReady, type Launched } from '../src/session/launch.ts';
import { Session, type EndReason } from '../src/session/session.ts';
import { SharedPool, type PoolMember } from '../src/session/shared-pool.ts';
import { StartGate, StartQueueTimeout } from '../src/session/start-gate.ts';
import type { RuntimeConfigInput } from '../src/config/schema.ts';
import { ErrorCode, type JsonRpcMessage } from '../src/wire/jsonrpc.ts';
import { textOf } from './helpers/berth.ts';
import { gone, launchContext, loopback, PROBE, postJson, silentLog, waitFor, type Loopback } from './helpers/unit.ts';

const INIT = { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'unit', version: '1' } };
const call = (id: string, name: string, args: Record<string, unknown>) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args },
});

interface Started {
  session: Session;
  server: Launched;
  /** Every 'ended' event, with when it came. */
  ends: Array<{ reason: EndReason; detail: string; at: number }>;
}

describe('Session', () => {
  let lb: Loopback;
  /** The session whose upstream takes the loopback's POSTs. */
  let current: Session | undefined;
  const live: Session[] = [];
  before(async () => {
    lb = await loopback();
    lb.handle = (req, res, body) =>
      current!.server.upstream.post2025(req, res, {
        messages: [JSON.parse(body.toString()) as JsonRpcMessage],
        batch: false,
        body,
        priming: false,
        jsonWindow: 60_000,
      });
  });
  after(async () => {
    await Promise.all(live.map((s) => s.end('shutdown')));
    await lb.close();
  });

  async function start(runtime: Partial<RuntimeConfigInput>): Promise<Started> {
    const ctx = launchContext({ command: PROBE, ...runtime, limits: { stopGrace: '2s', ...runtime.limits } });
    const server = await launchReady(ctx);
    const init = await server.upstream.initialize(INIT);
    assert.equal((init.result?.serverInfo as { name: string }).name, 'probe');
    const session = new Session(server, 'unit', ctx.config, ANONYMOUS);
    const ends: Started['ends'] = [];
    session.on('ended', (reason, detail) => ends.push({ reason, detail, at: Date.now() }));
    live.push(session);
    current = session;
    return { session, server, ends };
  }

  /** The session has ended once, for `reason`, and everything it held is gone. */
  async function endedFor(s: Started, reason: EndReason): Promise<string> {
    await waitFor(() => s.ends.length > 0, `the session to end (${reason})`);
    assert.equal(s.ends.length, 1);
    assert.equal(s.ends[0]!.reason, reason);
    assert.equal(s.session.endReason, reason);
    await waitFor(() => s.session.state === 'ended', 'the end to finish');
    assert.ok(gone(s.server.sandbox.pid), 'the server process is stopped');
    assert.ok(!existsSync(s.server.workDir), 'its working directory is removed');
    return s.ends[0]!.detail;
  }

  test('with nothing in flight and no traffic it ends after idleTimeout, with reason idle', async () => {
    const s = await start({ idleTimeout: '300ms' });
    const from = Date.now();
    assert.ok(s.session.idleExpiresAt! <= from + 300);
    assert.equal(await endedFor(s, 'idle'), 'idle timeout reached');
    assert.ok(s.ends[0]!.at - from >= 250, `ended after ${s.ends[0]!.at - from} ms, not before the timeout`);
  });

  test('a call in flight keeps it from idling; the idle clock starts when the call ends', async () => {
    const s = await start({ idleTimeout: '300ms' });
    const response = postJson(lb.url, call('long', 'sleep', { ms: 1500 }));
    await waitFor(() => s.session.inFlight === 1, 'the call in flight');
    assert.equal(s.session.idleExpiresAt, undefined, 'no idle deadline while a call runs');
    const answer = await (await response).json();
    const callEnded = Date.now();
    assert.equal(textOf(answer.result), 'slept 1500', 'the call outlived five idle timeouts and still got its answer');
    assert.equal(s.ends.length, 0);
    await endedFor(s, 'idle');
    assert.ok(s.ends[0]!.at - callEnded >= 200, `idle ${s.ends[0]!.at - callEnded} ms after the call, not counted from its start`);
  });

  test('a proxied request bracketed by beginRequest() holds off idleness until it is released (once)', async () => {
    const s = await start({ idleTimeout: '10m' });
    const release = s.session.beginRequest();
    assert.equal(s.session.inFlight, 1);
    assert.equal(s.session.idleExpiresAt, undefined);
    release();
    release();
    assert.equal(s.session.inFlight, 0, 'releasing twice counts once');
    const expires = s.session.idleExpiresAt!;
    assert.ok(Math.abs(expires - (Date.now() + 600_000)) < 1000, 'the idle deadline is back, counted from the release');
    await s.session.end('deleted');
  });

  test('maxLifetime ends it even while a call is in flight; the call fails with SessionEnded', async () => {
    const s = await start({ idleTimeout: '1h', maxLifetime: '800ms' });
    const response = postJson(lb.url, call('busy', 'sleep', { ms: 30_000 }));
    await waitFor(() => s.session.inFlight === 1, 'the call in flight');
    assert.equal(await endedFor(s, 'max-lifetime'), 'maximum lifetime reached');
    assert.ok(s.ends[0]!.at - s.session.createdAt >= 750);
    const answer = await (await response).json();
    assert.deepEqual(answer.error, { code: ErrorCode.SessionEnded, message: 'Session ended: maximum lifetime reached' });
  });

  test('the server exiting ends it with reason crashed, naming the exit code; the call in flight fails', async () => {
    const s = await start({ idleTimeout: '1h' });
    const answer = await (await postJson(lb.url, call('boom', 'crash', {}))).json();
    assert.equal(answer.error.code, ErrorCode.SessionEnded);
    assert.equal(await endedFor(s, 'crashed'), 'the server process exited (exit code 3)');
    assert.match(answer.error.message, /exit code 3/);
  });

  test('end() is idempotent: one end, one event, the first reason kept, every caller waits for the same end', async () => {
    const s = await start({ idleTimeout: '1h' });
    const first = s.session.end('deleted');
    assert.equal(s.session.state, 'ending');
    const second = s.session.end('admin', 'ended twice');
    assert.equal(first, second, 'concurrent callers share one promise');
    await first;
    assert.equal(s.session.state, 'ended');
    await s.session.end('shutdown');
    assert.deepEqual(
      s.ends.map((e) => [e.reason, e.detail]),
      [['deleted', 'deleted by the client']],
    );
    assert.equal(s.session.endReason, 'deleted');
    assert.ok(gone(s.server.sandbox.pid));
    // Calls after the end are refused by the failed upstream, not sent to a stopped server.
    const late = await (await postJson(lb.url, call('late', 'echo', { text: 'x' }))).json();
    assert.deepEqual(late.error, { code: ErrorCode.SessionEnded, message: 'Session ended: deleted by the client' });
  });
});

describe('SharedPool: members never cross principals', () => {
  let pool: SharedPool<string>;
  const claims: Array<PoolMember<string>> = [];
  /** server id -> the principal that claimed it: a member must never serve anyone else. */
  const ownerOf = new Map<string, string>();
  const unavailable = () => new Error('no member came in time');

  before(() => {
    const ctx = launchContext({ command: PROBE });
    pool = new SharedPool<string>({
      size: 1,
      max: 2,
      startupTimeout: 30_000,
      stopGrace: 1000,
      ownerIdle: 60_000,
      log: silentLog,
      start: async () => {
        const server = await launchReady(ctx);
        return { server, info: server.id };
      },
      onClaim: (m) => void claims.push(m),
    });
  });
  after(() => pool.close());

  async function pick(owner: string, exclusive = false): Promise<PoolMember<string>> {
    const m = await pool.pick(owner, unavailable, exclusive);
    assert.equal(m.owner, owner, 'the member picked is owned by the picker');
    const first = ownerOf.get(m.server.id) ?? owner;
    assert.equal(first, owner, `member ${m.server.id.slice(0, 6)} was ${first}'s and was picked for ${owner}`);
    ownerOf.set(m.server.id, owner);
    return m;
  }

  test("a claimed member serves only its principal; a newcomer gets a fresh member, making room by stopping another's idle one", async () => {
    const a = await pick('alice');
    const b = await pick('bob');
    assert.notEqual(a.server.id, b.server.id, 'bob does not get the member alice claimed');
    assert.deepEqual(
      claims.map((m) => m.owner),
      ['alice', 'bob'],
    );
    // Many concurrent picks: each principal only ever gets its own member.
    const many = await Promise.all(Array.from({ length: 12 }, (_, i) => pick(i % 2 ? 'bob' : 'alice')));
    for (const [i, m] of many.entries()) assert.equal(m.server.id, (i % 2 ? b : a).server.id);
    assert.equal(pool.members.length, 2, 'max reached: alice and bob hold one member each');

    // carol: the pool is full, so once a member has been idle past the pick grace, the least recently used goes.
    const c = await pick('carol');
    assert.ok(c.server.id !== a.server.id && c.server.id !== b.server.id, 'carol gets a member nobody else had');
    const evicted = [a, b].find((m) => !pool.members.includes(m))!;
    assert.ok(evicted, "another principal's idle member was stopped to make room");
    await waitFor(() => gone(evicted.server.sandbox.pid), 'the evicted member stopped');
    const kept = [a, b].find((m) => m !== evicted)!;
    assert.ok(pool.members.includes(kept));
    assert.equal(kept.owner, ownerOf.get(kept.server.id), 'the remaining member kept its owner');

    // The principal whose member went comes back: it never gets the other's, nor carol's.
    const back = await pick(evicted.owner!);
    assert.ok(![a, b, c].some((m) => m.server.id === back.server.id), 'a brand-new member');
    assert.equal(claims.length, 4);
  });

  test('exclusive picks reserve their member: a second one of the same principal gets another member, never a shared one', async () => {
    const owner = pool.members[0]!.owner!;
    const first = await pick(owner, true);
    assert.equal(first.inFlight, 1, 'reserved at once');
    assert.equal(pool.load(first), 1);
    const second = await pick(owner, true);
    assert.notEqual(second.server.id, first.server.id, 'the reserved member is not handed out again');
    assert.equal(second.inFlight, 1);
    assert.equal(pool.members.length, 2, 'room was made within max');
    first.inFlight--;
    second.inFlight--;
  });
});

describe('StartGate', () => {
  /** A start that finishes when the test says so. */
  function held() {
    let finish!: () => void;
    const done = new Promise<void>((r) => (finish = r));
    return { work: () => done, finish };
  }

  test('real server starts through a 2-slot gate: never more than 2 at once, all of them come up', async () => {
    const gate = new StartGate(2);
    const ctx = launchContext({ command: PROBE });
    let running = 0;
    let most = 0;
    const servers = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        gate.run(
          async () => {
            most = Math.max(most, ++running);
            assert.ok(gate.active <= 2);
            try {
              return await launchReady(ctx);
            } finally {
              running--;
            }
          },
          { refill: i % 2 === 1 },
        ),
      ),
    );
    assert.equal(most, 2, 'two started together, the others queued');
    assert.equal(new Set(servers.map((s) => s.sandbox.pid)).size, 4);
    assert.equal(gate.active, 0);
    assert.equal(gate.queued, 0);
    await Promise.all(servers.map((s) => s.sandbox.stop(1000)));
  });

  test("a freed slot goes to a client's start before a refill queued earlier", async () => {
    const gate = new StartGate(1);
    const first = held();
    const order: string[] = [];
    const running = gate.run(first.work);
    const refill = gate.run(async () => void order.push('refill'), { refill: true });
    const client = gate.run(async () => void order.push('client'));
    assert.equal(gate.queued, 2);
    first.finish();
    await Promise.all([running, refill, client]);
    assert.deepEqual(order, ['client', 'refill']);
    assert.equal(gate.active, 0);
  });

  test("a client's start waits at most waitMs (0: not at all) and leaves the queue when its client goes away", async () => {
    const gate = new StartGate(1);
    const first = held();
    const running = gate.run(first.work);
    // A refill is never timed out, however long it waits (here: through the client timeouts below).
    const refill = gate.run(async () => 'refilled', { refill: true, waitMs: 1 });
    await assert.rejects(
      gate.run(async () => 'never', { waitMs: 0 }),
      (e) => e instanceof StartQueueTimeout && /every start slot is busy/.test(e.message),
    );
    const t0 = Date.now();
    await assert.rejects(
      gate.run(async () => 'never', { waitMs: 150 }),
      (e) => e instanceof StartQueueTimeout && /within 150 ms/.test(e.message),
    );
    assert.ok(Date.now() - t0 >= 140);
    const ac = new AbortController();
    const leaving = gate.run(async () => 'never', { signal: ac.signal });
    assert.equal(gate.queued, 2);
    ac.abort();
    await assert.rejects(leaving, /went away/);
    assert.equal(gate.queued, 1, 'the queue holds nobody who left, only the refill');
    first.finish();
    await running;
    assert.equal(await refill, 'refilled');
    assert.equal(gate.active, 0);
  });
});
