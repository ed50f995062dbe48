// Issue 16: the edges of the MCP spec berth got wrong, each pinned to the sentence that says what is right. Black-box:
// real berth processes on loopback, raw fetch where the wire matters, the official SDK client where behaviour does.
//
//   item 1  Mcp-Param-* header validation       -> see the marked place below (another test file)
//   item 2  inputResponses without requestState -> see the marked place below (another test file)
//   item 3  a cancelled request gets no response -> 'cancellation' below
//   item 4  a session's POST without MCP-Protocol-Version is judged at the negotiated version -> test/wire.test.ts
//   item 5  CORS                                  -> see the marked place below (another test file)
//   item 6  refusals that cannot name a request id -> 'error responses without a readable id' below
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { isJSONRPCErrorResponse } from '@modelcontextprotocol/sdk/types.js';
import { ACCEPT_BOTH, initBody, runBerth, sseEvents, sseMessages, textOf, type BerthProcess } from './helpers/berth.ts';

const tsx = (fixture: string) => [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL(fixture, import.meta.url)),
];
const CANCEL_SERVER = tsx('./fixtures/cancel-server.ts');
const PROBE_HTTP = [...tsx('./fixtures/probe-server.ts'), '--http'];
const SERVER_2026 = tsx('./fixtures/server-2026.ts');
const MRTR_2025 = [...tsx('./fixtures/conformance-server.ts'), '--stdio'];
const ADMIN_TOKEN = 'protocol-edges-admin-token';
const V = '2025-11-25';

type Json = Record<string, any>;

