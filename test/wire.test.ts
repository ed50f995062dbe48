// The Streamable HTTP wire rules, checked with raw HTTP against one real berth process hosting the probe server.
// Every refusal must carry the right HTTP status, a JSON-RPC error body (application/json, never HTML) with the
// right code and a message that says what was wrong.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/wire.test.ts
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ACCEPT_BOTH, ROOT, initBody, runBerth, sseMessages, type BerthProcess } from './helpers/berth.ts';

// Absolute paths: the server runs in its private session directory, not in the repository.
const PROBE_ABS = [process.execPath, '--import', import.meta.resolve('tsx'), join(ROOT, 'test/fixtures/probe-server.ts')];
const FLAGS = ['--drain-timeout', '1s', '--warm-pool', '2'];
const V = '2025-11-25';
const MiB = 1024 * 1024;

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

async function send(url: string, method: string, headers: Record<string, string>, body?: RequestInit['body']): Promise<Reply> {
  const r = await fetch(url, { method, headers, body });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

function postHeaders(sid?: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    accept: ACCEPT_BOTH,
    'content-type': 'application/json',
    ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': V } : {}),
    ...extra,
  };
}

function rpc(id: number | string, method: string, params?: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
}

/** A JSON-RPC error answer at the HTTP layer: status, JSON content type, JSON-RPC error code and message. */
function assertRpcError(r: Reply, status: number, code: number, message: RegExp): void {
  assert.equal(r.status, status, `HTTP status (body: ${r.text.slice(0, 300)})`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json\b/, 'error bodies are JSON');
  assert.doesNotMatch(r.text, /^\s*</, 'error bodies are never HTML');
  const body = JSON.parse(r.text) as { jsonrpc: string; id: unknown; error: { code: number; message: string } };
  assert.equal(body.jsonrpc, '2.0');
  // An error that cannot name its request has id null before 2025-11-25 and no id member from then on (which one
  // is pinned in test/protocol-edges.test.ts); any id present is a JSON-RPC id.
  assert.ok(
    !('id' in body) || body.id === null || typeof body.id === 'string' || typeof body.id === 'number',
    `a JSON-RPC error response's id: ${r.text.slice(0, 300)}`,
  );
  assert.equal(body.error.code, code, `JSON-RPC error code (message: ${body.error.message})`);
  assert.match(body.error.message, message);
}

