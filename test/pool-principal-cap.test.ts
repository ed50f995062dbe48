// limits.maxSessionsPerPrincipal in the pools of shared servers (src/session/shared-pool.ts). A bridged call of a
// 2026-07-28 client to a 2025-era stdio server holds a pooled server of its own until the client's retry, so without
// the cap one principal's suspended calls could claim every pooled server. Real berth, real probe servers, the SDK v2
// client for the other principal; SharedPool on its own with real launched servers for the wait at the cap.
// Build first: npm run build && node --import tsx --test test/pool-principal-cap.test.ts
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { runBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { call2026 } from './helpers/call-2026.ts';
import { launchContext, PROBE, silentLog, waitFor } from './helpers/unit.ts';
import { launchReady } from '../src/session/launch.ts';
import { perPrincipalCap, SharedPool, type OwnerAtCap, type PoolMember } from '../src/session/shared-pool.ts';
import { ANONYMOUS, principalKey } from '../src/security/auth.ts';

const MODERN = '2026-07-28';

/** One tools/call of `ask` by a 2026 client without a runtime session; `extra` carries a retry's inputResponses and requestState. */
async function callTool(url: string, key: string, id: number, question: string, extra: Record<string, unknown> = {}) {
  const r = await call2026(url, { authorization: `Bearer ${key}` }, id, 'ask', { question }, extra);
  return { ...r, retryAfter: r.headers.get('retry-after') };
}

/** The retry of a suspended `ask`, answering its one question. */
function answer(url: string, key: string, id: number, question: string, first: { body: any }, text: string) {
  const [k] = Object.keys(first.body.result.inputRequests);
  const inputResponses = { [k!]: { action: 'accept', content: { answer: text } } };
  return callTool(url, key, id, question, { inputResponses, requestState: first.body.result.requestState });
}

describe('pooled servers per principal, bridged calls (limits.maxSessionsPerPrincipal = 2)', { timeout: 120_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(
      [
        ...['--isolation', 'process', '--warm-pool', '1', '--auth', 'api-key', '--api-key-env', 'CAP_KEYS'],
        ...['--max-sessions-per-principal', '2', '--startup-timeout', '90s'],
      ],
      undefined,
      { CAP_KEYS: 'alice-key,bob-key' },
    );
  });
  after(() => berth?.stop());

  test("a principal's third suspended call is refused with 429 at once; another principal still calls; freed, it calls again", async () => {
    const held = await Promise.all(['one?', 'two?'].map((q, i) => callTool(berth.url, 'alice-key', 1 + i, q)));
    for (const r of held) assert.equal(r.body.result?.resultType, 'input_required', JSON.stringify(r.body));

    const t0 = Date.now();
    const third = await callTool(berth.url, 'alice-key', 3, 'three?');
    assert.equal(third.status, 429, JSON.stringify(third.body));
    assert.equal(third.body.id, 3);
    assert.equal(third.body.error.code, -32000);
    assert.match(
      third.body.error.message,
      new RegExp(
        `^Too Many Requests: key-${createHash('sha256').update('alice-key').digest('hex').slice(0, 12)} already holds 2 pooled servers`,
      ),
    );
    assert.match(third.body.error.message, /\(limits\.maxSessionsPerPrincipal = 2\)/);
    assert.equal(third.retryAfter, '5');
    // Its servers wait on the client, not on themselves: refused without waiting out startupTimeout (90 s).
    assert.ok(Date.now() - t0 < 45_000, `refused after ${Date.now() - t0} ms`);

    // Meanwhile the other principal is served, through MRTR rounds of its own (the SDK v2 client answers them).
    const bob = new Client(
      { name: 'cap-test', version: '1' },
      { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} } } },
    );
    bob.setRequestHandler('elicitation/create', async (r) => ({ action: 'accept', content: { answer: `bob: ${r.params.message}` } }));
    await bob.connect(
      new StreamableHTTPClientTransport(new URL(berth.url), { requestInit: { headers: { authorization: 'Bearer bob-key' } } }),
    );
    try {
      const asks = await Promise.all(['b1?', 'b2?'].map((q) => bob.callTool({ name: 'ask', arguments: { question: q } })));
      assert.deepEqual(
        asks.map((r) => JSON.parse(textOf(r)).content.answer),
        ['bob: b1?', 'bob: b2?'],
      );
    } finally {
      await bob.close();
    }

    // alice retries one suspended call: it completes, its server is hers to use again.
    const done = await answer(berth.url, 'alice-key', 4, 'one?', held[0]!, 'first answer');
    assert.deepEqual(JSON.parse(done.body.result.content[0].text), { action: 'accept', content: { answer: 'first answer' } });
    // The call ended before its answer was sent, so the server is free by now; polled all the same (bounded).
    let again = await callTool(berth.url, 'alice-key', 5, 'again?');
    for (const deadline = Date.now() + 15_000; again.status === 429 && Date.now() < deadline;)
      again = await new Promise((r) => setTimeout(r, 50)).then(() => callTool(berth.url, 'alice-key', 5, 'again?'));
    assert.equal(again.body.result?.resultType, 'input_required', JSON.stringify(again.body));
    for (const [r, q, id] of [
      [held[1]!, 'two?', 6],
      [again, 'again?', 7],
    ] as const) {
      const end = await answer(berth.url, 'alice-key', id, q, r, 'ok');
      assert.equal(end.body.result?.resultType, 'complete', JSON.stringify(end.body));
    }
  });
});