async function waitFor<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function headersFor(sid: string, version = V): Record<string, string> {
  return { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': version };
}

function post(url: string, headers: Record<string, string>, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** initialize + notifications/initialized at `version`, raw; the session id. */
async function session(url: string, version = V): Promise<string> {
  const r = await post(url, { accept: ACCEPT_BOTH, 'content-type': 'application/json' }, initBody(1, version));
  assert.equal(r.status, 200, await r.clone().text());
  await r.text();
  const sid = r.headers.get('mcp-session-id')!;
  const note = await post(url, headersFor(sid, version), { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(note.status, 202);
  return sid;
}

/** A tools/call's result from a JSON or SSE answer. */
async function resultOf(r: Response): Promise<Json> {
  const text = await r.text();
  const msg = ((r.headers.get('content-type') ?? '').startsWith('text/event-stream') ? sseMessages(text).at(-1) : JSON.parse(text)) as Json;
  assert.ok(msg?.result, `a result: ${text.slice(0, 300)}`);
  return msg.result as Json;
}

describe('issue 16: protocol edges', { timeout: 120_000 }, () => {
  let berth: BerthProcess;
  let url: string;

  before(async () => {
    // A long JSON window, so that a call cancelled before its server says anything is still plain JSON-to-be.
    berth = await runBerth(
      ['--isolation', 'process', '--warm-pool', '1', '--json-window', '30s', '--admin-token-env', 'BERTH_ADMIN_TOKEN'],
      CANCEL_SERVER,
      { BERTH_ADMIN_TOKEN: ADMIN_TOKEN },
    );
    url = berth.url;
  });
  after(() => berth?.stop());

  /** What the session's server got: every hold call under the id berth gave it, and every cancellation. */
  async function seen(sid: string): Promise<{ holds: Array<{ tag: string; id: string | number }>; cancels: Array<string | number> }> {
    const r = await post(url, headersFor(sid), {
      jsonrpc: '2.0',
      id: `seen-${Date.now()}`,
      method: 'tools/call',
      params: { name: 'seen' },
    });
    return JSON.parse(textOf(await resultOf(r))) as never;
  }

  /** The session's calls in flight, as berth counts them (admin API). */
  async function inFlight(sid: string): Promise<number> {
    const r = await fetch(`${url.replace(/\/mcp$/, '')}/admin/sessions`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(r.status, 200);
    const s = ((await r.json()) as { sessions: Array<{ id: string; inFlight: number }> }).sessions.find((x) => x.id === sid);
    assert.ok(s, 'the session is listed');
    return s.inFlight;
  }

  /** The id the server got the hold call tagged `tag` under, once it has it. */
  async function heldAs(sid: string, tag: string): Promise<string | number> {
    const h = await waitFor(async () => (await seen(sid)).holds.find((x) => x.tag === tag), `the server to get hold ${tag}`);
    return h.id;
  }

  function cancel(sid: string, requestId: string): Promise<Response> {
    return post(url, headersFor(sid), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'test' } });
  }

  // 2025-11-25, basic/utilities/cancellation, Behavior Requirements: "Receivers of cancellation notifications SHOULD:
  // Stop processing the cancelled request; Free associated resources; Not send a response for the cancelled request".
  // berth is the receiver towards the client and passes the cancellation on to the server under the server's own id.
  describe('cancellation (item 3)', () => {
    test('"Not send a response for the cancelled request": a call cancelled inside its JSON window gets an empty SSE stream; the server hears of it under its own id; nothing stays in flight', async () => {
      const sid = await session(url);
      const pending = post(url, headersFor(sid), {
        jsonrpc: '2.0',
        id: 'h-a',
        method: 'tools/call',
        params: { name: 'hold', arguments: { tag: 'a' } },
      });
      const serverId = await heldAs(sid, 'a');
      assert.notEqual(serverId, 'h-a', 'berth rewrites client ids on their way to the server');
      assert.equal(await inFlight(sid), 1);
      assert.equal((await cancel(sid, 'h-a')).status, 202);
      const r = await pending;
      // A request is answered with application/json or text/event-stream (Streamable HTTP, Sending Messages 5); with
      // no response to send, the stream carries nothing: not even a priming event, as there is nothing to resume.
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/, 'no JSON body: there is no response to put in one');
      assert.equal(await r.text(), '', 'no event at all');
      assert.deepEqual((await seen(sid)).cancels, [serverId], 'the server got notifications/cancelled for the id it knows');
      // The server answers the cancelled call anyway (the fixture's misbehaviour): berth has forgotten it, so it is dropped.
      assert.equal(await inFlight(sid), 0, 'the cancelled call is no longer in flight');
    });

    test('"Not send a response for the cancelled request": a call whose response is already a stream ends it without one', async () => {
      const sid = await session(url);
      const r = await post(url, headersFor(sid), {
        jsonrpc: '2.0',
        id: 'h-b',
        method: 'tools/call',
        params: { name: 'hold', arguments: { tag: 'b', progress: true }, _meta: { progressToken: 'p-b' } },
      });
      // The server's progress notification made the response a stream (primed: a 2025-11-25 session).
      assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
      const reader = r.body!.getReader();
      const decoder = new TextDecoder();
      let text = '';
      while (!sseMessages(text).some((m) => (m as Json).method === 'notifications/progress')) {
        const { value, done } = await reader.read();
        assert.ok(!done, `the stream ended before the progress notification: ${text}`);
        text += decoder.decode(value, { stream: true });
      }
      const serverId = await heldAs(sid, 'b');
      assert.equal((await cancel(sid, 'h-b')).status, 202);
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value, { stream: true });
      const messages = sseMessages(text) as Json[];
      assert.ok(!messages.some((m) => m.id === 'h-b'), `no response to the cancelled call on its stream: ${text}`);
      assert.ok(sseEvents(text)[0]?.id, 'the stream was primed (so it was a 2025-11-25 stream)');
      assert.deepEqual((await seen(sid)).cancels, [serverId]);
      assert.equal(await inFlight(sid), 0);
    });

    test('"The sender of the cancellation notification SHOULD ignore any response to the request that arrives afterward": the SDK client cancels a call, hears no error, and its next call on the session works', async () => {
      const client = new Client({ name: 'protocol-edges', version: '1' });
      const transport = new StreamableHTTPClientTransport(new URL(url));
      await client.connect(transport);
      const errors: Error[] = [];
      client.onerror = (e) => errors.push(e);
      try {
        const sid = transport.sessionId!;
        const abort = new AbortController();
        const held = client.callTool({ name: 'hold', arguments: { tag: 'sdk' } }, undefined, { signal: abort.signal });
        const serverId = await heldAs(sid, 'sdk');
        abort.abort('the user gave up');
        await assert.rejects(held);
        await waitFor(async () => (await seen(sid)).cancels.includes(serverId), 'the server to hear of the cancellation');
        const echo = await client.callTool({ name: 'echo', arguments: { text: 'after the cancel' } });
        assert.equal(textOf(echo), 'after the cancel');
        assert.equal(await inFlight(sid), 0);
        // Before the fix berth answered -32800 for a request the SDK had forgotten: "unknown message ID" errors.
        assert.deepEqual(
          errors.map((e) => e.message),
          [],
        );
      } finally {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
      }
    });
  });

  // 2025-11-25 and 2026-07-28, basic/index, Error Responses: "Error responses MUST include the same ID as the request
  // they correspond to (except in error cases where the ID could not be read due a malformed request)", and the
  // schema's JSONRPCErrorResponse has `id?: RequestId` (never null). Earlier revisions follow JSON-RPC 2.0: "If there
  // was an error in detecting the id in the Request object (e.g. Parse error/Invalid Request), it MUST be Null."
  describe('error responses without a readable id (item 6)', () => {
    const malformed = '{"jsonrpc": "2.0", "id": 1, "method": ';

    async function refusal(headers: Record<string, string>, body = malformed): Promise<Json> {
      const r = await post(url, { accept: ACCEPT_BOTH, 'content-type': 'application/json', ...headers }, body);
      assert.equal(r.status, 400);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
      return (await r.json()) as Json;
    }

    for (const version of ['2025-11-25', '2026-07-28']) {
      test(`${version}: "except in error cases where the ID could not be read due a malformed request" — a parse error's body has no id member`, async () => {
        const body = await refusal({ 'mcp-protocol-version': version });
        assert.equal(body.error.code, -32700);
        assert.ok(!('id' in body), `no id member: ${JSON.stringify(body)}`);
        // What the official SDK's schema (id optional, string or number) accepts as an error response.
        assert.ok(isJSONRPCErrorResponse(body));
      });
    }

    for (const version of ['2025-06-18', '2025-03-26']) {
      test(`${version}: JSON-RPC 2.0's "it MUST be Null" — a parse error's body says id null`, async () => {
        const body = await refusal({ 'mcp-protocol-version': version });
        assert.equal(body.error.code, -32700);
        assert.equal(body.id, null);
      });
    }

    // "If the server does not receive an MCP-Protocol-Version header, and has no other way to identify the version
    // ... the server SHOULD assume protocol version 2025-03-26" (Streamable HTTP, Protocol Version Header).
    test('no version header: taken as 2025-03-26, so id null', async () => {
      const body = await refusal({});
      assert.equal(body.id, null);
    });

    test('2026-07-28: a batch (no one request to name) is refused without an id member', async () => {
      const message = {
        jsonrpc: '2.0',
        id: 'b-1',
        method: 'tools/list',
        params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } },
      };
      const body = await refusal({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }, JSON.stringify([message]));
      assert.equal(body.error.code, -32600);
      assert.ok(!('id' in body), JSON.stringify(body));
    });
  });

  // Item 1 (Mcp-Param-* header validation): pinned in its own engineer's test file; its spec sentences go here.
  // Item 2 (inputResponses without requestState): pinned in its own engineer's test file; its spec sentences go here.
  // Item 4 (a 2025-06-18 session's POST without MCP-Protocol-Version is judged at the negotiated version): pinned in
  //   test/wire.test.ts, 'a headerless batch in a session that negotiated 2025-06-18 -> 400 -32600 (the negotiated
  //   version applies, not 2025-03-26)', which quotes "If the server does not receive an MCP-Protocol-Version header,
  //   and has no other way to identify the version ...".
  // Item 5 (CORS): pinned in its own engineer's test file; its spec sentences go here.
});

