// The relay layer on its own: MessageRelay over a StdioChannel to a real stdio MCP server (the probe fixture, SDK v1),
// the exchanges writing to real ServerResponses of a loopback node:http server, and HttpUpstream forwarding to the
// probe fixture serving Streamable HTTP (the official SDK's transport). No berth process: a failure here names the
// relay module, not the whole request path.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Exchange } from '../src/relay/exchange.ts';
import { HttpUpstream } from '../src/relay/http-upstream.ts';
import { StreamsSchema } from '../src/config/schema.ts';
import type { MessageRelay } from '../src/relay/message-relay.ts';
import { RelayUpstream } from '../src/relay/relay-upstream.ts';
import { ErrorCode, isRequest, type JsonRpcMessage, type JsonRpcRequest } from '../src/wire/jsonrpc.ts';
import { textOf } from './helpers/berth.ts';
import {
  freePort,
  gone,
  handshake2025,
  loopback,
  PROBE,
  postJson,
  relayOver,
  ROOT,
  SseReader,
  stdioServer,
  waitFor,
  type Loopback,
  type StdioServer,
} from './helpers/unit.ts';

const call = (id: string | number, name: string, args: Record<string, unknown>, meta?: Record<string, unknown>): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) },
});

/** The tools/call messages the server was sent for tool `name`, as the relay rewrote them. */
const forwarded = (srv: StdioServer, name: string) =>
  srv.sent.filter((m): m is JsonRpcRequest => isRequest(m) && m.method === 'tools/call' && m.params?.name === name);

/** Hands each POST to the upstream as a 2025 client's POST, with this JSON window. */
function post2025Handler(up: RelayUpstream | HttpUpstream, jsonWindow: () => number) {
  return (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const parsed = JSON.parse(body.toString()) as JsonRpcMessage | JsonRpcMessage[];
    const messages = Array.isArray(parsed) ? parsed : [parsed];
    return up.post2025(req, res, { messages, batch: Array.isArray(parsed), body, priming: false, jsonWindow: jsonWindow() });
  };
}

describe('MessageRelay: a stateless relay (one server shared by unrelated clients)', () => {
  let srv: StdioServer;
  let relay: MessageRelay;
  let lb: Loopback;
  before(async () => {
    srv = stdioServer(PROBE);
    relay = relayOver(srv, { stateless: true });
    const up = new RelayUpstream(relay, srv.channel);
    const init = await up.initialize({ protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'unit', version: '1' } });
    assert.equal((init.result?.serverInfo as { name: string }).name, 'probe');
    lb = await loopback();
    lb.handle = post2025Handler(up, () => 60_000);
  });
  after(async () => {
    relay.close(ErrorCode.SessionEnded, 'test over');
    await lb.close();
    await srv.stop();
  });

  test('two clients using the same request id at once each get their own answer; the server sees two distinct ids', async () => {
    const [slow, fast] = await Promise.all([
      postJson(lb.url, call(1, 'sleep', { ms: 300 })),
      postJson(lb.url, call(1, 'sleep', { ms: 20 })),
    ]);
    const [a, b] = await Promise.all([slow.json(), fast.json()]);
    assert.equal(a.id, 1);
    assert.equal(b.id, 1);
    assert.equal(textOf(a.result), 'slept 300');
    assert.equal(textOf(b.result), 'slept 20');
    const ids = forwarded(srv, 'sleep').map((m) => m.id);
    assert.equal(ids.length, 2);
    assert.ok(
      ids.every((id) => typeof id === 'number'),
      `rewritten to berth's numeric ids: ${JSON.stringify(ids)}`,
    );
    assert.notEqual(ids[0], ids[1]);
    assert.equal(relay.inFlightCount, 0);
  });
});

