// Both eras on one endpoint: raw 2026-07-28 requests against a real berth, refused exactly as the revision's
// Streamable HTTP rules say (status, JSON-RPC code, data, the request id echoed), while 2025 clients keep working.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/era2026.test.ts
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ACCEPT_BOTH, rawInit, runBerth, sseEvents, sseMessages, textOf, type BerthProcess } from './helpers/berth.ts';

/** The 2026-only fixture, by absolute path: servers run in their private directories. */
const SERVER_2026 = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/server-2026.ts', import.meta.url)),
];

const MODERN = '2026-07-28';
const ENVELOPE = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

async function post(url: string, message: unknown, headers: Record<string, string>): Promise<Reply> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(message),
  });
  const text = await r.text();
  // A call that outlasts the JSON window (a loaded machine) is answered as a stream: its answer is the last event.
  const streamed = (r.headers.get('content-type') ?? '').startsWith('text/event-stream');
  return { status: r.status, headers: r.headers, body: !text ? undefined : streamed ? sseMessages(text).at(-1) : JSON.parse(text) };
}

/** A well-formed modern request and its headers; `drop`/`set` bend one rule at a time. */
function modern(method: string, params: Record<string, unknown> = {}, id: string | number = 'req-7') {
  const message = { jsonrpc: '2.0', id, method, params: { ...params, _meta: ENVELOPE } };
  const headers: Record<string, string> = { 'mcp-protocol-version': MODERN, 'mcp-method': method };
  if (typeof params.name === 'string') headers['mcp-name'] = params.name;
  if (typeof params.uri === 'string') headers['mcp-name'] = params.uri;
  return { message, headers };
}

function without(h: Record<string, string>, name: string): Record<string, string> {
  const { [name]: _, ...rest } = h;
  return rest;
}

function assertError(r: Reply, status: number, code: number, id: unknown): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(r.body.error?.code, code, JSON.stringify(r.body));
  assert.deepEqual(r.body.id, id, 'the error echoes the request id');
}

