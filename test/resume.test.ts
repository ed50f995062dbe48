// Issue 4: no message lost. Resumable streams (GET + Last-Event-ID), streams that outlive their connections,
// keep-alives, slow readers, and timeouts — with raw HTTP for the wire details and the official SDK client
// across a real network cut (a TCP proxy that resets connections).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import {
  ACCEPT_BOTH,
  connect,
  PROBE,
  rawInit,
  readUntil,
  runBerth,
  sseEvents,
  sseMessages,
  startBerth,
  textOf,
  type BerthProcess,
  type SseEvent,
} from './helpers/berth.ts';
import { startProxy } from './helpers/proxy.ts';
import { tempDir } from './helpers/temp.ts';

const V = '2025-11-25';

function call(
  url: string,
  sid: string,
  id: number,
  name: string,
  args: Record<string, unknown>,
  meta?: Record<string, unknown>,
  signal?: AbortSignal,
) {
  return fetch(url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) } }),
    signal,
  });
}

function resume(url: string, sid: string, lastEventId: string, signal?: AbortSignal) {
  return fetch(url, {
    headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': V, 'last-event-id': lastEventId },
    signal,
  });
}

/** Reads events (parsed as they complete, not the whole text again per chunk) until `n` carry data, or the stream ends or is cut. */
async function readEvents(r: Response, n: number): Promise<SseEvent[]> {
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  const events: SseEvent[] = [];
  let pending = '';
  let withData = 0;
  try {
    while (withData < n) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += dec.decode(value, { stream: true });
      const end = pending.lastIndexOf('\n\n');
      if (end < 0) continue;
      const complete = sseEvents(pending.slice(0, end + 2));
      pending = pending.slice(end + 2);
      events.push(...complete);
      withData += complete.filter((e) => e.data).length;
    }
  } catch {
    // cut by berth (the client fell maxBuffer behind): the caller resumes from the last event
  }
  return events;
}

const progressOf = (events: SseEvent[]) =>
  events
    .filter((e) => e.data)
    .map((e) => JSON.parse(e.data) as { method?: string; params?: { progress: number } })
    .filter((m) => m.method === 'notifications/progress')
    .map((m) => m.params!.progress);

async function serveConfig(streams: Record<string, unknown>, limits: Record<string, unknown> = {}): Promise<BerthProcess> {
  const dir = tempDir('berth-resume-');
  const file = join(dir, 'berth.yaml');
  writeFileSync(
    file,
    JSON.stringify({ server: { port: 0 }, runtimes: { probe: { command: PROBE, isolation: 'process', warmPool: 1, streams, limits } } }),
  );
  return startBerth(['serve', '--config', file]);
}