describe('MessageRelay: a stateful relay (one session)', () => {
  let srv: StdioServer;
  let relay: MessageRelay;
  let up: RelayUpstream;
  let lb: Loopback;
  let jsonWindow = 60_000;
  before(async () => {
    srv = stdioServer(PROBE);
    relay = relayOver(srv);
    up = new RelayUpstream(relay, srv.channel);
    await handshake2025(relay, { elicitation: {} });
    lb = await loopback();
    lb.handle = post2025Handler(up, () => jsonWindow);
  });
  after(async () => {
    relay.close(ErrorCode.SessionEnded, 'test over');
    await lb.close();
    await srv.stop();
  });

  test('an id already in flight in the session is refused; the first call still gets its answer, and the id is free after', async () => {
    const first = postJson(lb.url, call(7, 'sleep', { ms: 300 }));
    await waitFor(() => forwarded(srv, 'sleep').some((m) => (m.params!.arguments as { ms: number }).ms === 300), 'the first call sent');
    const dup = await (await postJson(lb.url, call(7, 'echo', { text: 'dup' }))).json();
    assert.equal(dup.id, 7);
    assert.equal(dup.error.code, ErrorCode.InvalidRequest);
    assert.match(dup.error.message, /already in flight/);
    assert.equal(forwarded(srv, 'echo').length, 0, 'the refused request never reached the server');
    assert.equal(textOf((await (await first).json()).result), 'slept 300');
    const again = await (await postJson(lb.url, call(7, 'echo', { text: 'free again' }))).json();
    assert.equal(textOf(again.result), 'free again');
  });

  test('progress tokens are rewritten per call and each notification reaches the call that asked for it', async () => {
    const before = forwarded(srv, 'progress').length;
    // Both clients pick the same token: the relay must still tell their progress apart.
    const [r2, r5] = await Promise.all([
      postJson(lb.url, call('p2', 'progress', { steps: 2, delayMs: 20 }, { progressToken: 'tok' })),
      postJson(lb.url, call('p5', 'progress', { steps: 5, delayMs: 20 }, { progressToken: 'tok' })),
    ]);
    for (const r of [r2, r5]) assert.match(r.headers.get('content-type')!, /^text\/event-stream/, 'progress upgrades the response');
    const [m2, m5] = await Promise.all([new SseReader(r2).rest(), new SseReader(r5).rest()]);
    const progress = (ms: Array<Record<string, unknown>>) =>
      ms.filter((m) => m.method === 'notifications/progress').map((m) => m.params as { progressToken: unknown; total: number });
    assert.deepEqual(
      progress(m2).map((p) => [p.progressToken, p.total]),
      [
        ['tok', 2],
        ['tok', 2],
      ],
    );
    assert.deepEqual(
      progress(m5).map((p) => [p.progressToken, p.total]),
      Array.from({ length: 5 }, () => ['tok', 5]),
    );
    assert.equal(textOf(m2.at(-1)!.result), 'done 2');
    assert.equal(textOf(m5.at(-1)!.result), 'done 5');
    const tokens = forwarded(srv, 'progress')
      .slice(before)
      .map((m) => (m.params!._meta as { progressToken: unknown }).progressToken);
    assert.equal(tokens.length, 2);
    assert.ok(
      tokens.every((t) => typeof t === 'number'),
      `the server sees berth's tokens, not the clients': ${JSON.stringify(tokens)}`,
    );
    assert.notEqual(tokens[0], tokens[1]);
  });

  test("a server's elicitation goes to the call whose client is still connected, and the answer carries that call to its result", async () => {
    // Call A: its client leaves while it runs (a 2025 exchange is not cancelled by that; it stays in flight).
    let exchangeA: Exchange | undefined;
    lb.handle = (_req, res, body) => {
      exchangeA = new Exchange(res, { batch: false, streams: relay.streams, priming: false, jsonWindow: 60_000 });
      relay.fromClient([JSON.parse(body.toString())], exchangeA);
    };
    const leave = new AbortController();
    const a = postJson(lb.url, call('a', 'sleep', { ms: 3000 }), leave.signal).catch(() => 'aborted');
    await waitFor(() => forwarded(srv, 'sleep').some((m) => (m.params!.arguments as { ms: number }).ms === 3000), 'call A sent');
    leave.abort();
    assert.equal(await a, 'aborted');
    await waitFor(() => exchangeA && !exchangeA.live, "call A's connection seen closed");
    assert.equal(relay.inFlightCount, 1, 'call A is still in flight');
    // Call B asks; the question must come on B's response, not A's (older, but with nobody listening).
    lb.handle = post2025Handler(up, () => jsonWindow);
    const b = await postJson(lb.url, call('b', 'ask', { question: 'colour?' }));
    assert.match(b.headers.get('content-type')!, /^text\/event-stream/);
    const stream = new SseReader(b);
    const ask = await stream.next((m) => m.method === 'elicitation/create', 'the elicitation');
    assert.equal((ask.params as { message: string }).message, 'colour?');
    assert.equal(relay.pendingServerRequests, 1);
    // The answer is a POST of its own (202, no body), as a 2025 client sends it.
    const answered = await postJson(lb.url, { jsonrpc: '2.0', id: ask.id, result: { action: 'accept', content: { answer: 'teal' } } });
    assert.equal(answered.status, 202);
    const result = await stream.next((m) => m.id === 'b', 'the result of call B');
    assert.deepEqual(JSON.parse(textOf(result.result)), { action: 'accept', content: { answer: 'teal' } });
    assert.equal(relay.pendingServerRequests, 0);
    assert.ok(!stream.messages.some((m) => m.method === 'notifications/cancelled'));
    // The client of call A cancels it (a 2025 notification): the server hears of it under its own id for the call.
    const idA = forwarded(srv, 'sleep').find((m) => (m.params!.arguments as { ms: number }).ms === 3000)!.id;
    assert.equal((await postJson(lb.url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'a' } })).status, 202);
    const cancel = srv.sent.find((m) => (m as { method?: string }).method === 'notifications/cancelled');
    assert.deepEqual((cancel as { params?: unknown }).params, { requestId: idA });
    assert.equal(relay.inFlightCount, 0);
  });

  test('a quick answer is plain JSON within the JSON window; a slower one is upgraded to a resumable SSE stream', async () => {
    jsonWindow = 5000;
    const quick = await postJson(lb.url, call('q', 'echo', { text: 'quick' }));
    assert.match(quick.headers.get('content-type')!, /^application\/json/);
    const body = await quick.json();
    assert.equal(body.id, 'q');
    assert.equal(textOf(body.result), 'quick');

    jsonWindow = 50;
    const slow = await postJson(lb.url, call('s', 'sleep', { ms: 400 }));
    assert.match(slow.headers.get('content-type')!, /^text\/event-stream/);
    const reader = new SseReader(slow);
    const messages = await reader.rest();
    assert.equal(messages.length, 1);
    assert.equal(messages[0]!.id, 's');
    assert.equal(textOf(messages[0]!.result), 'slept 400');
    assert.match(reader.ids[0]!, /^[A-Za-z0-9_-]{16}\.\d+$/, 'the event has an id a client can resume from');

    jsonWindow = 0;
    const streamed = await postJson(lb.url, call('z', 'echo', { text: 'at once' }));
    assert.match(streamed.headers.get('content-type')!, /^text\/event-stream/, 'a 0 window streams every call');
    assert.equal(textOf((await new SseReader(streamed).rest())[0]!.result), 'at once');
    jsonWindow = 60_000;
  });

  test("a 2026 client's request is answered with the client's own id, and closing its response cancels it at the server", async () => {
    let ended = 0;
    lb.handle = async (req, res, body) => {
      const request = JSON.parse(body.toString()) as JsonRpcRequest;
      const window = request.params?.name === 'echo' ? 5000 : 0;
      await up.request2026(req, res, { request, body, jsonWindow: window, keepAlive: 0 });
      ended++;
    };
    const quick = await postJson(lb.url, call('mine-1', 'echo', { text: '2026' }));
    assert.match(quick.headers.get('content-type')!, /^application\/json/);
    const q = await quick.json();
    assert.equal(q.id, 'mine-1');
    assert.equal(textOf(q.result), '2026');
    assert.notEqual(forwarded(srv, 'echo').at(-1)!.id, 'mine-1', 'the server saw a rewritten id');

    const leave = new AbortController();
    const r = await postJson(lb.url, call('mine-2', 'sleep', { ms: 20_000 }), leave.signal);
    assert.match(r.headers.get('content-type')!, /^text\/event-stream/);
    const sent = await waitFor(
      () => forwarded(srv, 'sleep').find((m) => (m.params!.arguments as { ms: number }).ms === 20_000),
      'the long call at the server',
    );
    assert.equal(relay.inFlightCount, 1);
    leave.abort();
    // It names the call by the id the server knows it by.
    await waitFor(
      () =>
        srv.sent.some(
          (m) =>
            (m as { method?: string }).method === 'notifications/cancelled' &&
            (m as { params: { requestId: unknown } }).params.requestId === sent.id,
        ),
      'a cancellation of that call sent to the server',
    );
    await waitFor(() => relay.inFlightCount === 0 && ended === 2, 'the call closed out and request2026 resolved');
    lb.handle = post2025Handler(up, () => jsonWindow);
  });
});

