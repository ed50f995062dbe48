// What the bridges read from a server that serves HTTP itself (src/relay/http-channel.ts: berth as that server's
// client, message by message) stops at limits.maxMessageSize, as HttpUpstream's own reads do
// (test/http-upstream-limits.test.ts): one JSON answer whole, an SSE stream event by event. Before, the SDK transport
// under it read whatever the server sent, so one hostile server could take berth's memory, and every session with it.
// Driven through bridge A (2026-07-28 clients of a 2025-era http server), the bridge that speaks to it over an
// HttpChannel, with a flooding server on the host's loopback (test/fixtures/flood-http-server.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { call2026 } from './helpers/call-2026.ts';
import { connect, serveBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

const LIMIT = 1024 * 1024;
/** The most the server sends of one flood (bounded, as every test loop is): 64 times the limit. */
const FLOOD_MIB = 64;

/** berth hosting the flooding server (its stats written to `stats`), maxMessageSize 1 MiB. */
const floodBerth = (stats: string, ...more: string[]) =>
  serveBerth({
    command: [
      process.execPath,
      '--import',
      import.meta.resolve('tsx'),
      fileURLToPath(new URL('./fixtures/flood-http-server.ts', import.meta.url)),
      '--flood-mib',
      String(FLOOD_MIB),
      '--stats',
      stats,
      ...more,
    ],
    upstream: 'http',
    serverEra: '2025',
    isolation: 'process',
    network: 'host',
    warmPool: 1,
    limits: { maxMessageSize: '1MiB' },
  });

/** The floods the server has ended so far (each line written when its reader hung up or it finished). */
const floodsIn = (stats: string) =>
  existsSync(stats)
    ? readFileSync(stats, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { tool: string; bytes: number; hungUp: boolean })
    : [];

describe('bridge A over HTTP: answers past maxMessageSize', { timeout: 120_000 }, () => {
  let berth: BerthProcess;
  const dir = mkdtempSync(join(tmpdir(), 'berth-flood-'));
  const stats = join(dir, 'floods.jsonl');
  before(async () => (berth = await floodBerth(stats)));
  after(async () => {
    await berth?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const floods = () => floodsIn(stats);

  let id = 0;
  const call = (name: string, args: Record<string, unknown> = {}) => call2026(berth.url, {}, ++id, name, args);

  for (const [tool, what] of [
    ['flood_sse', /an SSE event larger than maxMessageSize \(1048576 bytes\); berth read no further/],
    ['flood_json', /answer is larger than maxMessageSize \(1048576 bytes\); berth read no further/],
  ] as const) {
    test(`${tool}: the call fails naming maxMessageSize and its value, berth stops reading, other calls and sessions go on`, async (t) => {
      const before = floods().length;
      const r = await call(tool);
      // An error the server's call ends with: 200 under 2026-07-28 (statusOfServerError), -32603, and why.
      assert.equal(r.body.error?.code, -32603, JSON.stringify(r.body).slice(0, 400));
      assert.equal(r.status, 200);
      assert.match(r.body.error.message, what);
      // The server saw berth hang up long before the end of its flood.
      const ended = await waitFor(
        () =>
          floods()
            .slice(before)
            .find((f) => f.tool === tool),
        `the ${tool} flood to end`,
        30_000,
      );
      t.diagnostic(`${tool}: the server wrote ${(ended.bytes / LIMIT).toFixed(1)} MiB before berth hung up`);
      assert.equal(ended.hungUp, true, JSON.stringify(ended));
      assert.ok(ended.bytes < FLOOD_MIB * LIMIT, `the server sent all ${ended.bytes} bytes: berth kept reading`);
      // The same server, another call and another session all go on.
      const echo = await call('echo', { text: 'still here' });
      assert.equal(echo.status, 200);
      assert.equal(textOf(echo.body.result), 'still here');
      const other = await connect(berth.url);
      try {
        assert.equal(textOf(await other.client.callTool({ name: 'echo', arguments: { text: 'other session' } })), 'other session');
      } finally {
        await other.client.close();
      }
    });
  }

  test('the bound is per SSE event, not per stream: many events each within it, 4 MiB in all, pass, with LF or CRLF line ends', async () => {
    // (Not CR alone: the SDK's SSE parser never hands on an event whose stream ends in CR CR, bound or none.)
    for (const eol of ['lf', 'crlf']) {
      const r = await call('spaced_sse', { count: 8, bytes: LIMIT / 2, eol });
      assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 400));
      assert.equal(textOf(r.body.result), 'after 8 events', eol);
    }
  });
});

// The server's GET stream waits on no request: nobody's call can fail with why berth stopped reading it, so the
// session's log says it. Before, it was dropped without a word.
describe('bridge A over HTTP: a GET stream past maxMessageSize', { timeout: 120_000 }, () => {
  let berth: BerthProcess;
  const dir = mkdtempSync(join(tmpdir(), 'berth-flood-get-'));
  const stats = join(dir, 'floods.jsonl');
  before(async () => (berth = await floodBerth(stats, '--flood-get')));
  after(async () => {
    await berth?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('berth hangs up on it and logs why, naming maxMessageSize; calls go on', async () => {
    const r = await call2026(berth.url, {}, 1, 'echo', { text: 'before' });
    assert.equal(textOf(r.body.result), 'before', JSON.stringify(r.body).slice(0, 400));
    const ended = await waitFor(() => floodsIn(stats).find((f) => f.tool === 'get'), 'the GET flood to end', 30_000);
    assert.equal(ended.hungUp, true, JSON.stringify(ended));
    assert.ok(ended.bytes < FLOOD_MIB * LIMIT, `the server sent all ${ended.bytes} bytes: berth kept reading`);
    await waitFor(
      () =>
        /the server's GET stream was cut: the MCP server sent an SSE event larger than maxMessageSize \(1048576 bytes\)/.test(berth.logs()),
      "the session's log to say why",
      30_000,
    );
    const after = await call2026(berth.url, {}, 2, 'echo', { text: 'after' });
    assert.equal(textOf(after.body.result), 'after');
  });
});