describe('issue 16 item 3 over an http upstream (berth forwards; the server does as it will)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(
      ['--upstream', 'http', '--isolation', 'process', '--warm-pool', '1', '--admin-token-env', 'BERTH_ADMIN_TOKEN'],
      PROBE_HTTP,
      { BERTH_ADMIN_TOKEN: ADMIN_TOKEN },
    );
  });
  after(() => berth?.stop());

  async function inFlight(sid: string): Promise<number | undefined> {
    const r = await fetch(`${berth.url.replace(/\/mcp$/, '')}/admin/sessions`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    return ((await r.json()) as { sessions: Array<{ id: string; inFlight: number }> }).sessions.find((x) => x.id === sid)?.inFlight;
  }

  test('"Not send a response for the cancelled request": the SDK server keeps a cancelled call\'s stream open; berth ends it without a response and the call leaves the in-flight count', async () => {
    const sid = await session(berth.url);
    // Bounded: before the fix this stream stayed open for as long as the client kept it.
    const pending = fetch(berth.url, {
      method: 'POST',
      headers: headersFor(sid),
      body: JSON.stringify({ jsonrpc: '2.0', id: 'hs-1', method: 'tools/call', params: { name: 'sleep', arguments: { ms: 60_000 } } }),
      signal: AbortSignal.timeout(20_000),
    });
    await waitFor(async () => (await inFlight(sid)) === 1, 'the call to be in flight');
    const c = await post(berth.url, headersFor(sid), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'hs-1' } });
    assert.equal(c.status, 202);
    const r = await pending;
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await r.text().catch((e: Error) => assert.fail(`the cancelled call's stream did not end: ${e.message}`));
    assert.ok(!(sseMessages(text) as Json[]).some((m) => m.id === 'hs-1'), `no response to the cancelled call: ${text}`);
    await waitFor(async () => (await inFlight(sid)) === 0, 'the cancelled call to leave the in-flight count');
  });
});

