// Issue 7 item 4: the live dashboard at /admin/ — its feed (/admin/events), memory figures and chart history at the
// API level, then the page itself in a real browser (playwright-core driving Debian's chromium).
import type { SessionLimits } from '../src/dashboard/limits.ts';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Browser, Page } from 'playwright-core';
import { History } from '../src/observe/history.ts';
import { treeMemory } from '../src/observe/memory.ts';
import { connect, readUntil, ROOT, runBerth, sseEvents, type BerthProcess } from './helpers/berth.ts';

const TOKEN = 'dashboard-test-token-7f3a';
const ARTIFACTS = process.env.BERTH_ARTIFACTS ?? join(ROOT, 'test/.build/artifacts');

interface SessionView {
  id: string;
  principal: { kind: string; subject: string };
  driver: string;
  inFlight: number;
  pendingServerRequests: number | null;
  idleExpiresInSeconds: number | null;
  expiresInSeconds: number;
  memory: { pssBytes: number; processes: number } | null;
  idleSeconds: number;
  limits: SessionLimits;
}
interface Snapshot {
  status: string;
  runtimes: Record<string, { mode: string; isolation: string; auth: string; sessions: number; warm: number }>;
  sessions: SessionView[];
  history?: Array<{ t: number; sessions: number; requestRate: number }>;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Follows /admin/events; `latest()` is the newest snapshot, `all` every one received. */
async function follow(base: string) {
  const abort = new AbortController();
  const r = await fetch(`${base}/admin/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: abort.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type')!, /^text\/event-stream/);
  const all: Snapshot[] = [];
  void (async () => {
    let text = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of r.body!) {
        text += decoder.decode(chunk, { stream: true });
        const events = sseEvents(text);
        all.splice(0, all.length, ...events.map((e) => JSON.parse(e.data) as Snapshot));
      }
    } catch {
      // aborted
    }
  })();
  return { all, latest: () => all.at(-1), close: () => abort.abort() };
}

describe('dashboard feed and figures', () => {
  test('history: one sample per tick, request rate from the counter, bounded to the window', async () => {
    let requests = 0;
    let sessions = 0;
    const h = new History({ read: () => ({ sessions, requests }) }, 10_000, 30_000);
    await h.sample(0);
    requests = 50;
    sessions = 2;
    await h.sample(10_000);
    requests = 40; // a reset counter is no traffic, not a negative rate
    await h.sample(20_000);
    await h.sample(30_000);
    assert.deepEqual(h.points, [
      { t: 10_000, sessions: 2, requestRate: 5 },
      { t: 20_000, sessions: 2, requestRate: 0 },
      { t: 30_000, sessions: 2, requestRate: 0 },
    ]);
  });

  test('memory: the PSS of a whole process tree, children included', async () => {
    const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(32 << 20, 1); setInterval(() => b[0]++, 1000)'], {
      stdio: 'ignore',
    });
    try {
      await sleep(500);
      const alone = (await treeMemory([child.pid!])).get(child.pid!)!;
      const withParent = (await treeMemory([process.pid])).get(process.pid)!;
      assert.equal(alone.processes, 1);
      assert.ok(alone.pssBytes > 32 * 1048576, `a child holding 32 MiB has PSS ${alone.pssBytes}`);
      assert.ok(withParent.processes >= 2);
      assert.ok(withParent.pssBytes > alone.pssBytes);
      assert.equal((await treeMemory([2 ** 22 + 12345])).size, 0, 'a pid that does not exist has no figure');
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('/admin/events: refused without the token; with it, snapshots every second with sessions, memory and history', async () => {
    const berth = await runBerth(['--isolation', 'process', '--admin-token-env', 'BERTH_TEST_ADMIN'], undefined, {
      BERTH_TEST_ADMIN: TOKEN,
    });
    const base = new URL(berth.url).origin;
    try {
      const none = await fetch(`${base}/admin/events`);
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate')!, /^Bearer/);
      assert.equal((await fetch(`${base}/admin/events`, { headers: { authorization: 'Bearer nope' } })).status, 401);

      const feed = await follow(base);
      const first = await until('a first snapshot', () => feed.latest());
      assert.equal(first.status, 'ok');
      assert.equal(first.runtimes.default!.isolation, 'process');
      assert.ok(first.history && first.history.length >= 1, 'the first snapshot carries the chart history');

      const { client, transport } = await connect(berth.url, { elicitation: {} });
      let answer!: () => void;
      client.setRequestHandler(
        ElicitRequestSchema,
        () => new Promise((resolve) => (answer = () => resolve({ action: 'accept', content: { answer: 'yes' } }))),
      );
      const call = client.callTool({ name: 'ask', arguments: { question: 'ok?' } });
      // While the elicitation waits: one call in flight, one pending server request, no idle clock.
      const busy = await until('the waiting elicitation', () =>
        feed.latest()?.sessions.find((s) => s.id === transport.sessionId && s.pendingServerRequests === 1),
      );
      assert.equal(busy.inFlight, 1);
      assert.equal(busy.idleExpiresInSeconds, null);
      assert.equal(busy.principal.kind, 'anonymous');
      assert.equal(busy.driver, 'process');
      assert.ok(busy.memory && busy.memory.pssBytes > 5 * 1048576, `a node server's PSS is several MiB, got ${busy.memory?.pssBytes}`);
      answer();
      await call;
      const calm = await until('the call to end', () =>
        feed.latest()?.sessions.find((s) => s.id === transport.sessionId && s.inFlight === 0),
      );
      assert.equal(calm.pendingServerRequests, 0);
      assert.ok(calm.idleExpiresInSeconds! > 800 && calm.idleExpiresInSeconds! <= 900, 'idle timeout 15 min');
      assert.ok(calm.expiresInSeconds > 8 * 3600 - 60, 'max lifetime 8 h');
      // The runtime's limits come with each session: the defaults here (no CPU limit set; memory's and pids' own
      // defaults, marked not enforced where this host cannot hold them).
      assert.deepEqual(
        { ...calm.limits, notEnforced: [] },
        {
          memoryBytes: 2 * 1024 ** 3,
          cpus: null,
          pids: 512,
          diskBytes: 1073741824,
          idleTimeoutSeconds: 900,
          maxLifetimeSeconds: 28800,
          requestTimeoutSeconds: 600,
          notEnforced: [],
        },
      );
      // Snapshots keep coming, once a second, and resend the history only when it moved.
      const n = feed.all.length;
      await sleep(2500);
      assert.ok(feed.all.length >= n + 2, `${feed.all.length - n} snapshots in 2.5 s`);
      assert.ok(feed.all.slice(1).some((s) => s.history === undefined));

      // The chart's history is fed by the runtimes and the request counter: a sample (every 10 s) sees the session
      // and the requests made since the previous one.
      const sample = await until(
        'a history sample with the session',
        () => feed.all.flatMap((s) => s.history ?? []).find((p) => p.sessions === 1 && p.requestRate > 0),
        15_000,
      );
      assert.ok(sample.requestRate < 10, `a handful of requests in 10 s, not ${sample.requestRate}/s`);

      const one = (await (
        await fetch(`${base}/admin/sessions/${transport.sessionId}`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).json()) as SessionView;
      assert.ok(one.memory!.pssBytes > 5 * 1048576 && one.memory!.processes >= 1);
      feed.close();
      await client.close();
    } finally {
      await berth.stop();
    }
  });

