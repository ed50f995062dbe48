// A server writing notifications for a GET stream nobody opened: past streams.retainEvents each one displaces an
// older one, and each used to be a ~285-byte warning in berth's log (200,000 of them: 17 MB of log in 1.9 s, and
// another session's p99 went from 92 ms to over a second). Now every drop is counted (berth_stream_dropped_total)
// and the session's log says how many at most once per DROP_LOG_INTERVAL (src/util/tally.ts).
// Build first: npm run build && node --import tsx --test test/drop-flood.test.ts
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ACCEPT_BOTH, connect, rawInit, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const V = '2025-11-25';
const COUNT = 50_000;
const RETAIN = 1000;
let berth: BerthProcess;

before(async () => {
  berth = await runBerth(['--isolation', 'process', '--network', 'host', '--warm-pool', '2', '--retain-events', String(RETAIN)]);
});
after(() => berth?.stop());

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', berth.url))).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes(labels)) sum += Number(line.split(' ').pop());
  return sum;
}

/** berth's log lines after `from` (an offset into it) that tell of messages no client stream carried, old wording or new. */
function dropLines(from: number): string[] {
  return berth
    .logs()
    .slice(from)
    .split('\n')
    .filter((l) => l.includes('no client stream carried'));
}

test(`${COUNT} notifications for a GET stream nobody opened: a few log lines that count them, and another session goes on`, async () => {
  const victim = await connect(berth.url);
  const attacker = await rawInit(berth.url); // raw: no GET stream (the SDK client would open one)
  const logFrom = berth.logs().length;

  let flooding = true;
  const flood = fetch(berth.url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': attacker, 'mcp-protocol-version': V },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'notify_many', arguments: { count: COUNT } } }),
  })
    .then(async (r) => ({ status: r.status, body: await r.text() }))
    .finally(() => (flooding = false));
  // The other session calls throughout (and at least a few times, however fast the flood is over).
  const answers: string[] = [];
  for (let i = 0; i < 2000 && (flooding || i < 5); i++) {
    answers.push(textOf(await victim.client.callTool({ name: 'echo', arguments: { text: `call ${i}` } })));
  }
  const done = await flood;
  assert.equal(done.status, 200);
  assert.match(done.body, new RegExp(`sent ${COUNT}`));
  assert.deepEqual(
    answers,
    answers.map((_, i) => `call ${i}`),
    'the other session was answered throughout',
  );

  // Ending the session says what is still counted; its log line reaches us through a pipe.
  const del = await fetch(berth.url, { method: 'DELETE', headers: { 'mcp-session-id': attacker, 'mcp-protocol-version': V } });
  assert.equal(del.status, 204);
  // Before the fix: one warning per dropped notification, 49,000 lines and ~14 MB of log.
  assert.ok(dropLines(logFrom).length <= 5, `${dropLines(logFrom).length} log lines about dropped messages`);
  const dropped = await metric('berth_stream_dropped_total', 'reason="retention"');
  assert.ok(dropped >= COUNT - RETAIN && dropped <= COUNT, `berth_stream_dropped_total{reason="retention"} is ${dropped}`);

  const counted = (lines: string[]) => lines.reduce((n, l) => n + Number((JSON.parse(l) as { count?: number }).count ?? Number.NaN), 0);
  for (let t = 0; counted(dropLines(logFrom)) !== dropped; t++) {
    assert.ok(dropLines(logFrom).length <= 5, `${dropLines(logFrom).length} log lines about dropped messages`);
    assert.ok(
      t < 200,
      `the log counts ${counted(dropLines(logFrom))} dropped messages, the metric ${dropped}:\n${dropLines(logFrom).join('\n')}`,
    );
    await new Promise((r) => setTimeout(r, 50));
  }
  const lines = dropLines(logFrom);
  assert.ok(lines.length >= 1 && lines.length <= 5, `${lines.length} log lines about dropped messages`);
  for (const l of lines) {
    const j = JSON.parse(l) as { msg: string; first: string; last: string };
    assert.match(j.msg, /^\d+ server messages? dropped: no client stream carried them .*\(since \S+; first \S+, last \S+\)$/);
    assert.equal(j.last, 'notifications/tools/list_changed');
  }
  const logBytes = berth.logs().length - logFrom;
  assert.ok(logBytes < 256 * 1024, `berth logged ${logBytes} bytes during the flood`);

  // The other session still answers afterwards.
  assert.equal(textOf(await victim.client.callTool({ name: 'echo', arguments: { text: 'after' } })), 'after');
  await victim.client.close();
});