describe('MessageRelay: the handshake fence (a server that answers the post-initialized ping late)', () => {
  const LATE_PING = [
    process.execPath,
    '--import',
    import.meta.resolve('tsx'),
    new URL('./fixtures/late-ping-server.ts', import.meta.url).pathname,
  ];
  let srv: StdioServer;
  let relay: MessageRelay;
  let lb: Loopback;
  /** initialize + notifications/initialized, without waiting for the ping answer (a client's call may come at once). */
  async function start(env: Record<string, string>): Promise<void> {
    srv = stdioServer(LATE_PING, env);
    relay = relayOver(srv);
    const init = await relay.call('initialize', {
      protocolVersion: '2025-11-25',
      capabilities: { elicitation: {}, roots: {} },
      clientInfo: { name: 'unit', version: '1' },
    });
    assert.equal((init.result?.serverInfo as { name: string }).name, 'late-ping');
    relay.notify('notifications/initialized');
    lb = await loopback();
    lb.handle = post2025Handler(new RelayUpstream(relay, srv.channel), () => 60_000);
  }
  async function stop(): Promise<void> {
    relay.close(ErrorCode.SessionEnded, 'test over');
    await lb.close();
    await srv.stop();
  }

  test(
    "a tool's elicitation sent before the ping answer goes to that call's POST stream, not the GET stream",
    { timeout: 30_000 },
    async () => {
      await start({});
      try {
        const r = await postJson(lb.url, call('c1', 'ask', {}));
        assert.match(r.headers.get('content-type')!, /^text\/event-stream/);
        const stream = new SseReader(r);
        const ask = await stream.next((m) => m.method === 'elicitation/create', "the elicitation on the call's stream");
        await relay.settled;
        assert.equal((await postJson(lb.url, { jsonrpc: '2.0', id: ask.id, result: { action: 'accept', content: {} } })).status, 202);
        const result = await stream.next((m) => m.id === 'c1', 'the result of the call');
        assert.deepEqual(JSON.parse(textOf(result.result)), { action: 'accept', content: {} });
      } finally {
        await stop();
      }
    },
  );

  test(
    'a roots/list the server asks on its own before the ping answer goes to the GET stream even while a call is in flight',
    { timeout: 30_000 },
    async () => {
      await start({ LATE_PING_ROOTS: '1' });
      try {
        const r = await postJson(lb.url, call('c2', 'ask', {}));
        const stream = new SseReader(r);
        const ask = await stream.next((m) => m.method === 'elicitation/create', "the call's elicitation");
        await waitFor(() => relay.pendingServerRequests === 2, 'roots/list and the elicitation both pending');
        assert.ok(!stream.messages.some((m) => m.method === 'roots/list'), "roots/list is not on the call's stream");
        // The GET stream was kept for roots/list until one opens.
        lb.handle = (_req, res) => relay.openGet(res, { 'content-type': 'text/event-stream' }, false);
        const g = new SseReader(await fetch(lb.url));
        const rootsId = (await g.next((m) => m.method === 'roots/list', 'roots/list on the GET stream')).id;
        lb.handle = post2025Handler(new RelayUpstream(relay, srv.channel), () => 60_000);
        assert.equal((await postJson(lb.url, { jsonrpc: '2.0', id: rootsId, result: { roots: [] } })).status, 202);
        await relay.settled;
        assert.equal((await postJson(lb.url, { jsonrpc: '2.0', id: ask.id, result: { action: 'decline' } })).status, 202);
        assert.deepEqual(JSON.parse(textOf((await stream.next((m) => m.id === 'c2', 'the result')).result)), { action: 'decline' });
      } finally {
        await stop();
      }
    },
  );
});