  test('idle counts from the last message either way: a call streaming progress stays near 0', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--admin-token-env', 'BERTH_TEST_ADMIN'], undefined, {
      BERTH_TEST_ADMIN: TOKEN,
    });
    const { client, transport } = await connect(berth.url);
    const view = async () =>
      (await (
        await fetch(new URL(`/admin/sessions/${transport.sessionId}`, berth.url), { headers: { authorization: `Bearer ${TOKEN}` } })
      ).json()) as SessionView;
    try {
      // 60 steps, one every 200 ms: the client's POST is the only client traffic for 12 s or more.
      let steps = 0;
      const started = Date.now();
      const call = client.callTool({ name: 'progress', arguments: { steps: 60, delayMs: 200 } }, undefined, {
        onprogress: () => steps++,
        resetTimeoutOnProgress: true,
      });
      await until('20 progress notifications, 4 s into the call', () => steps >= 20 && Date.now() - started >= 4000, 60_000);
      const busy = await view();
      assert.equal(busy.inFlight, 1, 'read while the call still streams');
      assert.ok(
        busy.idleSeconds <= 2,
        `idle ${busy.idleSeconds} s ${Math.round((Date.now() - started) / 1000)} s into a call that sent progress every 200 ms`,
      );
      assert.equal(busy.idleExpiresInSeconds, null);
      await call;
      assert.ok(steps >= 60);
      // Once the call ends, with no message either way, idle counts up again.
      await until('idle to count up after the call', async () => (await view()).idleSeconds >= 2, 30_000);
      await client.close();
    } finally {
      await berth.stop();
    }
  });

  test('the page and its files load without the token, with content types and a strict CSP; nothing else does', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '0', '--admin-token-env', 'BERTH_TEST_ADMIN'], undefined, {
      BERTH_TEST_ADMIN: TOKEN,
    });
    const base = new URL(berth.url).origin;
    try {
      const page = await fetch(`${base}/admin/`);
      assert.equal(page.status, 200);
      assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
      const csp = page.headers.get('content-security-policy')!;
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.doesNotMatch(csp, /unsafe/);
      assert.doesNotMatch(await page.text(), /<script>|style=/, 'no inline script or style for the CSP to allow');
      for (const [path, type] of [
        ['app.js', 'text/javascript'],
        ['htm-preact.js', 'text/javascript'],
        ['uPlot.js', 'text/javascript'],
        ['uPlot.css', 'text/css'],
        ['style.css', 'text/css'],
      ]) {
        const r = await fetch(`${base}/admin/assets/${path}`);
        assert.equal(r.status, 200, path);
        assert.equal(r.headers.get('content-type'), `${type}; charset=utf-8`, path);
        assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
        assert.ok((await r.arrayBuffer()).byteLength > 500, path);
      }
      const redirect = await fetch(`${base}/admin`, { redirect: 'manual' });
      assert.equal(redirect.status, 308);
      assert.equal(redirect.headers.get('location'), 'admin/');
      for (const path of ['/admin/assets/nope.js', '/admin/sessions', '/admin/status', '/admin/events']) {
        assert.equal((await fetch(`${base}${path}`)).status, 401, path);
      }
      assert.equal((await fetch(`${base}/admin/assets/nope.js`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
    } finally {
      await berth.stop();
    }
  });

  test('without an admin token configured, no dashboard either', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '0']);
    try {
      assert.equal((await fetch(new URL('/admin/', berth.url))).status, 404);
      assert.equal((await fetch(new URL('/admin/assets/app.js', berth.url))).status, 404);
    } finally {
      await berth.stop();
    }
  });
});