/** Reads a Server-Sent Events body one JSON-RPC message at a time. */
class SseReader {
  private buf = '';
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  /** The next message, or undefined when the stream ends; rejects after timeoutMs. */
  async next(timeoutMs = 5000): Promise<Record<string, any> | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buf.indexOf('\n\n');
      if (i >= 0) {
        const block = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data) return JSON.parse(data) as Record<string, any>;
        continue;
      }
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no SSE event within ${timeoutMs} ms; buffered: ${JSON.stringify(this.buf)}`)),
          Math.max(0, deadline - Date.now()),
        );
      });
      try {
        const r = await Promise.race([this.reader.read(), timeout]);
        if (r.done) return undefined;
        this.buf += this.decoder.decode(r.value, { stream: true });
      } finally {
        clearTimeout(timer);
      }
    }
  }

  cancel(): Promise<void> {
    return this.reader.cancel().catch(() => undefined);
  }
}

/**
 * POSTs with node:http and resolves with the answer as soon as it arrives. declare: only the headers go out,
 * with Content-Length `total` (like a client waiting for 100-continue); otherwise `total` bytes of spaces chunked.
 */
function upload(url: string, headers: Record<string, string>, total: number, declare: boolean): Promise<Reply> {
  const u = new URL(url);
  return new Promise<Reply>((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { ...headers, ...(declare ? { 'content-length': String(total) } : {}) },
      },
      (res) => {
        answered = true;
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('error', () => undefined);
        res.on('close', () => {
          req.destroy();
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
          resolve({ status: res.statusCode!, headers: h, text });
        });
      },
    );
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    if (declare) {
      req.flushHeaders();
      return;
    }
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < total && !req.destroyed) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!req.write(chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

let berth: BerthProcess;
let URL_: string;

/** initialize + notifications/initialized; returns the session id. */
async function init(
  url = URL_,
  version = V,
  extra: Record<string, string> = {},
): Promise<{ sid: string; result: Record<string, any>; reply: Reply }> {
  const reply = await send(url, 'POST', postHeaders(undefined, extra), initBody(1, version));
  assert.equal(reply.status, 200, `initialize: ${reply.text}`);
  const sid = reply.headers.get('mcp-session-id');
  assert.ok(sid, 'initialize returns an Mcp-Session-Id');
  const body = (reply.headers.get('content-type') ?? '').startsWith('text/event-stream')
    ? sseMessages(reply.text).at(-1)
    : JSON.parse(reply.text);
  const { result } = body as { result: Record<string, any> };
  assert.ok(result, `initialize result: ${reply.text}`);
  const note = await send(
    url,
    'POST',
    { ...postHeaders(sid), 'mcp-protocol-version': version },
    JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  );
  assert.equal(note.status, 202, note.text);
  return { sid, result, reply };
}

/** A JSON-RPC result from a JSON or SSE reply (the last message on an SSE stream). */
function resultOf(r: Reply): Record<string, any> {
  const ct = r.headers.get('content-type') ?? '';
  const msg = (ct.startsWith('text/event-stream') ? sseMessages(r.text).at(-1) : JSON.parse(r.text)) as Record<string, any>;
  assert.ok(msg.result, `expected a result: ${r.text.slice(0, 300)}`);
  return msg.result as Record<string, any>;
}

// The whole suite's bound, a safety net rather than a measurement: it took 20-70 s here, the longer on a loaded machine.
describe('Streamable HTTP wire rules', { timeout: 240_000 }, () => {
  let sid: string; // one live session shared by the checks that need one

  before(async () => {
    berth = await runBerth(FLAGS, PROBE_ABS);
    URL_ = berth.url;
    sid = (await init()).sid;
  });

  after(async () => {
    await berth?.stop();
  });

  describe('session routing', () => {
    test('POST of a non-initialize request without a session id -> 400 -32000', async () => {
      const r = await send(URL_, 'POST', postHeaders(), rpc(1, 'tools/list'));
      assertRpcError(r, 400, -32000, /Mcp-Session-Id/i);
    });

    test('unknown session id -> 404 -32001', async () => {
      const r = await send(URL_, 'POST', postHeaders('no-such-session-aaaaaaaaaaaaaaaaaaaaaa'), rpc(1, 'tools/list'));
      assertRpcError(r, 404, -32001, /session not found/i);
    });

    test('a session id of an ended (DELETEd) session -> 404 -32001', async () => {
      const { sid: gone } = await init();
      const d = await send(URL_, 'DELETE', { 'mcp-session-id': gone, 'mcp-protocol-version': V });
      assert.ok(d.status >= 200 && d.status < 300, `DELETE: ${d.status} ${d.text}`);
      const r = await send(URL_, 'POST', postHeaders(gone), rpc(2, 'tools/list'));
      assertRpcError(r, 404, -32001, /session not found/i);
    });
  });

  describe('MCP-Protocol-Version', () => {
    test('an unsupported version header -> 400 -32000 naming the version', async () => {
      const r = await send(URL_, 'POST', { ...postHeaders(sid), 'mcp-protocol-version': '1999-01-01' }, rpc(1, 'tools/list'));
      assertRpcError(r, 400, -32000, /MCP-Protocol-Version.*1999-01-01/i);
      const g = await send(URL_, 'GET', { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '1999-01-01' });
      assertRpcError(g, 400, -32000, /MCP-Protocol-Version/i);
    });

    // Spec (2025-06-18 on): "If the server does not receive an MCP-Protocol-Version header, and has no other way to
    // identify the version - for example, by relying on the protocol version negotiated during initialization - the
    // server SHOULD assume protocol version 2025-03-26." A session has that other way.
    test('a headerless batch in a session that negotiated 2025-06-18 -> 400 -32600 (the negotiated version applies, not 2025-03-26)', async () => {
      const { sid: s } = await init(URL_, '2025-06-18', { 'mcp-protocol-version': '2025-06-18' });
      const headers = { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': s };
      const r = await send(URL_, 'POST', headers, `[${rpc(2, 'tools/list')},${rpc(3, 'tools/list')}]`);
      assertRpcError(r, 400, -32600, /batches are not part of protocol version 2025-06-18/);
      const one = await send(URL_, 'POST', headers, rpc(4, 'tools/list'));
      assert.equal(one.status, 200, one.text);
      await send(URL_, 'DELETE', { 'mcp-session-id': s, 'mcp-protocol-version': '2025-06-18' });
    });

    for (const version of ['2025-11-25', '2025-06-18', '2025-03-26']) {
      test(`initialize at ${version} is accepted; the negotiated version comes from the server`, async () => {
        const { sid: s, result } = await init(URL_, version, { 'mcp-protocol-version': version });
        assert.equal(result.protocolVersion, version);
        assert.equal(result.serverInfo?.name, 'probe', 'the result is the hosted server’s own');
        const r = await send(URL_, 'POST', { ...postHeaders(s), 'mcp-protocol-version': version }, rpc(2, 'tools/list'));
        assert.equal(r.status, 200, r.text);
        assert.ok(Array.isArray(resultOf(r).tools));
        await send(URL_, 'DELETE', { 'mcp-session-id': s, 'mcp-protocol-version': version });
      });
    }
  });

  describe('Origin', () => {
    test('a foreign Origin -> 403 -32000', async () => {
      const r = await send(URL_, 'POST', postHeaders(undefined, { origin: 'http://evil.example' }), initBody());
      assertRpcError(r, 403, -32000, /Origin.*evil\.example/);
      assert.equal(r.headers.get('mcp-session-id'), null, 'no session is created');
    });

    test('a loopback Origin is allowed', async () => {
      const { sid: s } = await init(URL_, V, { origin: 'http://localhost:3000' });
      const r = await send(URL_, 'POST', postHeaders(s, { origin: 'http://localhost:3000' }), rpc(2, 'ping'));
      assert.equal(r.status, 200, r.text);
      await send(URL_, 'DELETE', { 'mcp-session-id': s });
    });

    test('no Origin is allowed (non-browser clients)', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid), rpc(3, 'ping'));
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(resultOf(r), {});
    });
  });

  describe('body size', () => {
    test('a body over 4 MiB (declared Content-Length) -> 413, and berth still serves', async () => {
      const r = await upload(URL_, postHeaders(sid), 4 * MiB + 1, true);
      assertRpcError(r, 413, -32000, /Payload Too Large.*4194304/);
      const ok = await send(URL_, 'POST', postHeaders(sid), rpc(4, 'ping'));
      assert.equal(ok.status, 200, ok.text);
    });

    test('a chunked body (no Content-Length) over 4 MiB -> 413, and berth still serves', async () => {
      const r = await upload(URL_, postHeaders(sid), 4 * MiB + 1, false);
      assertRpcError(r, 413, -32000, /Payload Too Large/);
      const ok = await send(URL_, 'POST', postHeaders(sid), rpc(5, 'ping'));
      assert.equal(ok.status, 200, ok.text);
    });

    test('a fetch() client uploading over 4 MiB always gets its 413 (the connection is not cut mid-upload)', async () => {
      // fetch() writes the whole body before it reads; if berth closes the socket right after answering,
      // the client gets EPIPE/ECONNRESET instead of the answer. Repeated, because the failure is a race.
      const big = new Uint8Array(4 * MiB + 1).fill(0x20);
      const outcomes: string[] = [];
      for (let i = 0; i < 20; i++) {
        outcomes.push(
          await fetch(URL_, { method: 'POST', headers: postHeaders(sid), body: big }).then(
            async (r) => (await r.text(), String(r.status)),
            (e: Error & { cause?: { code?: string } }) => `fetch failed: ${e.cause?.code ?? e.message}`,
          ),
        );
      }
      assert.deepEqual(
        outcomes.filter((o) => o !== '413'),
        [],
        `outcomes: ${outcomes.join(', ')}`,
      );
      const ok = await send(URL_, 'POST', postHeaders(sid), rpc(4, 'ping'));
      assert.equal(ok.status, 200, ok.text);
    });
  });

  describe('body parsing', () => {
    test('malformed JSON -> 400 -32700', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid), '{"jsonrpc":"2.0","id":1,');
      assertRpcError(r, 400, -32700, /Parse error/);
    });

    test('invalid UTF-8 -> 400 -32700', async () => {
      const bytes = Buffer.concat([
        Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'),
        Buffer.from([0xff, 0xfe, 0xc3]),
        Buffer.from('"}}'),
      ]);
      const r = await send(URL_, 'POST', postHeaders(sid), bytes);
      assertRpcError(r, 400, -32700, /UTF-8/);
    });

    test('valid JSON that is not JSON-RPC -> 400 -32600', async () => {
      const cases: Array<[string, RegExp]> = [
        ['{"foo":1}', /Invalid Request.*jsonrpc/],
        ['{"jsonrpc":"1.0","id":1,"method":"ping"}', /Invalid Request.*"jsonrpc".*2\.0/],
        ['[]', /Invalid Request.*empty batch/],
        ['42', /Invalid Request/],
        ['{"jsonrpc":"2.0","id":1}', /Invalid Request/],
      ];
      for (const [body, message] of cases) {
        const r = await send(URL_, 'POST', postHeaders(sid), body);
        assertRpcError(r, 400, -32600, message);
      }
    });
  });

  describe('body shapes a server would choke on', () => {
    test('JSON nested deeper than 512 levels -> 400 -32600 (5000 levels used to be a 500 from a stack overflow)', async () => {
      const deep = (n: number) => `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":${'['.repeat(n)}${']'.repeat(n)}}}`;
      assertRpcError(await send(URL_, 'POST', postHeaders(sid), deep(5000)), 400, -32600, /nested deeper than 512/);
      // Brackets inside strings are not nesting.
      const r = await send(
        URL_,
        'POST',
        postHeaders(sid),
        JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping', params: { s: '['.repeat(5000) } }),
      );
      assert.equal(r.status, 200, r.text);
      assert.equal((await send(URL_, 'POST', postHeaders(sid), deep(500))).status, 200);
    });

    test('members beyond JSON-RPC, non-object params -> 400 -32600 at once (the server would drop them unanswered)', async () => {
      assertRpcError(
        await send(URL_, 'POST', postHeaders(sid), '{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}'),
        400,
        -32600,
        /unexpected member "extra"/,
      );
      assertRpcError(
        await send(URL_, 'POST', postHeaders(sid), '{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}'),
        400,
        -32600,
        /"params" member must be an object/,
      );
    });
  });

  describe('headers', () => {
    test('POST accepting only application/json -> 406', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid, { accept: 'application/json' }), rpc(1, 'ping'));
      assertRpcError(r, 406, -32000, /Not Acceptable.*text\/event-stream/);
    });

    test('GET without text/event-stream in Accept -> 406', async () => {
      const r = await send(URL_, 'GET', { accept: 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V });
      assertRpcError(r, 406, -32000, /Not Acceptable.*text\/event-stream/);
    });

    test('a Content-Type other than application/json -> 415', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid, { 'content-type': 'text/plain' }), rpc(1, 'ping'));
      assertRpcError(r, 415, -32000, /Unsupported Media Type.*Content-Type/);
    });

    test('Content-Type application/json with a charset parameter is fine', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid, { 'content-type': 'application/json; charset=utf-8' }), rpc(6, 'ping'));
      assert.equal(r.status, 200, r.text);
    });
  });

  describe('methods and paths', () => {
    for (const method of ['PUT', 'PATCH', 'OPTIONS']) {
      test(`${method} -> 405 with an Allow header`, async () => {
        const r = await send(URL_, method, postHeaders(sid), method === 'OPTIONS' ? undefined : rpc(1, 'ping'));
        assertRpcError(r, 405, -32000, new RegExp(`Method Not Allowed.*${method}`));
        const allow = (r.headers.get('allow') ?? '').split(',').map((s) => s.trim());
        assert.ok(allow.includes('POST') && allow.includes('GET') && allow.includes('DELETE'), `Allow: ${r.headers.get('allow')}`);
      });
    }

    test('an unknown path -> 404 JSON', async () => {
      const base = new URL(URL_);
      for (const path of ['/nope', '/mcp/extra', '/runtimes/missing/mcp']) {
        const r = await send(new URL(path, base).href, 'POST', postHeaders(), initBody());
        assertRpcError(r, 404, -32000, /Not Found/);
      }
      const g = await send(new URL('/', base).href, 'GET', { accept: 'text/html' });
      assertRpcError(g, 404, -32000, /Not Found/);
    });
  });

  describe('initialize', () => {
    test('initialize carrying an Mcp-Session-Id -> 400 -32600', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid), initBody());
      assertRpcError(r, 400, -32600, /initialize.*Mcp-Session-Id/i);
    });

    test('initialize inside a batch with other messages -> 400 -32600', async () => {
      const body = `[${initBody(1, '2025-03-26')},${rpc(2, 'tools/list')}]`;
      const r = await send(URL_, 'POST', postHeaders(undefined, { 'mcp-protocol-version': '2025-03-26' }), body);
      assertRpcError(r, 400, -32600, /initialize.*only message/i);
      assert.equal(r.headers.get('mcp-session-id'), null);
    });
  });

  describe('response shapes', () => {
    test('notification POSTs -> 202 with an empty body', async () => {
      const bodies = [
        { jsonrpc: '2.0', method: 'notifications/initialized' },
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'never-sent', reason: 'test' } },
      ];
      for (const b of bodies) {
        const r = await send(URL_, 'POST', postHeaders(sid), JSON.stringify(b));
        assert.equal(r.status, 202, `${b.method}: ${r.text}`);
        assert.equal(r.text, '');
      }
    });

    test('a POST carrying a request answers application/json or text/event-stream', async () => {
      const r = await send(URL_, 'POST', postHeaders(sid), rpc(7, 'tools/list'));
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type') ?? '', /^(application\/json|text\/event-stream)\b/);
      const names = (resultOf(r).tools as Array<{ name: string }>).map((t) => t.name);
      for (const n of ['echo', 'ask', 'progress', 'notify_list_changed']) assert.ok(names.includes(n), `tools/list has ${n}`);
    });

    test('a tools/call with progress before its result answers as SSE; the final event is the result', async () => {
      const r = await send(
        URL_,
        'POST',
        postHeaders(sid),
        rpc('p1', 'tools/call', { name: 'progress', arguments: { steps: 3 }, _meta: { progressToken: 'tok-1' } }),
      );
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream\b/);
      const msgs = sseMessages(r.text) as Array<Record<string, any>>;
      assert.equal(msgs.length, 4, r.text);
      for (const [i, m] of msgs.slice(0, 3).entries()) {
        assert.equal(m.method, 'notifications/progress');
        assert.equal(m.params.progressToken, 'tok-1');
        assert.equal(m.params.progress, i + 1);
      }
      const last = msgs.at(-1)!;
      assert.equal(last.id, 'p1', 'the client’s own id comes back');
      assert.equal(last.result.content[0].text, 'done 3');
    });
  });

  describe('session ids and DELETE', () => {
    test('initialize returns a visible-ASCII session id with >= 128 random bits, new each time', async () => {
      const ids = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const { sid: s } = await init();
        assert.match(s, /^[\x21-\x7E]+$/, 'visible ASCII only');
        assert.match(s, /^[A-Za-z0-9_-]{22,}$/, `at least 22 base64url characters (128 bits): ${s}`);
        ids.add(s);
        await send(URL_, 'DELETE', { 'mcp-session-id': s });
      }
      ids.add(sid);
      assert.equal(ids.size, 4, 'every initialize gets a different id');
    });

    test('DELETE -> 2xx, then the id answers 404 for POST, GET and DELETE', async () => {
      const { sid: s } = await init();
      const d = await send(URL_, 'DELETE', { 'mcp-session-id': s, 'mcp-protocol-version': V });
      assert.ok(d.status >= 200 && d.status < 300, `DELETE: ${d.status} ${d.text}`);
      assertRpcError(await send(URL_, 'POST', postHeaders(s), rpc(1, 'ping')), 404, -32001, /session not found/i);
      assertRpcError(
        await send(URL_, 'GET', { accept: 'text/event-stream', 'mcp-session-id': s, 'mcp-protocol-version': V }),
        404,
        -32001,
        /session not found/i,
      );
      assertRpcError(await send(URL_, 'DELETE', { 'mcp-session-id': s, 'mcp-protocol-version': V }), 404, -32001, /session not found/i);
    });

    test('DELETE without a session id -> 400', async () => {
      assertRpcError(await send(URL_, 'DELETE', {}), 400, -32000, /Mcp-Session-Id/i);
    });
  });

  describe('server-to-client traffic', () => {
    test('GET opens a 200 SSE stream; a server notification arrives on it', async () => {
      const { sid: s } = await init();
      const ac = new AbortController();
      const g = await fetch(URL_, {
        method: 'GET',
        headers: { accept: 'text/event-stream', 'mcp-session-id': s, 'mcp-protocol-version': V },
        signal: ac.signal,
      });
      assert.equal(g.status, 200);
      assert.match(g.headers.get('content-type') ?? '', /^text\/event-stream\b/);
      const events = new SseReader(g.body!);
      try {
        const r = await send(URL_, 'POST', postHeaders(s), rpc(1, 'tools/call', { name: 'notify_list_changed', arguments: {} }));
        assert.equal(r.status, 200, r.text);
        assert.equal(resultOf(r).content[0].text, 'sent');
        let m = await events.next();
        while (m && m.method !== 'notifications/tools/list_changed') m = await events.next();
        assert.equal(m?.method, 'notifications/tools/list_changed');
      } finally {
        ac.abort();
        await events.cancel();
        await send(URL_, 'DELETE', { 'mcp-session-id': s });
      }
    });

    test('without a GET stream, elicitation arrives on the POST stream and the same stream delivers the result', async () => {
      const { sid: s } = await init();
      try {
        const call = await fetch(URL_, {
          method: 'POST',
          headers: postHeaders(s),
          body: rpc('ask-1', 'tools/call', { name: 'ask', arguments: { question: 'favourite colour?' } }),
        });
        assert.equal(call.status, 200);
        assert.match(call.headers.get('content-type') ?? '', /^text\/event-stream\b/);
        const events = new SseReader(call.body!);
        const req = await events.next();
        assert.equal(req?.method, 'elicitation/create');
        assert.ok(req.id !== undefined && req.id !== null, 'a server request carries an id');
        assert.equal(req.params.message, 'favourite colour?');

        const answer = await send(
          URL_,
          'POST',
          postHeaders(s),
          JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { action: 'accept', content: { answer: 'teal' } } }),
        );
        assert.equal(answer.status, 202, answer.text);
        assert.equal(answer.text, '');

        const res = await events.next();
        assert.equal(res?.id, 'ask-1');
        const text = res!.result.content[0].text as string;
        assert.deepEqual(JSON.parse(text), { action: 'accept', content: { answer: 'teal' } });
        assert.equal(await events.next(), undefined, 'the stream ends after the result');
      } finally {
        await send(URL_, 'DELETE', { 'mcp-session-id': s });
      }
    });

    test('a duplicate in-flight request id in the same session -> -32600 for the second', async () => {
      const { sid: s } = await init();
      try {
        // The first request is provably in flight once its elicitation shows up on its stream.
        const first = await fetch(URL_, {
          method: 'POST',
          headers: postHeaders(s),
          body: rpc(42, 'tools/call', { name: 'ask', arguments: { question: 'q' } }),
        });
        const events = new SseReader(first.body!);
        const elicit = await events.next();
        assert.equal(elicit?.method, 'elicitation/create');

        const dup = await send(URL_, 'POST', postHeaders(s), rpc(42, 'tools/call', { name: 'echo', arguments: { text: 'dup' } }));
        assert.equal(dup.status, 200, dup.text);
        const msg = (
          dup.headers.get('content-type')?.startsWith('text/event-stream') ? sseMessages(dup.text).at(-1) : JSON.parse(dup.text)
        ) as Record<string, any>;
        assert.equal(msg.id, 42);
        assert.equal(msg.error?.code, -32600, dup.text);
        assert.match(msg.error.message, /already in flight/);

        // The first request is unharmed.
        await send(URL_, 'POST', postHeaders(s), JSON.stringify({ jsonrpc: '2.0', id: elicit.id, result: { action: 'decline' } }));
        const res = await events.next();
        assert.equal(res?.id, 42);
        assert.deepEqual(JSON.parse(res!.result.content[0].text), { action: 'decline' });

        // Once finished, the id may be used again.
        const again = await send(URL_, 'POST', postHeaders(s), rpc(42, 'tools/call', { name: 'echo', arguments: { text: 'again' } }));
        assert.equal(resultOf(again).content[0].text, 'again');
      } finally {
        await send(URL_, 'DELETE', { 'mcp-session-id': s });
      }
    });
  });

  describe('--max-body 1KiB', () => {
    let small: BerthProcess;
    before(async () => {
      small = await runBerth([...FLAGS, '--warm-pool', '1', '--max-body', '1KiB'], PROBE_ABS);
    });
    after(async () => {
      await small?.stop();
    });

    /** An initialize body padded to exactly n bytes. */
    function initOfSize(n: number): string {
      const base = JSON.parse(initBody()) as { params: { clientInfo: { name: string } } };
      base.params.clientInfo.name = '';
      const bare = JSON.stringify(base);
      base.params.clientInfo.name = 'x'.repeat(n - Buffer.byteLength(bare));
      const s = JSON.stringify(base);
      assert.equal(Buffer.byteLength(s), n);
      return s;
    }

    test('a body of exactly 1 KiB is accepted', async () => {
      const r = await send(small.url, 'POST', postHeaders(), initOfSize(1024));
      assert.equal(r.status, 200, r.text);
      const s = r.headers.get('mcp-session-id');
      if (s) await send(small.url, 'DELETE', { 'mcp-session-id': s });
    });

    test('a body over 1 KiB -> 413 naming the limit, and berth still serves', async () => {
      const r = await send(small.url, 'POST', postHeaders(), initOfSize(1025));
      assertRpcError(r, 413, -32000, /Payload Too Large.*1024/);
      assert.equal(r.headers.get('mcp-session-id'), null);
      const ok = await send(small.url, 'POST', postHeaders(), initBody());
      assert.equal(ok.status, 200, ok.text);
    });
  });
});
