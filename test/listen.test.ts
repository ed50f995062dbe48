// subscriptions/listen for 2026-07-28 clients of a pooled 2026-era server: berth opens the listen on every pool
// member and merges them, so a change made in any member reaches the client; one acknowledgement, the client's id.
// Also: the 2026 statuses of errors a server returns, and a stateless runtime's 2025 clients of a 2026-only server.
// Build first: npm run build && node --import tsx --test test/listen.test.ts
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { connect, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const SERVER_2026 = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/server-2026.ts', import.meta.url)),
];
const MODERN = '2026-07-28';
const ENVELOPE = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };
const SUB = 'io.modelcontextprotocol/subscriptionId';

function request(
  url: string,
  method: string,
  params: Record<string, unknown>,
  id: string | number,
  signal?: AbortSignal,
  extra: Record<string, string> = {},
) {
  const headers: Record<string, string> = {
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    'mcp-protocol-version': MODERN,
    'mcp-method': method,
    ...extra,
  };
  if (typeof params.name === 'string') headers['mcp-name'] = params.name;
  return fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: ENVELOPE } }),
    signal,
  });
}

/** The result of a call answered as JSON or as an SSE stream (its last message). */
async function resultOf(r: Response): Promise<any> {
  const text = await r.text();
  if (!(r.headers.get('content-type') ?? '').includes('event-stream')) return JSON.parse(text).result;
  const data = text
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => JSON.parse(l.slice(5)));
  return data.at(-1).result;
}

/** Reads SSE messages from a streaming response as they come. */
async function* messages(r: Response): AsyncGenerator<any> {
  const reader = r.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('\n');
      if (data) yield JSON.parse(data);
    }
  }
}

describe('subscriptions/listen over a pool', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2'], SERVER_2026);
  });
  after(() => berth?.stop());

  test('one acknowledgement tagged with the client id, then a change made in any pool member', async () => {
    // Both members up first (two overlapping calls served by two processes), so the listen opens on both at once.
    const addTool = async (id: string) =>
      textOf(await resultOf(await request(berth.url, 'tools/call', { name: 'add_tool', arguments: {} }, id)));
    for (let i = 0; ; i++) {
      const [a, b] = await Promise.all([addTool(`warm-${i}a`), addTool(`warm-${i}b`)]);
      if (a !== b) break;
      assert.ok(i < 40, 'the pool never had two members');
      await new Promise((r) => setTimeout(r, 250));
    }
    const ac = new AbortController();
    const listen = await request(berth.url, 'subscriptions/listen', { notifications: { toolsListChanged: true } }, 'listen-1', ac.signal);
    assert.equal(listen.status, 200);
    assert.match(listen.headers.get('content-type') ?? '', /text\/event-stream/);
    const it = messages(listen);
    const ack = (await it.next()).value;
    assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
    assert.equal(ack.params._meta[SUB], 'listen-1');
    // Six overlapping calls spread over both members (least busy first); every one changes its member's tools.
    const calls = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => addTool(`add-${i}`)));
    assert.ok(new Set(calls).size >= 2, `the changes were made in two members: ${calls}`);
    const seen: any[] = [];
    while (seen.length < 6) {
      const m = (await it.next()).value;
      assert.ok(m, 'the stream stayed open');
      seen.push(m);
    }
    for (const m of seen) {
      assert.equal(m.method, 'notifications/tools/list_changed');
      assert.equal(m.params._meta[SUB], 'listen-1', 'every notification names the client listen');
    }
    ac.abort();
  });

  test('a listen asking for nothing the server has gets no tool changes; closing it is fine', async () => {
    const ac = new AbortController();
    const listen = await request(berth.url, 'subscriptions/listen', { notifications: { promptsListChanged: true } }, 7, ac.signal);
    const it = messages(listen);
    const ack = (await it.next()).value;
    assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
    assert.equal(ack.params._meta[SUB], 7);
    await (await request(berth.url, 'tools/call', { name: 'add_tool', arguments: {} }, 'x')).text();
    const next = await Promise.race([it.next(), new Promise((r) => setTimeout(() => r('quiet'), 500))]);
    assert.equal(next, 'quiet');
    ac.abort();
    // The runtime keeps serving after the listen is gone.
    const r = await request(berth.url, 'tools/call', { name: 'echo', arguments: { text: 'still here' } }, 'e');
    assert.equal(textOf(await resultOf(r)), 'still here');
  });

  test('server errors keep their 2026 status: unknown method 404, discover names every version berth serves', async () => {
    const r = await request(berth.url, 'tools/call', { name: 'nope', arguments: {} }, 'n');
    assert.equal(r.status, 200, 'an unknown tool is -32602 at 200');
    const d = await (await request(berth.url, 'server/discover', {}, 'd')).json();
    assert.ok(d.result.supportedVersions.includes(MODERN));
    assert.ok(d.result.supportedVersions.includes('2025-11-25'), 'berth bridges 2025 clients to this server');
  });
});