describe('MessageRelay.close', () => {
  let srv: StdioServer;
  let relay: MessageRelay;
  let lb: Loopback;
  before(async () => {
    srv = stdioServer(PROBE);
    relay = relayOver(srv);
    await handshake2025(relay);
    lb = await loopback();
    lb.handle = post2025Handler(new RelayUpstream(relay, srv.channel), () => 60_000);
  });
  after(async () => {
    await lb.close();
    await srv.stop();
  });

  test('fails every call in flight, and berth’s own calls, with the given code; later calls fail at once, unsent', async () => {
    const busy: boolean[] = [];
    relay.on('busy', (b) => busy.push(b));
    const client = postJson(lb.url, call('long', 'sleep', { ms: 20_000 }));
    const own = relay.call('tools/call', { name: 'sleep', arguments: { ms: 20_001 } });
    await waitFor(() => forwarded(srv, 'sleep').length === 2, 'both calls at the server');
    assert.equal(relay.inFlightCount, 1, "berth's own call is not a client call");
    relay.close(ErrorCode.SessionEnded, 'Session ended: unit test');
    const answer = await (await client).json();
    assert.deepEqual(answer, { jsonrpc: '2.0', id: 'long', error: { code: ErrorCode.SessionEnded, message: 'Session ended: unit test' } });
    const mine = await own;
    assert.equal(mine.error?.code, ErrorCode.SessionEnded);
    assert.equal(relay.inFlightCount, 0);
    assert.deepEqual(busy, [true, false]);

    const later = await (await postJson(lb.url, call('later', 'echo', { text: 'x' }))).json();
    assert.equal(later.error.code, ErrorCode.SessionEnded);
    assert.equal(later.error.message, 'Session ended: unit test');
    assert.equal(forwarded(srv, 'echo').length, 0, 'nothing reaches the server after close');
  });
});

