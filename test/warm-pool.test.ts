// Issue 17 item 2: a warm pool that follows demand. A real berth on loopback (library API, process driver) hosting the
// probe server; the pool is watched through /metrics (berth_warm_servers: servers started and waiting for a session).
// Sizes and counts only, never latency: the speed of a burst is the bench's "burst" scenario.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRuntime } from '../src/index.ts';
import { RuntimeSchema } from '../src/config/schema.ts';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, PROBE, ROOT, runBerth, textOf } from './helpers/berth.ts';
import { descendants } from './helpers/procs.ts';

type Berth = ReturnType<typeof createRuntime>;

async function gauge(berth: Berth, name: string, labels = 'runtime="default"'): Promise<number> {
  const text = await (await fetch(new URL('/metrics', berth.endpoint()))).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

/** Polls until `check` holds, within a deadline. */
/** Every warm-pool size /metrics showed during the current test. */
let seen: number[] = [];
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (warm pool sizes seen: ${seen.join(',')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function withBerth(warmPool: unknown, body: (berth: Berth, seen: number[]) => Promise<void>, limits: object = {}): Promise<void> {
  const berth = createRuntime({
    server: { port: 0 },
    runtimes: { default: { command: PROBE, isolation: 'process', network: 'host', warmPool, idleTimeout: '5m', limits } as never },
  });
  await berth.start();
  seen = [];
  let watching = true;
  // Every size the pool passes through, sampled while the test runs (so "never above" is checked, not assumed).
  const watcher = (async () => {
    while (watching) {
      const w = await gauge(berth, 'berth_warm_servers').catch(() => NaN);
      if (!Number.isNaN(w)) seen.push(w);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  try {
    await body(berth, seen);
  } finally {
    watching = false;
    await watcher;
    await berth.stop();
  }
}

/** Opens n sessions one after another, each answering a call (so each really has its own server). */
async function burst(berth: Berth, n: number) {
  const sessions = [];
  for (let i = 0; i < n; i++) {
    const s = await connect(berth.endpoint());
    assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: `s${i}` } })), `s${i}`);
    sessions.push(s);
  }
  return sessions;
}

/** Probe servers running as this process's descendants (the process driver runs them as berth's children). */
function probeServers(): number[] {
  return descendants(process.pid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('probe-server');
    } catch {
      return false; // gone
    }
  });
}

const idleStarts = async (berth: Berth) =>
  (await gauge(berth, 'berth_server_starts', 'runtime="default",state="running"')) === 0 &&
  (await gauge(berth, 'berth_server_starts', 'runtime="default",state="queued"')) === 0;