describe('2026-07-28 wire rules', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  let url: string;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], SERVER_2026);
    url = berth.url;
  });
  after(() => berth?.stop());

  test('a large answer passes intact, under the id the client gave (berth passes its bytes through)', async () => {
    const big = 'é'.repeat(300_000) + 'end';
    for (const id of ['big-1', 77]) {
      const { message, headers } = modern('tools/call', { name: 'echo', arguments: { text: big } }, id);
      const r = await post(url, message, headers);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.id, id);
      assert.equal(r.body.result.content[0].text, big);
    }
  });

  test('MCP-Protocol-Version missing on a request with the envelope -> 400 -32020', async () => {
    const { message, headers } = modern('tools/list');
    assertError(await post(url, message, without(headers, 'mcp-protocol-version')), 400, -32020, 'req-7');
  });

  test('a modern header without _meta, or _meta without its fields -> 400 -32602', async () => {
    const { headers } = modern('tools/list');
    assertError(await post(url, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, headers), 400, -32602, 3);
    const noCaps = {
      jsonrpc: '2.0',
      id: 4,
      method: 'tools/list',
      params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } },
    };
    assertError(await post(url, noCaps, headers), 400, -32602, 4);
  });

  test('header and _meta version disagree -> 400 -32020', async () => {
    const { message, headers } = modern('tools/list', {}, 5);
    assertError(await post(url, message, { ...headers, 'mcp-protocol-version': '2025-11-25' }), 400, -32020, 5);
  });

  test('an unknown modern version -> 400 -32022 naming supported and requested', async () => {
    const message = {
      jsonrpc: '2.0',
      id: 'v',
      method: 'tools/list',
      params: { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } },
    };
    const r = await post(url, message, { 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' });
    assertError(r, 400, -32022, 'v');
    assert.equal(r.body.error.data.requested, '2099-01-01');
    assert.ok(
      r.body.error.data.supported.includes(MODERN) && r.body.error.data.supported.includes('2025-11-25'),
      JSON.stringify(r.body.error.data),
    );
  });

  test('Mcp-Method missing, or different in case -> 400 -32020', async () => {
    const { message, headers } = modern('tools/list');
    assertError(await post(url, message, without(headers, 'mcp-method')), 400, -32020, 'req-7');
    assertError(await post(url, message, { ...headers, 'mcp-method': 'TOOLS/LIST' }), 400, -32020, 'req-7');
  });

  test('Mcp-Name missing, mismatched or malformed -> 400 -32020', async () => {
    const { message, headers } = modern('tools/call', { name: 'echo', arguments: { text: 'x' } }, 8);
    assertError(await post(url, message, without(headers, 'mcp-name')), 400, -32020, 8);
    assertError(await post(url, message, { ...headers, 'mcp-name': 'Echo' }), 400, -32020, 8);
    assertError(await post(url, message, { ...headers, 'mcp-name': '=?base64?not base64?=' }), 400, -32020, 8);
    const read = modern('resources/read', { uri: 'file:///a' }, 9);
    assertError(await post(url, read.message, { ...read.headers, 'mcp-name': 'file:///b' }), 400, -32020, 9);
  });

  test('a base64-encoded Mcp-Name is decoded before comparing', async () => {
    const name = 'écho';
    const { message, headers } = modern('tools/call', { name, arguments: {} }, 10);
    const r = await post(url, message, { ...headers, 'mcp-name': `=?base64?${Buffer.from(name).toString('base64')}?=` });
    // Past the wire checks, the server itself answers: it has no tool of that name.
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.id, 10);
    assert.ok(r.body.error || r.body.result?.isError, JSON.stringify(r.body));
  });

  for (const method of ['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']) {
    test(`removed method ${method} with the envelope -> 404 -32601`, async () => {
      const { message, headers } = modern(method, method.startsWith('resources/') ? { uri: 'file:///a' } : {}, `rm-${method}`);
      assertError(await post(url, message, headers), 404, -32601, `rm-${method}`);
    });
  }

  test('a batch under the modern header -> 400 -32600', async () => {
    const { message, headers } = modern('tools/list');
    // No one request to name: 2026-07-28's error response leaves the id out (test/protocol-edges.test.ts).
    assertError(await post(url, [message], headers), 400, -32600, undefined);
  });

  test('a notification under the modern header -> 202, no body', async () => {
    const r = await post(
      url,
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
      { 'mcp-protocol-version': MODERN },
    );
    assert.equal(r.status, 202);
    assert.equal(r.body, undefined);
  });

  for (const method of ['GET', 'DELETE']) {
    test(`${method} with a modern version header -> 405 Allow: POST`, async () => {
      const r = await fetch(url, { method, headers: { accept: 'text/event-stream', 'mcp-protocol-version': MODERN } });
      assert.equal(r.status, 405);
      assert.equal(r.headers.get('allow'), 'POST');
      assert.equal((await r.json()).error.code, -32000);
    });
  }
});

describe('a 2025-era server', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1']);
  });
  after(() => berth?.stop());

  test('modern requests are bridged: discover from its initialize, results shaped for 2026', async () => {
    const d = modern('server/discover', {}, 'legacy-d');
    const r = await post(berth.url, d.message, d.headers);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.id, 'legacy-d');
    assert.ok(
      r.body.result.supportedVersions.includes(MODERN) && r.body.result.supportedVersions.includes('2025-11-25'),
      JSON.stringify(r.body.result),
    );
    assert.equal(r.body.result._meta['io.modelcontextprotocol/serverInfo'].name, 'probe');
    assert.deepEqual([r.body.result.ttlMs, r.body.result.cacheScope], [0, 'private']);
    const list = modern('tools/list', {}, 'legacy-1');
    const l = await post(berth.url, list.message, list.headers);
    assert.equal(l.body.id, 'legacy-1');
    assert.equal(l.body.result.resultType, 'complete');
    assert.ok(l.body.result.tools.some((t: { name: string }) => t.name === 'ask'));
    const echo = modern('tools/call', { name: 'echo', arguments: { text: 'hi' } }, 'legacy-2');
    assert.equal(textOf((await post(berth.url, echo.message, echo.headers)).body.result), 'hi');
  });

  test('2025 clients on the same endpoint are unaffected: initialize, then a session request', async () => {
    const sid = await rawInit(berth.url);
    const r = await post(
      berth.url,
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    );
    assert.equal(r.status, 200);
    assert.ok(r.body.result.tools.length > 0);
  });
});

