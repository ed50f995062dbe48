// server.retainBudget: what every session keeps for replay, together. Each session is bounded by its own
// streams.retainBytes (16 MiB by default), but many sessions at their bound would fill berth's memory; past the
// budget, the session keeping the most lets go of its oldest events first (src/relay/stream-log.ts), and a session
// keeping little keeps all of it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ACCEPT_BOTH, PROBE, rawInit, readUntil, sseEvents, sseMessages, serveConfig, type BerthProcess } from './helpers/berth.ts';

const V = '2025-11-25';
const BUDGET = 24 * 1024;
let berth: BerthProcess;

before(async () => {
  berth = await serveConfig({
    server: { port: 0, retainBudget: '24KiB' },
    runtimes: { default: { command: PROBE, isolation: 'process', network: 'host', warmPool: 2 } },
  });
});
after(() => berth?.stop());

async function notify(sid: string, count: number): Promise<void> {
  const r = await fetch(berth.url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'notify_many', arguments: { count } } }),
  });
  assert.equal(r.status, 200);
  assert.match(await r.text(), new RegExp(`sent ${count}`));
}

/** The session's GET stream (no Last-Event-ID: everything no connection carried yet), read up to the event of seq `last`. */
async function unread(sid: string, last: number): Promise<{ seqs: number[]; methods: string[] }> {
  const ac = new AbortController();
  const get = await fetch(berth.url, {
    headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': V },
    signal: ac.signal,
  });
  assert.equal(get.status, 200);
  const text = await readUntil(get, (ev) => ev.some((e) => e.data && e.id?.endsWith(`.${last}`)));
  ac.abort();
  const data = sseEvents(text).filter((e) => e.data);
  return {
    seqs: data.map((e) => Number(e.id!.split('.')[1])),
    methods: sseMessages(text).map((m) => (m as { method: string }).method),
  };
}

async function retainedBytes(): Promise<number> {
  const text = await (await fetch(`${new URL(berth.url).origin}/metrics`)).text();
  const m = /^berth_stream_retained_bytes (\d+)/m.exec(text);
  assert.ok(m, 'berth_stream_retained_bytes is exported');
  return Number(m[1]);
}

test('past server.retainBudget the session keeping the most sheds its oldest events, even when another one went over; all of it goes with the sessions', async () => {
  const hoarder = await rawInit(berth.url);
  const small = await rawInit(berth.url);
  // A thousand notifications for the hoarder's GET stream, which it has not opened (about 90 bytes each: ~90 KB,
  // far under its own retainBytes of 16 MiB, over the budget of 24 KiB).
  await notify(hoarder, 1000);
  // Then five for the small session: its events are the newest, and they are not the ones let go.
  await notify(small, 5);
  const kept = await retainedBytes();
  assert.ok(kept > 0 && kept <= BUDGET, `all sessions keep ${kept} bytes, within the budget of ${BUDGET}`);

  const mine = await unread(small, 5);
  assert.deepEqual(mine.seqs, [1, 2, 3, 4, 5], 'the small session lost nothing');
  assert.deepEqual(mine.methods, Array(5).fill('notifications/tools/list_changed'));

  const theirs = await unread(hoarder, 1000);
  assert.ok(theirs.seqs.length > 0 && theirs.seqs.length < 1000, `the hoarder kept its newest ${theirs.seqs.length} of 1000`);
  assert.equal(theirs.seqs.at(-1), 1000, 'the newest are the ones kept');
  assert.ok(theirs.seqs[0]! > 1, 'its oldest went first');
  // berth said so: the notifications no client got are counted in a warning naming the settings.
  assert.match(berth.logs(), /\d+ server messages? dropped: no client stream carried them .*server\.retainBudget/);

  // Ended sessions give back everything they kept.
  for (const sid of [hoarder, small]) {
    const r = await fetch(berth.url, { method: 'DELETE', headers: { 'mcp-session-id': sid, 'mcp-protocol-version': V } });
    assert.equal(r.status, 204);
  }
  for (let t = 0; (await retainedBytes()) !== 0; t++) {
    assert.ok(t < 200, `berth still counts ${await retainedBytes()} bytes for ended sessions`);
    await new Promise((r) => setTimeout(r, 50));
  }
});