describe('resumable streams (raw HTTP)', () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2']);
  });
  after(() => berth.stop());

  test('a long call becomes a stream that starts with a priming event (id, retry, empty data)', async () => {
    const sid = await rawInit(berth.url);
    const r = await call(berth.url, sid, 2, 'sleep', { ms: 600 });
    assert.equal(r.headers.get('content-type'), 'text/event-stream');
    const events = sseEvents(await r.text());
    assert.equal(events[0]!.data, '');
    assert.match(events[0]!.id!, /^[A-Za-z0-9_-]{16}\.0$/);
    assert.equal(events[0]!.retry, 1000);
    const last = events.at(-1)!;
    assert.equal(textOf((JSON.parse(last.data) as { result: unknown }).result), 'slept 600');
    assert.equal(last.id, events[0]!.id!.replace(/\.0$/, '.1'));
  });

  test('a quick call still answers plain JSON', async () => {
    const sid = await rawInit(berth.url);
    const r = await call(berth.url, sid, 2, 'echo', { text: 'hi' });
    assert.equal(r.headers.get('content-type'), 'application/json');
  });

  test('a dropped POST stream resumes with GET + Last-Event-ID: what was missed, then live, then the result; the call was not cancelled', async () => {
    const sid = await rawInit(berth.url);
    const ac = new AbortController();
    const r = await call(berth.url, sid, 7, 'progress', { steps: 40, delayMs: 25 }, { progressToken: 'tok' }, ac.signal);
    const first = sseEvents(await readUntil(r, (ev) => progressOf(ev).length >= 3));
    ac.abort(); // the connection drops mid-call
    const seen = progressOf(first);
    const lastId = first.filter((e) => e.id).at(-1)!.id!;
    await sleep(400); // the server goes on meanwhile: those events are kept
    const again = await resume(berth.url, sid, lastId);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('content-type'), 'text/event-stream');
    const rest = sseEvents(await again.text()); // ends with the result
    const all = [...seen, ...progressOf(rest)];
    assert.deepEqual(
      all,
      Array.from({ length: 40 }, (_, i) => i + 1),
      'every progress step once, in order',
    );
    const result = JSON.parse(rest.at(-1)!.data) as { id: number; result: unknown };
    assert.equal(result.id, 7);
    assert.equal(textOf(result.result), 'done 40');
    // Event ids are unique and increasing across the two connections.
    const seqs = [...first, ...rest].filter((e) => e.id).map((e) => Number(e.id!.split('.')[1]));
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
    assert.equal(new Set(seqs).size, seqs.length);
  });

  test('a finished stream can be resumed after the fact: the result it missed is replayed', async () => {
    const sid = await rawInit(berth.url);
    const ac = new AbortController();
    const r = await call(berth.url, sid, 3, 'sleep', { ms: 500 }, undefined, ac.signal);
    const primed = sseEvents(await readUntil(r, (ev) => ev.length >= 1));
    ac.abort();
    await sleep(700); // the call finishes while no connection is open
    const again = await resume(berth.url, sid, primed[0]!.id!);
    const msgs = sseMessages(await again.text()) as Array<{ id: number; result: unknown }>;
    assert.equal(msgs.length, 1);
    assert.equal(textOf(msgs[0]!.result), 'slept 500');
  });

  test('an elicitation sent while the stream was down is redelivered on resume and answered as usual', async () => {
    const sid = await rawInit(berth.url);
    const ac = new AbortController();
    const r = await call(berth.url, sid, 4, 'ask_later', { question: 'colour?', delayMs: 400 }, undefined, ac.signal);
    const primed = sseEvents(await readUntil(r, (ev) => ev.length >= 1));
    ac.abort();
    await sleep(700); // the server asks while nothing is connected
    const again = await resume(berth.url, sid, primed[0]!.id!);
    const text = await readUntil(again, (ev) => sseMessages(ev.map((e) => `data: ${e.data}`).join('\n')).length >= 1);
    const ask = sseMessages(text)[0] as { id: number; method: string; params: { message: string } };
    assert.equal(ask.method, 'elicitation/create');
    assert.equal(ask.params.message, 'colour?');
    const answer = await fetch(berth.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V },
      body: JSON.stringify({ jsonrpc: '2.0', id: ask.id, result: { action: 'accept', content: { answer: 'teal' } } }),
    });
    assert.equal(answer.status, 202);
    const more = await readUntil(again, (ev) => ev.some((e) => e.data.includes('"id":4')));
    const rest = sseMessages(text + more) as Array<{ id?: number; result?: unknown }>;
    const result = rest.find((m) => m.id === 4)!;
    assert.match(textOf(result.result), /teal/);
  });

  test('the GET stream keeps what was sent while it was closed and replays it after its Last-Event-ID', async () => {
    const sid = await rawInit(berth.url);
    const ac = new AbortController();
    const get = await fetch(berth.url, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': V },
      signal: ac.signal,
    });
    const primed = sseEvents(await readUntil(get, (ev) => ev.length >= 1));
    assert.equal(primed[0]!.data, '', 'the GET stream starts with a priming event too');
    ac.abort();
    await sleep(100);
    const r = await call(berth.url, sid, 5, 'notify_many', { count: 4 });
    await r.text();
    const again = await resume(berth.url, sid, primed[0]!.id!);
    const ac2 = new AbortController();
    const text = await readUntil(again, (ev) => ev.filter((e) => e.data).length >= 4);
    ac2.abort();
    const methods = sseMessages(text).map((m) => (m as { method: string }).method);
    assert.deepEqual(methods, Array(4).fill('notifications/tools/list_changed'));
  });

  test('ids resume only within their own session; malformed and unknown ids get a clear 400', async () => {
    const a = await rawInit(berth.url);
    const b = await rawInit(berth.url);
    const r = await call(berth.url, a, 2, 'sleep', { ms: 300 });
    const id = sseEvents(await r.text())[0]!.id!;
    for (const [sid, lastId] of [
      [b, id],
      [a, 'not-an-id'],
      [a, 'AAAAAAAAAAAAAAAA.1'],
      [a, id.replace(/\.0$/, '.99')],
    ] as const) {
      const x = await resume(berth.url, sid, lastId);
      assert.equal(x.status, 400, lastId);
      const body = (await x.json()) as { error: { code: number; message: string } };
      assert.equal(body.error.code, -32000);
      assert.match(body.error.message, /Last-Event-ID/);
    }
  });
});