describe('SharedPool at a principal cap (real servers)', { timeout: 60_000 }, () => {
  /** server id -> bridged calls held there (what Client2026Pool's extraLoad counts). */
  const suspended = new Map<string, number>();
  let pool: SharedPool<undefined>;
  before(() => {
    const ctx = launchContext({ command: PROBE });
    pool = new SharedPool<undefined>({
      size: 1,
      max: 10,
      startupTimeout: 30_000,
      stopGrace: 1000,
      ownerIdle: 60_000,
      log: silentLog,
      maxPerOwner: perPrincipalCap(1),
      extraLoad: (m) => suspended.get(m.server.id) ?? 0,
      start: async () => ({ server: await launchReady(ctx), info: undefined }),
    });
  });
  after(() => pool.close());

  const refused = (atCap?: OwnerAtCap) => Object.assign(new Error(atCap ? 'at cap' : 'unavailable'), { atCap });

  test('an exclusive pick at the cap waits for its own member to free, never claims another; the anonymous principal is not capped', async () => {
    const first = await pool.pick('alice', refused, true);
    let second: PoolMember<undefined> | undefined;
    const picking = pool.pick('alice', refused, true).then((m) => (second = m));
    // While it waits, the pool makes no member of alice's: she still holds one.
    await waitFor(() => pool.members.filter((m) => m.owner === undefined).length >= 1, 'a fresh member kept ready');
    assert.equal(second, undefined, 'the pick waits while her one member is busy');
    assert.equal(pool.members.filter((m) => m.owner === 'alice').length, 1);
    first.inFlight--;
    await picking;
    assert.equal(second, first, 'she gets her own member once it is idle');

    // Held only by a suspended bridged call: refused at once, naming how many she holds and her limit.
    second.inFlight--;
    suspended.set(first.server.id, 1);
    await assert.rejects(pool.pick('alice', refused, true), (e: Error & { atCap?: OwnerAtCap }) => {
      assert.deepEqual(e.atCap, { held: 1, limit: 1 });
      return true;
    });
    // A non-exclusive pick shares her member: it is never refused for the cap.
    assert.equal(await pool.pick('alice', refused), first);
    suspended.delete(first.server.id);

    const anonymous = principalKey(ANONYMOUS);
    const a = await pool.pick(anonymous, refused, true);
    const b = await pool.pick(anonymous, refused, true);
    assert.notEqual(a, b, 'without auth there is no cap: a second member');
    a.inFlight--;
    b.inFlight--;
  });
});