describe('HttpUpstream: forwarding to a Streamable HTTP server (the probe fixture, SDK transport) on loopback', () => {
  let server: ReturnType<typeof spawn>;
  let exited: Promise<unknown>;
  let upstream: HttpUpstream;
  let lb: Loopback;
  let port: number;
  const busy: boolean[] = [];
  before(async () => {
    port = await freePort();
    server = spawn(PROBE[0]!, [...PROBE.slice(1), '--http'], { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
    exited = new Promise((r) => server.once('exit', r));
    upstream = new HttpUpstream(port, { stateless: false, streams: StreamsSchema.parse({}), requestTimeout: 0, serverRequestTimeout: 0 });
    upstream.on('busy', (b) => busy.push(b));
    await upstream.waitReady(20_000, exited);
    lb = await loopback();
    lb.handle = (req, res, body) => {
      if (req.method === 'GET') return upstream.get2025(req, res, { sessionId: 'berth-session' });
      if (req.method === 'DELETE') return void res.writeHead(204).end();
      const parsed = JSON.parse(body.toString()) as JsonRpcMessage | JsonRpcMessage[];
      const messages = Array.isArray(parsed) ? parsed : [parsed];
      return upstream.post2025(req, res, {
        messages,
        batch: Array.isArray(parsed),
        body,
        sessionId: 'berth-session',
        priming: false,
        jsonWindow: 0,
      });
    };
  });
  after(async () => {
    await upstream.close();
    await lb.close();
    server.kill('SIGKILL');
    await exited;
  });

  test("the client sees berth's session id, berth keeps the server's; calls are counted in flight for their whole response", async () => {
    const client = new Client({ name: 'unit', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(lb.url));
    await client.connect(transport);
    try {
      assert.equal(transport.sessionId, 'berth-session');
      assert.match(upstream.upstreamSessionId ?? '', /^[0-9a-f-]{36}$/, "the server's own session id, kept by berth");
      // The client may read a JSON answer a moment before berth sees the upstream body end: wait for the count.
      await waitFor(() => upstream.inFlight === 0 && busy.length === 2, 'initialize counted out');
      assert.deepEqual(busy, [true, false], 'initialize was a call; notifications/initialized and the GET stream are not');
      const who = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} })));
      assert.equal(who.pid, server.pid, 'forwarded to that very process');
      await waitFor(() => upstream.inFlight === 0 && busy.length === 4, 'whoami counted out');
      assert.deepEqual(busy, [true, false, true, false]);

      busy.length = 0;
      const calls = [400, 600].map((ms) => client.callTool({ name: 'sleep', arguments: { ms } }));
      await waitFor(() => upstream.inFlight === 2, 'both calls in flight');
      assert.deepEqual(busy, [true], 'busy once for two overlapping calls');
      const texts = (await Promise.all(calls)).map(textOf);
      assert.deepEqual(texts, ['slept 400', 'slept 600']);
      await waitFor(() => upstream.inFlight === 0, 'no call in flight');
      assert.deepEqual(busy, [true, false]);
    } finally {
      await client.close();
    }
  });

  test("close() ends the server's session (DELETE) and a request under its id is then refused", async () => {
    const sid = upstream.upstreamSessionId!;
    assert.ok(!gone(server.pid));
    await upstream.close();
    const r = await postJson(`http://127.0.0.1:${port}/mcp`, call(1, 'echo', { text: 'x' }), undefined, {
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-11-25',
    });
    assert.equal(r.status, 404, "the server no longer knows berth's session");
    await r.body?.cancel();
  });
});