/** The SDK v2 client pinned to 2026-07-28, answering elicitations with its ordinary handler. */
async function pinnedClient(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client(
    { name: 'era-test', version: '1' },
    { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} } } },
  );
  client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: 'ada' } }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

describe('modern clients served by a 2026-era server', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2'], SERVER_2026);
  });
  after(() => berth?.stop());

  test('a pinned SDK v2 client discovers the server and calls a tool', async () => {
    const client = await pinnedClient(berth.url);
    try {
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'greet'));
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
    } finally {
      await client.close();
    }
  });

  test('input_required passes through: the client answers, the retry completes on any pool member', async () => {
    const client = await pinnedClient(berth.url);
    try {
      for (let i = 0; i < 3; i++) {
        const text = textOf(await client.callTool({ name: 'greet', arguments: { greeting: 'Hello' } }));
        assert.match(text, /^Hello, ada! \(asked by [0-9a-f-]{36}, answered by [0-9a-f-]{36}\)$/);
      }
    } finally {
      await client.close();
    }
  });

  test('server/discover and results carry the client id; JSON answers mint no session', async () => {
    const { message, headers } = modern('server/discover', {}, 'd-1');
    const r = await post(berth.url, message, headers);
    assert.equal(r.status, 200);
    assert.equal(r.body.id, 'd-1');
    // The server speaks only 2026-07-28; berth also bridges 2025 clients to it, and says so.
    assert.equal(r.body.result.supportedVersions[0], MODERN);
    assert.ok(r.body.result.supportedVersions.includes('2025-11-25'));
    assert.equal(r.headers.get('mcp-session-id'), null);
  });

  test('a call with progress streams as SSE without event ids, priming or retry; the last event is the result', async () => {
    const { message, headers } = modern('tools/call', { name: 'progress', arguments: { steps: 3 } }, 'p-1');
    (message.params._meta as Record<string, unknown>) = { ...ENVELOPE, progressToken: 'tok' };
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(message),
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    const body = await r.text();
    assert.doesNotMatch(body, /^(id|retry):/m, body);
    const events = sseEvents(body).map((e) => JSON.parse(e.data));
    assert.deepEqual(
      events.slice(0, -1).map((e) => [e.method, e.params.progressToken, e.params.progress]),
      [1, 2, 3].map((n) => ['notifications/progress', 'tok', n]),
    );
    assert.equal(events.at(-1).id, 'p-1');
    assert.equal(textOf(events.at(-1).result), 'done 3');
  });
});

describe('closing a modern response stream cancels the request', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    // One pooled server, so the call that reads the record reaches the one that was cancelled.
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], SERVER_2026);
  });
  after(() => berth?.stop());

  test('the server gets notifications/cancelled and stops the call', async () => {
    const call = modern('tools/call', { name: 'sleep', arguments: { ms: 20_000, tag: 'cut-1' } }, 1);
    const abort = new AbortController();
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', ...call.headers },
      body: JSON.stringify(call.message),
      signal: abort.signal,
    });
    // Past the JSON window the response became a stream: the call is running at the server.
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    abort.abort();
    let seen = '';
    for (let i = 0; i < 40 && seen !== 'cut-1'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const ask = modern('tools/call', { name: 'cancelled', arguments: {} }, `c-${i}`);
      seen = textOf((await post(berth.url, ask.message, ask.headers)).body.result);
    }
    assert.equal(seen, 'cut-1');
  });
});