describe('retention, keep-alives, slow readers, timeouts', () => {
  test('a resume from before what is retained gets 410 naming the limit, not a silent gap', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--retain-events', '5']);
    try {
      const sid = await rawInit(berth.url);
      const ac = new AbortController();
      const r = await call(berth.url, sid, 2, 'progress', { steps: 20, delayMs: 10 }, { progressToken: 1 }, ac.signal);
      const first = sseEvents(await readUntil(r, (ev) => ev.length >= 2));
      ac.abort();
      await sleep(500);
      const x = await resume(berth.url, sid, first[0]!.id!);
      assert.equal(x.status, 410);
      const body = (await x.json()) as { error: { message: string } };
      assert.match(body.error.message, /no longer retained.*retainEvents/);
      // The newest events are still there.
      const latest = await resume(berth.url, sid, first[0]!.id!.replace(/\.0$/, '.18'));
      assert.equal(latest.status, 200);
      await latest.body?.cancel();
    } finally {
      await berth.stop();
    }
  });

  test('a silent stream gets keep-alive comments', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--keep-alive', '150ms']);
    try {
      const sid = await rawInit(berth.url);
      const ac = new AbortController();
      const get = await fetch(berth.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid }, signal: ac.signal });
      const reader = get.body!.getReader();
      let text = '';
      const deadline = Date.now() + 5000;
      while (!text.includes(': keep-alive') && Date.now() < deadline) text += new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      assert.match(text, /^: keep-alive$/m);
    } finally {
      await berth.stop();
    }
  });

  test('a client that stops reading is cut at maxBuffer, and resumes without losing an event', async () => {
    const berth = await serveConfig({ maxBuffer: '64KiB', retainEvents: 200000, retainBytes: '256MiB' });
    const url = berth.url.replace(/\/mcp$/, '/runtimes/probe/mcp');
    try {
      const sid = await rawInit(url);
      const count = 100_000; // ~9 MB of events: more than the socket buffers hold
      // A raw GET whose response we do not read until berth has given up on it.
      const u = new URL(url);
      const chunks: Buffer[] = [];
      const cut = new Promise<boolean>((resolve) => {
        const req = request(
          {
            host: u.hostname,
            port: u.port,
            path: u.pathname,
            headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': V },
          },
          (res) => {
            res.pause();
            setTimeout(() => {
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () => resolve(false));
              res.on('error', () => resolve(true));
              res.on('aborted', () => resolve(true));
              res.resume();
            }, 3000);
          },
        );
        req.on('error', () => resolve(true));
        req.end();
      });
      await sleep(200);
      const r = await call(url, sid, 9, 'notify_many', { count });
      const reply = sseMessages(await r.text()).find((m) => (m as { id?: number }).id === 9) as { result: unknown };
      assert.equal(textOf(reply.result), `sent ${count}`);
      assert.ok(await cut, 'berth closed the connection of the client that did not read');
      const got = sseEvents(Buffer.concat(chunks).toString('utf8'));
      // Resumed reads may be cut too: on a loaded machine this client can fall maxBuffer behind again. Each cut is
      // resumed from the last event read, as a client would, a bounded number of times.
      const all = got.filter((e) => e.data);
      let lastId = got.filter((e) => e.id).at(-1)!.id!;
      for (let resumes = 0; all.length < count && resumes < 50; resumes++) {
        const ac = new AbortController();
        const events = await readEvents(await resume(url, sid, lastId, ac.signal), count - all.length);
        ac.abort();
        all.push(...events.filter((e) => e.data));
        lastId = events.filter((e) => e.id).at(-1)?.id ?? lastId;
      }
      assert.equal(all.length, count, 'every event once');
      const seqs = all.map((e) => Number(e.id!.split('.')[1]));
      assert.ok(
        seqs.every((q, i) => q === seqs[0]! + i),
        'contiguous event ids: nothing lost, nothing repeated',
      );
    } finally {
      await berth.stop();
    }
  });

  test('a call the server never answers fails after requestTimeout with an error naming it; progress keeps a call alive; the session goes on', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--request-timeout', '400ms']);
    try {
      const { client, transport } = await connect(berth.url);
      const t0 = Date.now();
      await assert.rejects(client.callTool({ name: 'sleep', arguments: { ms: 30_000 } }), /Request timed out.*requestTimeout/);
      assert.ok(Date.now() - t0 < 10_000);
      const slow = await client.callTool({ name: 'progress', arguments: { steps: 8, delayMs: 150 } }, undefined, {
        onprogress: () => undefined,
      });
      assert.equal(textOf(slow), 'done 8');
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
      await transport.terminateSession();
    } finally {
      await berth.stop();
    }
  });

  test('an elicitation nobody answers fails for the server after serverRequestTimeout and is cancelled for the client', async () => {
    const berth = await serveConfig({}, { serverRequestTimeout: '400ms' });
    const url = berth.url.replace(/\/mcp$/, '/runtimes/probe/mcp');
    try {
      const sid = await rawInit(url);
      const r = await call(url, sid, 2, 'ask', { question: 'anyone?' });
      const msgs = sseMessages(await r.text()) as Array<{
        id?: number;
        method?: string;
        params?: { requestId?: number };
        result?: { isError?: boolean };
      }>;
      const ask = msgs.find((m) => m.method === 'elicitation/create')!;
      const cancel = msgs.find((m) => m.method === 'notifications/cancelled')!;
      assert.equal(cancel.params!.requestId, ask.id);
      const result = msgs.find((m) => m.id === 2)!;
      assert.equal(result.result!.isError, true);
      assert.match(textOf(result.result), /did not answer.*serverRequestTimeout/);
    } finally {
      await berth.stop();
    }
  });
});