describe('a stateless runtime hosting a 2026-only server, for 2025 clients', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--stateless'], SERVER_2026);
  });
  after(() => berth?.stop());

  test('initialize comes from server/discover and calls are bridged; a server asking for input gets a clear error', async () => {
    const { client } = await connect(berth.url, { elicitation: { form: {} } });
    assert.equal(client.getServerVersion()?.name, 'fixture-2026');
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
    // berth declares no client capabilities for these calls, so the server refuses to ask (-32021).
    await assert.rejects(client.callTool({ name: 'greet', arguments: { greeting: 'Hello' } }), /-32021|stateless runtime cannot carry/);
    await client.close();
    // The refused initialize was learned once, not retried in a loop.
    await new Promise((r) => setTimeout(r, 2500));
    const failures = berth
      .logs()
      .split('\n')
      .filter((l) => l.includes('failed to start'));
    assert.equal(failures.length, 0, failures.join('\n'));
  });
});

describe('subscriptions/listen on a 2025-era server (bridge A)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2']); // the probe server, 2025-era
  });
  after(() => berth?.stop());

  test('berth acknowledges what the server can announce and forwards its list_changed from any pooled server', async () => {
    const ac = new AbortController();
    const listen = await request(
      berth.url,
      'subscriptions/listen',
      { notifications: { toolsListChanged: true, promptsListChanged: true, resourceSubscriptions: ['x://y'] } },
      'l-2025',
      ac.signal,
    );
    assert.equal(listen.status, 200);
    const it = messages(listen);
    const ack = (await it.next()).value;
    assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
    assert.equal(ack.params._meta[SUB], 'l-2025');
    // The probe declares tools (listChanged) only: no prompts, no resource subscriptions.
    assert.deepEqual(ack.params.notifications, { toolsListChanged: true });
    const calls = await Promise.all(
      [0, 1, 2].map(async (i) =>
        resultOf(await request(berth.url, 'tools/call', { name: 'notify_list_changed', arguments: {} }, `n-${i}`)),
      ),
    );
    calls.forEach((r) => assert.equal(textOf(r), 'sent'));
    for (let i = 0; i < 3; i++) {
      const m = (await it.next()).value;
      assert.equal(m.method, 'notifications/tools/list_changed');
      assert.equal(m.params._meta[SUB], 'l-2025');
    }
    ac.abort();
  });

  test("a listen inside a runtime session hears that sandbox's changes only", async () => {
    const rs = { 'berth-runtime-session': 'listen-session-0123456789abcdef' };
    const ac = new AbortController();
    const listen = await request(berth.url, 'subscriptions/listen', { notifications: { toolsListChanged: true } }, 'l-rs', ac.signal, rs);
    assert.equal(listen.status, 200);
    assert.equal(listen.headers.get('berth-runtime-session'), rs['berth-runtime-session']);
    const it = messages(listen);
    const first = await it.next();
    assert.equal(
      first.value?.method,
      'notifications/subscriptions/acknowledged',
      `content-type ${listen.headers.get('content-type')}, done ${first.done}`,
    );
    // A change in a pooled server is not this session's.
    await resultOf(await request(berth.url, 'tools/call', { name: 'notify_list_changed', arguments: {} }, 'pooled'));
    const next = it.next(); // kept: the message it waits for is the one asserted below
    const quiet = await Promise.race([next, new Promise((r) => setTimeout(() => r('quiet'), 400))]);
    assert.equal(quiet, 'quiet');
    await resultOf(await request(berth.url, 'tools/call', { name: 'notify_list_changed', arguments: {} }, 'mine', undefined, rs));
    const m = (await next).value;
    assert.equal(m.method, 'notifications/tools/list_changed');
    assert.equal(m.params._meta[SUB], 'l-rs');
    ac.abort();
  });
});
