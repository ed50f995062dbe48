// The session layer on its own, with real servers: each Session and pool member is the probe fixture launched by
// launch()/launchReady() with the process sandbox driver, and calls go through its real upstream to a loopback
// node:http server's responses. Durations are short (hundreds of ms); every wait is a condition with a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { ANONYMOUS, type Principal } from '../src/security/auth.ts';
import { pino } from 'pino';
import { HttpError } from '../src/wire/http-error.ts';
import { launchReady, type Launched } from '../src/session/launch.ts';
import { SessionTable } from '../src/session/table.ts';
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
    // When the upstream saw its last call end (the client reads the answer later, on a loaded machine much later).
    let quietAt = 0;
    s.server.upstream.on('busy', (busy) => void (busy || (quietAt = Date.now())));
    // Held until the call is in flight: on a loaded machine the POST can take longer than the 300 ms idle timeout
    // to arrive (seen in a clean-clone CI beside other load), and the session would idle out before it.
    const hold = s.session.beginRequest();
    const response = postJson(lb.url, call('long', 'sleep', { ms: 1500 }));
    await waitFor(() => s.session.inFlight === 2, 'the call in flight');
    hold();
    assert.equal(s.session.inFlight, 1);
    assert.equal(s.session.idleExpiresAt, undefined, 'no idle deadline while a call runs');
    const answer = await (await response).json();
    assert.equal(textOf(answer.result), 'slept 1500', 'the call outlived five idle timeouts and still got its answer');
    await endedFor(s, 'idle');
    assert.ok(quietAt > 0);
    const after = s.ends[0]!.at - quietAt;
    assert.ok(after >= 290, `idle ${after} ms after the call ended: counted from its end, not its start`);
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

  test('refills hold at most all slots but one: a client starts at once beside them', async () => {
    const gate = new StartGate(2);
    const refills = [held(), held()];
    const running = refills.map((r) => gate.run(r.work, { refill: true }));
    assert.equal(gate.active, 1, 'the second refill waits: one slot stays free for clients');
    assert.equal(gate.queued, 1);
    // A client does not queue behind the waiting refill, and needs no wait at all.
    assert.equal(await gate.run(async () => 'started', { waitMs: 0 }), 'started');
    refills[0]!.finish();
    await running[0];
    assert.equal(gate.active, 1, 'the queued refill took the freed refill slot');
    refills[1]!.finish();
    await running[1];
    assert.equal(gate.active, 0);
    assert.equal(gate.queued, 0);
  });

  test("with one slot, a client's start does not wait behind a refill: it starts beside it, and a second client waits", async () => {
    const gate = new StartGate(1);
    const refill = held();
    const refilling = gate.run(refill.work, { refill: true });
    assert.equal(gate.active, 1);
    const client = held();
    const starting = gate.run(client.work, { waitMs: 0 });
    assert.equal(gate.active, 2, 'the client started beside the refill, one over the cap');
    await assert.rejects(
      gate.run(async () => 'never', { waitMs: 0 }),
      (e) => e instanceof StartQueueTimeout,
      'a second client waits (here: not at all): only refills may be passed',
    );
    const later = gate.run(async () => 'refilled later', { refill: true });
    const second = gate.run(async () => 'second client');
    refill.finish();
    await refilling;
    assert.equal(gate.active, 1, "the refill's end frees no slot: the first client still holds the only one");
    client.finish();
    await starting;
    assert.equal(await second, 'second client', 'clients go first');
    assert.equal(await later, 'refilled later');
    assert.equal(gate.active, 0);
    assert.equal(gate.queued, 0);
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

describe('SessionTable', () => {
  const ctx = launchContext({ command: PROBE, limits: { maxSessions: 2, maxSessionsPerPrincipal: 1, stopGrace: '1s' } });
  const alice: Principal = { kind: 'api-key', subject: 'alice' };
  const bob: Principal = { kind: 'api-key', subject: 'bob' };
  /** The table's audit lines, as JSON objects. */
  const audit: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void audit.push(JSON.parse(line) as Record<string, unknown>) });
  const table = new SessionTable({ runtime: 'unit', config: ctx.config, log, kind: 'protocol' });
  const opened: Session[] = [];
  after(() => Promise.all(opened.map((s) => s.end('shutdown'))));

  /** The refusal `open` throws, as an HttpError. */
  async function refusal(p: Promise<unknown>): Promise<HttpError> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof HttpError, `an HttpError, not ${String(e)}`);
      return e;
    }
    throw new Error('open() was not refused');
  }

  test('maxSessions counts sessions still starting; maxSessionsPerPrincipal refuses a second of the same principal', async () => {
    // alice's server is still starting when bob and a third caller come: the cap already counts it.
    const startingA = table.open(alice, 1, () => launchReady(ctx));
    const a2 = await refusal(table.open(alice, 2, () => launchReady(ctx)));
    assert.equal(a2.status, 429);
    assert.equal(a2.id, 2);
    assert.match(a2.message, /alice already holds 1 live sessions \(limits.maxSessionsPerPrincipal = 1\)/);
    const startingB = table.open(bob, 3, () => launchReady(ctx));
    const third = await refusal(table.open(ANONYMOUS, 4, () => launchReady(ctx)));
    assert.equal(third.status, 503, 'no session is live yet, but two are starting');
    assert.equal(third.headers['retry-after'], '5');
    assert.match(third.message, /maximum of 2 sessions \(maxSessions\)/);
    const b = await startingB;
    opened.push(b);
    const a = await startingA;
    opened.push(a);
    assert.equal(table.size, 2);
    assert.deepEqual(
      table
        .list()
        .map((s) => s.principal.subject)
        .sort(),
      ['alice', 'bob'],
    );
    assert.equal(a.kind, 'protocol');

    table.created(a, undefined, { client: 'unit' });
    const created = audit.find((l) => l.audit === 'session.created')!;
    assert.equal(created.principal, 'alice');
    assert.equal(created.client, 'unit');
    assert.equal(created.pid, a.server.sandbox.pid);

    // Ending frees both the place and the principal's count.
    await a.end('deleted');
    assert.equal(table.size, 1);
    const ended = audit.find((l) => l.audit === 'session.ended')!;
    assert.equal(ended.reason, 'deleted');
    assert.equal(ended.principal, 'alice');
    assert.equal(typeof ended.durationMs, 'number');
    const again = await table.open(alice, 5, () => launchReady(ctx));
    opened.push(again);
    assert.equal(table.size, 2);
    await Promise.all([again.end('deleted'), b.end('deleted')]);
    assert.equal(table.size, 0);
  });

  test('a server that cannot start is a 502, no start slot in time a 503; neither keeps its place', async () => {
    const broken = launchContext({ command: [process.execPath, '-e', 'process.exit(7)'] });
    const bad = await refusal(table.open(alice, 'x', () => launchReady(broken)));
    assert.equal(bad.status, 502);
    assert.equal(bad.id, 'x');
    assert.match(bad.message, /^Bad Gateway: the MCP server could not be started: the server exited during start-up/);

    const gate = new StartGate(1);
    let free!: () => void;
    const holding = gate.run(() => new Promise<void>((r) => (free = r)));
    const busy = await refusal(table.open(alice, 'y', () => gate.run(() => launchReady(ctx), { waitMs: 0 })));
    assert.equal(busy.status, 503);
    assert.match(busy.message, /every start slot is busy \(limits.maxConcurrentStarts/);
    assert.ok(Number(busy.headers['retry-after']) >= 1);
    free();
    await holding;

    // alice's failed starts did not count against her (maxSessionsPerPrincipal 1) nor the table.
    const s = await table.open(alice, 'z', () => launchReady(ctx));
    opened.push(s);
    assert.equal(table.size, 1);
    await s.end('deleted');
    assert.equal(table.size, 0);
  });
});
