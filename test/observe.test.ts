// Issue 7 (part): Prometheus metrics at /metrics and one log line per request.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { connect, runBerth, textOf } from './helpers/berth.ts';

/** The value of one sample line, e.g. metric('berth_sessions_created_total{runtime="default"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics and request logs', () => {
  test('sessions, requests, round trips, start times and bytes are counted; every request is one log line', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1']);
    try {
      // Wait for the warm server, so the session start is the warm one.
      while (
        ((await (await fetch(new URL('/healthz', berth.url))).json()) as { runtimes: { default: { warm: number } } }).runtimes.default
          .warm < 1
      )
        await sleep(50);
      const { client, transport } = await connect(berth.url, { elicitation: {} });
      client.setRequestHandler(ElicitRequestSchema, async () => {
        await sleep(50);
        return { action: 'accept', content: { answer: 'blue' } };
      });
      assert.match(textOf(await client.callTool({ name: 'ask', arguments: { question: 'colour?' } })), /blue/);
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'x' } })), 'x');
      const mid = await (await fetch(new URL('/metrics', berth.url))).text();
      assert.equal(sample(mid, 'berth_sessions_live{runtime="default"}'), 1);
      assert.equal(sample(mid, 'berth_sessions_created_total{runtime="default"}'), 1);
      assert.equal(sample(mid, 'berth_requests_total{runtime="default",method="tools/call",status="200"}'), 2);
      assert.equal(sample(mid, 'berth_requests_total{runtime="default",method="initialize",status="200"}'), 1);
      assert.equal(sample(mid, 'berth_server_request_round_trip_seconds_count{runtime="default",method="elicitation/create"}'), 1);
      assert.ok(sample(mid, 'berth_server_request_round_trip_seconds_sum{runtime="default",method="elicitation/create"}')! >= 0.05);
      assert.equal(sample(mid, 'berth_session_start_seconds_count{runtime="default",driver="process",warm="yes"}'), 1);
      assert.ok(sample(mid, 'berth_relayed_bytes_total{runtime="default",direction="out"}')! > 100);
      assert.ok(sample(mid, 'berth_relayed_bytes_total{runtime="default",direction="in"}')! > 100);
      assert.equal(sample(mid, 'berth_pending_server_requests{runtime="default"}'), 0);
      const sid = transport.sessionId!;
      await transport.terminateSession();
      await client.close();
      await sleep(100);
      const end = await (await fetch(new URL('/metrics', berth.url))).text();
      assert.equal(sample(end, 'berth_sessions_ended_total{runtime="default",reason="deleted"}'), 1);
      assert.equal(sample(end, 'berth_sessions_live{runtime="default"}'), 0);
      assert.equal(sample(end, 'berth_requests_total{runtime="default",method="DELETE",status="204"}'), 1);
      assert.match(end, /^berth_warm_servers\{runtime="default"\} \d+$/m);
      // Node's process metrics carry berth_ once: berth_process_cpu_user_seconds_total, not berth_process_process_….
      assert.ok(sample(end, 'berth_process_cpu_user_seconds_total')! > 0, 'CPU time of berth itself');
      assert.ok(sample(end, 'berth_process_resident_memory_bytes')! > 1048576);
      assert.ok(sample(end, 'berth_nodejs_heap_size_used_bytes')! > 1048576);
      const names = new Set(
        end
          .split('\n')
          .filter((l) => l && !l.startsWith('#'))
          .map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)![0]),
      );
      assert.ok(names.size > 20, `${names.size} metric series names`);
      for (const name of names) {
        assert.match(name, /^berth_/, `every metric is berth's: ${name}`);
        assert.doesNotMatch(name, /^berth_(berth|process_process|process_nodejs|nodejs_nodejs)_/, `no doubled prefix: ${name}`);
      }
      const lines = berth
        .logs()
        .split('\n')
        .filter((l) => l.includes('"msg":"request"'))
        .map((l) => JSON.parse(l) as { method: string; status: number; ms: number; session?: string; id?: unknown });
      const calls = lines.filter((l) => l.method === 'tools/call');
      assert.equal(calls.length, 2);
      assert.ok(calls.every((c) => c.status === 200 && c.ms >= 0 && c.session === sid.slice(0, 8) && c.id !== undefined));
    } finally {
      await berth.stop();
    }
  });

  test('a method the client makes up is counted as "other": no metric series per made-up name', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '0']);
    try {
      const names = Array.from({ length: 20 }, (_, i) => `made-up/${i}-${Math.random().toString(36).slice(2)}`);
      for (const method of names) {
        const r = await fetch(berth.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: {} }),
        });
        await r.body?.cancel();
      }
      const text = await (await fetch(new URL('/metrics', berth.url))).text();
      for (const n of names) assert.ok(!text.includes(n), `a series named after ${n}`);
      const other = text
        .split('\n')
        .filter((l) => l.startsWith('berth_requests_total{runtime="default",method="other"'))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
      assert.equal(other, names.length, 'every made-up method counted under "other"');
    } finally {
      await berth.stop();
    }
  });

  test('/readyz: 503 until a warm server waits, 200 then (also while a session emptied the pool), 503 at maxSessions', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--max-sessions', '2']);
    try {
      const ready = async () => {
        const r = await fetch(new URL('/readyz', berth.url));
        return { status: r.status, body: (await r.json()) as { ready: boolean; reasons: string[] } };
      };
      let r = await ready();
      for (let i = 0; i < 200 && r.status !== 200; i++) {
        assert.equal(r.status, 503);
        assert.match(r.body.reasons.join(), /no warm server yet/);
        await sleep(50);
        r = await ready();
      }
      assert.deepEqual(r, { status: 200, body: { ready: true, reasons: [], runtimes: { default: { ready: true, reasons: [] } } } });
      // The first session took the only warm server; its refill takes a cold start (hundreds of ms), and a new
      // session would start cold meanwhile: still ready.
      const a = await connect(berth.url);
      r = await ready();
      assert.deepEqual(r, { status: 200, body: { ready: true, reasons: [], runtimes: { default: { ready: true, reasons: [] } } } });
      const b = await connect(berth.url);
      r = await ready();
      assert.equal(r.status, 503);
      assert.match(r.body.reasons.join(), /at maxSessions/);
      for (const { client, transport } of [a, b]) {
        await transport.terminateSession();
        await client.close();
      }
    } finally {
      await berth.stop();
    }
  });
});