describe('warm pool sizing (issue 17)', () => {
  test('auto means min 2, max 16; a number n is min = max = n; bad shapes are refused with the key named', () => {
    const pool = (warmPool: unknown) => RuntimeSchema.parse({ command: 'x', warmPool }).warmPool;
    assert.deepEqual(pool('auto'), { min: 2, max: 16, window: 30_000, shrinkAfter: 120_000, burstGap: 100 });
    assert.deepEqual(pool(3), { min: 3, max: 3, window: 30_000, shrinkAfter: 0, burstGap: 0 });
    assert.deepEqual(pool({ min: 1, max: 4, shrinkAfter: '2s' }), { min: 1, max: 4, window: 30_000, shrinkAfter: 2000, burstGap: 100 });
    assert.throws(() => pool({ min: 1, max: 4, burstGap: 100 }), /duration with its unit/);
    assert.throws(() => pool({ min: 5, max: 4 }), /warmPool\.min must not exceed warmPool\.max/);
    assert.throws(() => pool({ min: 1, max: 4, shrinkAfter: 2 }), /duration with its unit/);
    assert.throws(() => pool('lots'), /expected a number of servers, auto, or \{min, max/);
  });

  test('{min, max}: a burst of new sessions grows the pool above min, within max; it shrinks back to min after shrinkAfter', async () => {
    const MIN = 1;
    const MAX = 5;
    const N = 5;
    await withBerth({ min: MIN, max: MAX, shrinkAfter: '10s' }, async (berth, seen) => {
      await waitFor('the first warm server', async () => (await gauge(berth, 'berth_warm_servers')) === MIN);
      const sessions = await burst(berth, N);
      // The pool grows while the sessions keep coming and after: at least two warm servers above min.
      await waitFor('the pool to grow above min', async () => Math.max(...seen) >= MIN + 2);
      assert.equal(await gauge(berth, 'berth_sessions_live'), N);
      // No new session for shrinkAfter: back to min, and the live sessions untouched.
      await waitFor(
        'the pool to shrink back to min',
        async () => (await gauge(berth, 'berth_warm_servers')) === MIN && (await idleStarts(berth)),
      );
      assert.ok(Math.max(...seen) <= MAX, `never above max: saw ${Math.max(...seen)}`);
      for (const [i, s] of sessions.entries())
        assert.equal(textOf(await s.client.callTool({ name: 'echo', arguments: { text: `again ${i}` } })), `again ${i}`);
      assert.equal(await gauge(berth, 'berth_sessions_live'), N);
      for (const s of sessions) await s.transport.terminateSession();
      // Ending sessions is no demand: the pool stays at min.
      await waitFor('the sessions to end', async () => (await gauge(berth, 'berth_sessions_live')) === 0);
      assert.equal(await gauge(berth, 'berth_warm_servers'), MIN);
    });
  });

  test('a session that finds the pool empty while a refill is starting takes whichever is ready first, the refill or its own start; the other waits in the pool', async () => {
    // One start slot, held by the refill after session A. Session B may start beside refills alone (StartGate), so B's
    // own start and the refill race: usually the refill, begun first, is ready first and B leaves the start queue;
    // on a loaded host B's own start can win (seen in CI). Either way nothing is thrown away and nothing is doubled:
    // the other server waits in the pool, which stays at its size.
    await withBerth(
      1,
      async (berth, seen) => {
        await waitFor('the warm server', async () => (await gauge(berth, 'berth_warm_servers')) === 1 && (await idleStarts(berth)));
        const a = await connect(berth.endpoint());
        const pidOf = async (c: typeof a) =>
          (JSON.parse(textOf(await c.client.callTool({ name: 'whoami', arguments: {} }))) as { pid: number }).pid;
        const aPid = await pidOf(a);
        await waitFor(
          "the refill after A's initialize, in the only start slot",
          async () =>
            (await gauge(berth, 'berth_server_starts', 'runtime="default",state="running"')) === 1 &&
            (await gauge(berth, 'berth_warm_servers')) === 0,
        );
        // The slot is taken before the sandbox is made (its directory, mounts, then the spawn): wait for the process.
        await waitFor("the refill's server process", async () => probeServers().filter((p) => p !== aPid).length >= 1);
        const starting = probeServers().filter((p) => p !== aPid);
        assert.equal(starting.length, 1, `one server starting beside A's: ${starting.join(', ')}`);
        const b = await connect(berth.endpoint());
        const bPid = await pidOf(b);
        await waitFor('the pool refilled to 1', async () => (await gauge(berth, 'berth_warm_servers')) === 1 && (await idleStarts(berth)));
        assert.ok(Math.max(...seen) <= 1, `never above 1: saw ${Math.max(...seen)}`);
        const warm = probeServers().filter((p) => p !== aPid && p !== bPid);
        assert.equal(warm.length, 1, `A's, B's and one warm server, no more: warm ${warm.join(', ')}`);
        assert.ok(
          bPid === starting[0] || warm[0] === starting[0],
          `the refill that was starting when B arrived (${starting[0]}) serves B (${bPid}) or waits in the pool (${warm[0]})`,
        );
        for (const s of [a, b]) await s.transport.terminateSession();
      },
      { maxConcurrentStarts: 1 },
    );
  });

  test('refills wait while a burst is served from warm servers (burstGap), and fill the pool once it ends', async () => {
    const GAP_MS = 6000;
    await withBerth({ min: 4, max: 4, burstGap: `${GAP_MS}ms` }, async (berth) => {
      await waitFor('the warm pool', async () => (await gauge(berth, 'berth_warm_servers')) === 4 && (await idleStarts(berth)));
      const sessions = await burst(berth, 3); // each arrives well within 6 s of the one before, even on a loaded host
      const burstEnd = Date.now();
      // Without the hold the first refill starts 250 ms after the first session's initialize, inside the burst.
      await waitFor(
        'the first refill',
        async () =>
          (await gauge(berth, 'berth_server_starts', 'runtime="default",state="running"')) > 0 ||
          (await gauge(berth, 'berth_warm_servers')) > 1,
      );
      const heldFor = Date.now() - burstEnd;
      // The last arrival came before burstEnd by at most its connect and one call: 3 s of slack for a loaded host.
      assert.ok(heldFor >= GAP_MS - 3000, `refills held for ${heldFor} ms after the burst, not ~${GAP_MS} ms`);
      await waitFor('the pool refilled to 4', async () => (await gauge(berth, 'berth_warm_servers')) === 4 && (await idleStarts(berth)));
      assert.equal(await gauge(berth, 'berth_sessions_live'), 3);
      for (const s of sessions) await s.transport.terminateSession();
    });
  });

  test('a fixed number keeps its size through the same burst: refilled to it, never above it', async () => {
    const SIZE = 2;
    await withBerth(SIZE, async (berth, seen) => {
      await waitFor('the warm pool', async () => (await gauge(berth, 'berth_warm_servers')) === SIZE);
      const sessions = await burst(berth, 5);
      await waitFor('the refill', async () => (await gauge(berth, 'berth_warm_servers')) === SIZE && (await idleStarts(berth)));
      assert.ok(Math.max(...seen) <= SIZE, `never above ${SIZE}: saw ${Math.max(...seen)}`);
      assert.equal(await gauge(berth, 'berth_sessions_live'), 5);
      for (const s of sessions) await s.transport.terminateSession();
    });
  });

  test('berth run --warm-pool MIN..MAX sizes the pool from MIN; a reversed range is refused before anything starts', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1..3']);
    try {
      const health = async () => (await (await fetch(new URL('/healthz', berth.url))).json()).runtimes.default;
      const deadline = Date.now() + 60_000;
      while ((await health()).warm !== 1) {
        if (Date.now() > deadline) throw new Error('the pool never held its minimum of 1');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await berth.stop();
    }
    const bad = spawnSync(process.execPath, ['bin/berth.js', 'run', '--warm-pool', '5..2'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--warm-pool .* argument '5\.\.2' is invalid\. expected MIN\.\.MAX with MIN <= MAX/);
  });
});