// 2026-07-28, basic/patterns/cancellation, Transport-Specific Cancellation: "Streamable HTTP: Closing the SSE response
// stream is the cancellation signal. The server MUST treat a client disconnect as cancellation of that request."
// Passed before the item 3 fix as well (a 2026 client's call never got a response on cancel); kept as the path's guard.
describe('issue 16 item 3: a 2026 client cancels by closing its stream (stateless runtime)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--stateless'], SERVER_2026);
  });
  after(() => berth?.stop());

  const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
  const call = (id: string, name: string, args: Json) => ({
    headers: {
      accept: ACCEPT_BOTH,
      'content-type': 'application/json',
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/call',
      'mcp-name': name,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: meta } }),
  });

  test('the pooled server gets the cancellation under its own id when the client closes the stream', async () => {
    const abort = new AbortController();
    const c = call('s-1', 'sleep', { ms: 20_000, tag: 'stateless-cut' });
    const r = await fetch(berth.url, { method: 'POST', headers: c.headers, body: c.body, signal: abort.signal });
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/, 'past the JSON window the call is a stream');
    abort.abort();
    const cancelled = await waitFor(async () => {
      const q = call(`q-${Date.now()}`, 'cancelled', {});
      const reply = await fetch(berth.url, { method: 'POST', headers: q.headers, body: q.body });
      const log = textOf(await resultOf(reply));
      return log.includes('stateless-cut') && log;
    }, 'the server to record the cancelled sleep');
    assert.match(cancelled, /stateless-cut/);
  });
});

// 2026-07-28, basic/transports/streamable-http: a request refused for a capability the client lacks is answered
// "HTTP 400 Bad Request" with -32021. Under bridge A the refusal comes when the 2025 server asks (an elicitation), which
// may be long after the JSON window: a response already opened as a 200 stream could not carry the 400 (seen as a
// flake of the conformance scenario sep-2575-missing-capability-http-400 on a loaded machine). A 2026 response now
// opens its stream when it first has something to send.
describe('a late refusal keeps its status (bridge A, 2026 client, 2025 server)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    // A 1 ms window: the server's refusal (after it asked berth for sampling and was told -32601) always comes later.
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--json-window', '1ms', '--server-era', '2025'], MRTR_2025);
  });
  after(() => berth?.stop());

  test('a tool needing sampling, called by a client without it, refused after the JSON window: 400 -32021, not a 200 stream', async () => {
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: {
        accept: ACCEPT_BOTH,
        'content-type': 'application/json',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'test_missing_capability',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'late-1',
        method: 'tools/call',
        params: { name: 'test_missing_capability', arguments: {}, _meta: meta },
      }),
    });
    const body = await r.text();
    assert.equal(r.status, 400, `status ${r.status}: ${body}`);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal((JSON.parse(body) as { error?: { code?: number } }).error?.code, -32021, body);
  });
});