/**
 * The chart spans the time its samples cover (not the fixed hour that squeezed them into the right edge), names its
 * axes with their units, and its legend names each series with its newest value and toggles it on a click.
 */
async function checkChart(page: Page, base: string): Promise<void> {
  // Two samples (10 s apart) give the data a span of its own.
  const chart = page.locator('#chart');
  await until('two history samples on the chart', async () => Number(await chart.getAttribute('data-points')) >= 2, 40_000);
  const attr = async (name: string) => Number(await chart.getAttribute(name));
  const [xMin, xMax, first, last] = [await attr('data-x-min'), await attr('data-x-max'), await attr('data-first'), await attr('data-last')];
  assert.ok(xMin <= first && xMax >= last, `the x range ${xMin}..${xMax} covers the samples ${first}..${last}`);
  assert.ok(
    (last - first) / (xMax - xMin) >= 0.9,
    `the samples (${last - first} s) fill the x range (${xMax - xMin} s), not its right edge`,
  );
  // The samples are berth's own history: the feed's first snapshot has the chart's first sample.
  const abort = new AbortController();
  const r = await fetch(`${base}/admin/events`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: abort.signal });
  const history = JSON.parse(sseEvents(await readUntil(r, (ev) => ev.length >= 1))[0]!.data).history as Array<{ t: number }>;
  abort.abort();
  assert.ok(
    history.some((p) => p.t / 1000 === first),
    'the first sample is from the history',
  );

  assert.equal(await page.locator('#axis-time').textContent(), 'Time (local, one sample every 10s)');
  assert.match((await page.locator('#axis-sessions').textContent())!, /^Live sessions \(count\)$/);
  assert.match((await page.locator('#axis-rate').textContent())!, /^Request rate \(requests\/s\)$/);
  const legend = page.locator('#chart .u-legend .u-series');
  assert.deepEqual(await legend.locator('.u-label').allTextContents(), ['Time', 'Live sessions', 'Requests/s']);
  // With the cursor off the chart, the newest values (never an empty legend).
  const [time, sessions, rate] = await legend.locator('.u-value').allTextContents();
  assert.match(time!, /^\d\d:\d\d:\d\d$/);
  assert.match(sessions!, /^\d+$/);
  assert.match(rate!, /^\d+\.\d\d$/);
  const rateRow = legend.filter({ hasText: 'Requests/s' });
  await rateRow.click();
  assert.match((await rateRow.getAttribute('class'))!, /\bu-off\b/, 'a click hides the series');
  await rateRow.click();
  assert.doesNotMatch((await rateRow.getAttribute('class'))!, /\bu-off\b/);
}