describe('runtime sessions (Berth-Runtime-Session)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(
      ['--isolation', 'process', '--warm-pool', '1', '--auth', 'api-key', '--api-key-env', 'ERA_KEYS', '--admin-token-env', 'ERA_ADMIN'],
      SERVER_2026,
      {
        ERA_KEYS: 'key-one,key-two',
        ERA_ADMIN: 'admin-token-for-tests',
      },
    );
  });
  after(() => berth?.stop());

  const call = async (client: Client, name: string) => textOf(await client.callTool({ name, arguments: {} }));

  test('a pinned client keeps one sandbox across calls; another principal naming the id gets its own; DELETE ends it', async () => {
    const id = randomBytes(16).toString('base64url');
    const pinned = { 'berth-runtime-session': id };
    const alice = await pinnedClient(berth.url, { authorization: 'Bearer key-one', ...pinned });
    const bob = await pinnedClient(berth.url, { authorization: 'Bearer key-two', ...pinned });
    const pooled = await pinnedClient(berth.url, { authorization: 'Bearer key-one' });
    try {
      assert.deepEqual([await call(alice, 'count'), await call(alice, 'count'), await call(alice, 'count')], ['1', '2', '3']);
      const aliceSandbox = await call(alice, 'whoami');
      assert.equal(await call(alice, 'whoami'), aliceSandbox);
      assert.equal(await call(bob, 'count'), '1', 'the same id under another principal is another sandbox');
      assert.notEqual(await call(bob, 'whoami'), aliceSandbox);
      assert.notEqual(await call(pooled, 'whoami'), aliceSandbox, 'without the header, requests go to the shared pool');
      // input_required works inside a session too (the retry carries the header like any request).
      assert.match(
        textOf(await alice.callTool({ name: 'greet', arguments: { greeting: 'Hi' } })),
        new RegExp(`^Hi, ada! \\(asked by ${aliceSandbox}, answered by ${aliceSandbox}\\)$`),
      );

      const del = (key: string) => fetch(berth.url, { method: 'DELETE', headers: { authorization: `Bearer ${key}`, ...pinned } });
      assert.equal((await del('key-one')).status, 204);
      assert.equal((await del('key-one')).status, 404, 'ended: nothing left to delete');
      assert.equal(await call(bob, 'count'), '2', "ending alice's session left bob's alone");
      assert.equal(await call(alice, 'count'), '1', 'the id names a fresh sandbox after DELETE');
      const logs = berth.logs();
      assert.match(logs, /"audit":"session.created","kind":"runtime"/);
      assert.match(logs, /"audit":"session.ended","kind":"runtime".*"reason":"deleted"/);
    } finally {
      await Promise.all([alice.close(), bob.close(), pooled.close()]);
    }
  });

  test("a runtime session can be named in the URL (/sessions/ID/mcp) or by AgentCore's header: the same sandbox", async () => {
    const id = randomBytes(16).toString('base64url');
    const auth = { authorization: 'Bearer key-one' };
    const byHeader = await pinnedClient(berth.url, { ...auth, 'berth-runtime-session': id });
    const byUrl = await pinnedClient(berth.url.replace(/\/mcp$/, `/sessions/${id}/mcp`), auth);
    const byAgentCore = await pinnedClient(berth.url, { ...auth, 'x-amzn-bedrock-agentcore-runtime-session-id': id });
    try {
      const sandbox = await call(byHeader, 'whoami');
      assert.equal(await call(byUrl, 'whoami'), sandbox);
      assert.equal(await call(byAgentCore, 'whoami'), sandbox);
      const { message, headers } = modern('tools/list', {}, 'mismatch');
      const r = await post(berth.url.replace(/\/mcp$/, `/sessions/${id}/mcp`), message, {
        ...headers,
        ...auth,
        'berth-runtime-session': randomBytes(16).toString('base64url'),
      });
      assert.equal(r.status, 400);
      assert.match(r.body.error.message, /different runtime sessions/);
    } finally {
      await Promise.all([byHeader.close(), byUrl.close(), byAgentCore.close()]);
    }
  });

  test('runtime sessions show in the admin API and /metrics, and the admin can end one', async () => {
    const admin = { authorization: 'Bearer admin-token-for-tests' };
    const base = new URL(berth.url).origin;
    type Listed = { id: string; kind: string; principal: { subject: string } };
    const listed = async () =>
      ((await (await fetch(`${base}/admin/sessions`, { headers: admin })).json()) as { sessions: Listed[] }).sessions;
    const before = new Set((await listed()).map((s) => s.id));
    const id = randomBytes(16).toString('base64url');
    const client = await pinnedClient(berth.url, { authorization: 'Bearer key-one', 'berth-runtime-session': id });
    try {
      const sandbox = await call(client, 'whoami');
      const mine = (await listed()).filter((s) => !before.has(s.id));
      assert.equal(mine.length, 1, JSON.stringify(mine));
      assert.equal(mine[0]!.kind, 'runtime');
      assert.equal(mine[0]!.principal.subject, `key-${createHash('sha256').update('key-one').digest('hex').slice(0, 12)}`);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /berth_runtime_sessions_live\{runtime="default"\} [1-9]/);
      assert.equal((await fetch(`${base}/admin/sessions/${mine[0]!.id}`, { method: 'DELETE', headers: admin })).status, 204);
      // Ended by the admin: the id now answers 404 naming why, rather than starting a fresh sandbox.
      await assert.rejects(call(client, 'whoami'), /Runtime session ended \(admin/);
      void sandbox;
    } finally {
      await client.close();
    }
  });

  test('an id outside 22-128 chars of [A-Za-z0-9_-] -> 400; answers echo the header', async () => {
    const auth = { authorization: 'Bearer key-one' };
    const bad = modern('tools/list', {}, 'bad-id');
    assertError(await post(berth.url, bad.message, { ...bad.headers, ...auth, 'berth-runtime-session': 'short' }), 400, -32000, 'bad-id');
    const id = 'x'.repeat(22);
    const ok = modern('tools/list', {}, 'ok-id');
    const r = await post(berth.url, ok.message, { ...ok.headers, ...auth, 'berth-runtime-session': id });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers.get('berth-runtime-session'), id);
  });
});