describe('the official SDK client across a real network cut', () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2']);
  });
  after(() => berth.stop());

  test('progress and the result of a call arrive once each, in order, after the connection is reset', async () => {
    const proxy = await startProxy(berth.url);
    try {
      const { client, transport } = await connect(proxy.url);
      const seen: number[] = [];
      const done = client.callTool({ name: 'progress', arguments: { steps: 30, delayMs: 60 } }, undefined, {
        onprogress: (p) => {
          seen.push(p.progress);
          if (p.progress === 5) proxy.sever();
        },
        timeout: 60_000,
      });
      assert.equal(textOf(await done), 'done 30');
      assert.deepEqual(
        seen,
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      await transport.terminateSession().catch(() => undefined);
      await client.close();
    } finally {
      await proxy.close();
    }
  });

  test('an elicitation asked while the client cannot reconnect reaches it once it does, and the call completes', async () => {
    const proxy = await startProxy(berth.url);
    try {
      proxy.watch('text/event-stream');
      const { client, transport } = await connect(proxy.url, { elicitation: {} });
      let asked = 0;
      client.setRequestHandler(ElicitRequestSchema, async (req) => {
        asked++;
        assert.equal(req.params.message, 'still there?');
        return { action: 'accept', content: { answer: 'yes' } };
      });
      const done = client.callTool({ name: 'ask_later', arguments: { question: 'still there?', delayMs: 900 } }, undefined, {
        timeout: 60_000,
      });
      // Cut only once the call is a stream, whatever the machine's load: two SSE responses, the client's GET stream
      // and this call's.
      await proxy.seen('text/event-stream', 2);
      proxy.sever();
      proxy.refuseFor(1500); // the first reconnection fails; the question is asked meanwhile
      const result = await done;
      assert.match(textOf(result), /"answer":"yes"/);
      assert.equal(asked, 1);
      await transport.terminateSession().catch(() => undefined);
      await client.close();
    } finally {
      await proxy.close();
    }
  });
});