/** Debian's chromium (the real binary behind its wrapper script), or why it cannot run. */
async function launchChromium(): Promise<{ browser?: Browser; skip?: string }> {
  const path = process.env.CHROMIUM_PATH ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
  if (!path) return { skip: 'no chromium installed (apt-get install chromium)' };
  try {
    const { chromium } = await import('playwright-core');
    // As root (CI) Chromium's own sandbox cannot start; the page it loads is berth's own.
    const browser = await chromium.launch({
      executablePath: path,
      args: ['--disable-dev-shm-usage', ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
    });
    return { browser };
  } catch (e) {
    return { skip: `chromium at ${path} cannot run: ${(e as Error).message.split('\n')[0]}` };
  }
}

describe('dashboard in a browser', async () => {
  const launched = await launchChromium();
  if (launched.skip) console.log(`skipping the browser tests: ${launched.skip}`);
  const browser = launched.browser;
  let berth: BerthProcess;
  before(async () => {
    // Limits set, so the page has some to show (a host without cgroups shows them marked not enforced).
    const limits = ['--memory', '256MiB', '--pids', '300', '--cpus', '1.5'];
    if (browser)
      berth = await runBerth(['--isolation', 'process', ...limits, '--admin-token-env', 'BERTH_TEST_ADMIN'], undefined, {
        BERTH_TEST_ADMIN: TOKEN,
      });
  });
  after(async () => {
    await browser?.close();
    await berth?.stop();
  });

  test('asks for the token, refuses a wrong one, then shows sessions live and ends one with a click', { skip: launched.skip }, async () => {
    const base = new URL(berth.url).origin;
    const first = await connect(berth.url);
    // The copy button writes to the clipboard; the test reads it back.
    const page = await browser!.newPage({ permissions: ['clipboard-read', 'clipboard-write'] });
    const problems: string[] = [];
    page.on('console', (m) => {
      // The refused token's 401 is expected; anything else (a CSP violation, a script error) is not.
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      await page.goto(`${base}/admin/`);
      await page.locator('#token').waitFor();
      assert.equal(await page.locator('#live-count').count(), 0, 'nothing but the form before a token');
      assert.equal(await page.locator('#sessions').count(), 0);

      await page.fill('#token', 'not-the-token');
      await page.click('button[type=submit]');
      await page.locator('.error', { hasText: 'refused' }).waitFor();
      assert.equal(await page.locator('#live-count').count(), 0);

      await page.fill('#token', TOKEN);
      await page.click('button[type=submit]');
      const row = page.locator(`tr.session[data-id="${first.transport.sessionId}"]`);
      await row.waitFor();
      assert.equal(await row.locator('.principal').textContent(), 'anonymous');
      assert.match((await row.locator('.memory .pss').textContent())!, /^\d+\.\d MiB$/);
      assert.equal(await page.locator('#live-count').textContent(), '1');
      const sid = first.transport.sessionId!;
      assert.ok(!(await page.locator('body').innerText()).includes(sid), 'the full id is not on screen unasked');
      // The full id on hover, and copied with a click.
      assert.equal(await row.locator('code.sid').getAttribute('title'), sid);
      await row.locator('button.copy').click();
      await row.locator('button.copy', { hasText: 'Copied' }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), sid);
      // The runtime's limits, per session: memory beside its use, the rest in their own column.
      assert.match((await row.locator('[data-limit=memory]').textContent())!, /^of 256 MiB( \(not enforced\))?$/);
      const limit = async (key: string) =>
        (await row.locator(`.limits [data-limit=${key}]`).textContent())!.replace(/ \(not enforced\)$/, '');
      assert.equal(await limit('cpus'), 'CPUs: 1.5');
      assert.equal(await limit('pids'), 'pids: 300');
      assert.equal(await limit('disk'), 'disk: 1 GiB');
      assert.equal(await limit('idle'), 'idle timeout: 15m');
      assert.equal(await limit('lifetime'), 'max lifetime: 8h');
      assert.equal(await limit('request'), 'call timeout: 10m');
      assert.match((await page.locator('#runtimes').textContent())!, /stateful.*process/);
      assert.equal((await page.locator('.uplot canvas').count()) > 0, true, 'the chart is drawn');
      await checkChart(page, new URL(berth.url).origin);
      assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie carries the token');

      // A marker on the window survives only if the page is never reloaded.
      await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
      const second = await connect(berth.url);
      await page.locator('#live-count', { hasText: '2' }).waitFor();
      assert.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, 'updated without a reload');

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

      // Ending takes two clicks (arm, confirm), then the row goes and the client's session is gone.
      const secondRow = page.locator(`tr.session[data-id="${second.transport.sessionId}"]`);
      await secondRow.locator('button.end').click();
      await secondRow.locator('button.end', { hasText: 'Confirm' }).click();
      await secondRow.waitFor({ state: 'detached' });
      await page.locator('#live-count', { hasText: '1' }).waitFor();
      await assert.rejects(
        second.client.listTools(),
        (e: Error & { code?: number }) => e.code === 404 && /Session not found/.test(e.message),
      );
      assert.equal((await first.client.listTools()).tools.length > 0, true, 'the other session lives on');

      // The token stays for the tab (sessionStorage): a reload goes straight to the dashboard; signing out forgets it.
      await page.reload();
      await page.locator('#live-count', { hasText: '1' }).waitFor();
      await page.click('text=Sign out');
      await page.locator('#token').waitFor();
      assert.equal(await page.evaluate(() => sessionStorage.length), 0);
      assert.deepEqual(problems, []);
    } finally {
      await page.close();
      await first.client.close();
    }
  });
});