describe('a runtime session that timed out', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '0', '--idle-timeout', '1s'], SERVER_2026);
  });
  after(() => berth?.stop());

  test('answers 404 naming why, instead of silently starting a fresh sandbox', async () => {
    const pinned = { 'berth-runtime-session': randomBytes(16).toString('base64url') };
    const first = modern('tools/call', { name: 'count', arguments: {} }, 1);
    assert.equal(textOf((await post(berth.url, first.message, { ...first.headers, ...pinned })).body.result), '1');
    await new Promise((r) => setTimeout(r, 2500));
    const again = modern('tools/call', { name: 'count', arguments: {} }, 2);
    const r = await post(berth.url, again.message, { ...again.headers, ...pinned });
    assertError(r, 404, -31001, 2);
    assert.equal(r.body.error.data.reason, 'idle');
    assert.match(berth.logs(), /"audit":"session.ended","kind":"runtime".*"reason":"idle"/);
  });
});

describe('a 2026-era server over http (--upstream http)', { timeout: 90_000 }, () => {
  const HTTP_2026 = [
    process.execPath,
    '--import',
    import.meta.resolve('tsx'),
    fileURLToPath(new URL('./fixtures/conformance-server-2026.ts', import.meta.url)),
    '--http',
  ];
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--upstream', 'http'], HTTP_2026);
  });
  after(() => berth?.stop());

  test('a pinned v2 client calls tools and completes an input_required round through the forwarded server', async () => {
    const client = await pinnedClient(berth.url);
    try {
      assert.ok((await client.listTools()).tools.some((t) => t.name === 'test_input_required_result_elicitation'));
      assert.equal(
        textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })),
        'This is a simple text response for testing.',
      );
      assert.equal(textOf(await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} })), 'Hello, ada!');
    } finally {
      await client.close();
    }
  });

  test('the server’s own refusals pass through (404 -32601); a runtime session is echoed', async () => {
    const unknown = modern('no/such-method', {}, 'u-1');
    assertError(await post(berth.url, unknown.message, unknown.headers), 404, -32601, 'u-1');
    const id = randomBytes(16).toString('base64url');
    const { message, headers } = modern('tools/list', {}, 'l-1');
    const r = await post(berth.url, message, { ...headers, 'berth-runtime-session': id });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('berth-runtime-session'), id);
    assert.ok(r.body.result.tools.length > 0);
  });
});
