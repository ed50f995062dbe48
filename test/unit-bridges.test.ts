// The two bridges on their own, each against a real server of the other era:
//   bridge A (Server2025Bridge): 2026-07-28 requests on 2025-era stdio servers (the probe and legacy-rounds fixtures,
//            SDK v1) launched with the process sandbox driver; a server's question becomes input_required.
//   bridge B (bridgeInitialize, Server2026Bridge): a 2025 client on the 2026-07-28 conformance server (SDK v2) as
//            a child process; input_required becomes server->client requests on the call's exchange.
// Responses are real ServerResponses of a loopback node:http server; no berth process runs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Server2025Bridge, type BridgeCaller } from '../src/bridge/server-2025.ts';
import { bridgeInitialize, Server2026Bridge } from '../src/bridge/server-2026.ts';
import { Exchange } from '../src/relay/exchange.ts';
import type { MessageRelay } from '../src/relay/message-relay.ts';
import { INVALID_STATE } from '../src/security/request-state.ts';
import { dispose, launchReady, type Launched } from '../src/session/launch.ts';
import { ErrorCode, isRequest, type JsonRpcMessage, type JsonRpcRequest } from '../src/wire/jsonrpc.ts';
import { textOf } from './helpers/berth.ts';
import {
  handshake2025,
  launchContext,
  loopback,
  PROBE,
  postJson,
  relayOver,
  ROOT,
  SERVER_2026,
  SseReader,
  stdioServer,
  waitFor,
  type Loopback,
  type StdioServer,
} from './helpers/unit.ts';

const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': { elicitation: {}, sampling: {} },
};
const LEGACY_ROUNDS = [process.execPath, '--import', import.meta.resolve('tsx'), `${ROOT}test/fixtures/legacy-rounds.ts`];

/** A 2026 client's tools/call; `extra` adds the MRTR retry fields. */
const call2026 = (id: string, name: string, args: Record<string, unknown>, extra: Record<string, unknown> = {}): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args, _meta: ENVELOPE, ...extra },
});

interface InputRequired {
  resultType: 'input_required';
  inputRequests: Record<string, { method: string; params?: Record<string, unknown> }>;
  requestState: string;
}

describe('bridge A (Server2025Bridge): 2026 clients on 2025-era stdio servers', () => {
  let probe: Launched;
  let rounds: Launched;
  let bridge: Server2025Bridge;
  let lb: Loopback;
  let ended = 0;
  const alice: BridgeCaller = { rs: 'rs-1', principalKey: 'alice', clientCapabilities: { elicitation: {}, sampling: {} }, headers: {} };
  /** Who the next POST comes from (its requestState is bound to the caller). */
  let caller = alice;
  let server: () => Launched;

  before(async () => {
    const [p, r] = await Promise.all([
      launchReady(launchContext({ command: PROBE })),
      launchReady(launchContext({ command: LEGACY_ROUNDS })),
    ]);
    probe = p;
    rounds = r;
    bridge = new Server2025Bridge({
      runtime: 'unit',
      jsonWindow: 10_000,
      keepAlive: 0,
      startupTimeout: 20_000,
      gatherWindow: 25,
      pendingTimeout: 20_000,
      onCallEnded: () => void ended++,
    });
    server = () => probe;
    lb = await loopback();
    lb.handle = (_req, res, body) => bridge.serve(res, JSON.parse(body.toString()) as JsonRpcRequest, caller, async () => server());
  });
  after(async () => {
    await lb.close();
    await Promise.all([dispose(probe, 0), dispose(rounds, 0)]);
  });

  test("server/discover is answered from the server's InitializeResult, as a 2026 DiscoverResult", async () => {
    const r = await postJson(lb.url, { jsonrpc: '2.0', id: 'd', method: 'server/discover', params: { _meta: ENVELOPE } });
    const body = await r.json();
    assert.equal(body.id, 'd');
    assert.equal(body.result.resultType, 'complete');
    assert.ok(body.result.supportedVersions.includes('2026-07-28'));
    assert.ok(body.result.supportedVersions.includes('2025-11-25'));
    assert.equal(body.result._meta['io.modelcontextprotocol/serverInfo'].name, 'probe');
    assert.ok(body.result.capabilities.tools, 'the capabilities the 2025 server declared');
  });

  test('an elicitation becomes input_required; a forged, misbound or replayed requestState is refused; the true retry completes', async () => {
    const first = await (await postJson(lb.url, call2026('c1', 'ask', { question: 'colour?' }))).json();
    assert.equal(first.id, 'c1');
    const ir = first.result as InputRequired;
    assert.equal(ir.resultType, 'input_required');
    const keys = Object.keys(ir.inputRequests);
    assert.equal(keys.length, 1);
    const ask = ir.inputRequests[keys[0]!]!;
    assert.equal(ask.method, 'elicitation/create');
    assert.equal(ask.params?.message, 'colour?');
    assert.equal(bridge.size, 1, 'the call is suspended, its server call still running');
    assert.equal(probe.upstream.relay.inFlightCount, 1);

    const answer = { [keys[0]!]: { action: 'accept', content: { answer: 'teal' } } };
    const retry = (state: string, args: Record<string, unknown> = { question: 'colour?' }) =>
      postJson(lb.url, call2026('c2', 'ask', args, { inputResponses: answer, requestState: state })).then((x) => x.json());
    const refused = (r: { id: unknown; error?: { code: number; message: string } }, why: string) => {
      assert.equal(r.id, 'c2', why);
      assert.deepEqual(r.error, { code: ErrorCode.InvalidParams, message: INVALID_STATE }, why);
    };

    const [head, payload, mac] = ir.requestState.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, p: 'someone-else' })).toString('base64url');
    refused(await retry(`${head}.${forgedPayload}.${mac}`), 'claims changed under the old MAC');
    refused(await retry(`${head}.${payload}.${mac!.slice(0, -2)}${mac!.endsWith('AA') ? 'BB' : 'AA'}`), 'a MAC that does not match');
    refused(await retry('b1.e30.AAAA'), 'a token berth never minted');
    refused(await retry(ir.requestState, { question: 'something else' }), 'the state of another request (other arguments)');
    caller = { ...alice, principalKey: 'mallory' };
    refused(await retry(ir.requestState), 'the state presented by another principal');
    caller = { ...alice, rs: 'rs-2' };
    refused(await retry(ir.requestState), 'the state presented in another runtime session');
    caller = alice;
    assert.equal(bridge.size, 1, 'none of the refusals touched the suspended call');

    const done = await retry(ir.requestState);
    assert.equal(done.id, 'c2');
    assert.equal(done.result.resultType, 'complete');
    assert.deepEqual(JSON.parse(textOf(done.result)), { action: 'accept', content: { answer: 'teal' } });
    assert.equal(bridge.size, 0);
    assert.equal(ended, 1, 'onCallEnded told once');
    await waitFor(() => probe.upstream.relay.inFlightCount === 0, 'the server call finished');

    refused(await retry(ir.requestState), 'the same state again (replay)');
    assert.equal(probe.upstream.relay.inFlightCount, 0, 'a replay reaches nothing');
  });

  test('parallel questions are gathered into one round, a later question into the next; each round state is single-use', async () => {
    server = () => rounds;
    try {
      const r1 = (await (await postJson(lb.url, call2026('i1', 'interview', {}))).json()).result as InputRequired;
      assert.equal(r1.resultType, 'input_required');
      const byMethod = Object.fromEntries(Object.entries(r1.inputRequests).map(([k, v]) => [v.method, k]));
      assert.deepEqual(Object.keys(byMethod).sort(), ['elicitation/create', 'sampling/createMessage'], 'two asks, one round');
      const answers1 = {
        [byMethod['elicitation/create']!]: { action: 'accept', content: { answer: 'Ada' } },
        [byMethod['sampling/createMessage']!]: { role: 'assistant', content: { type: 'text', text: 'onward' }, model: 'm' },
      };
      const r2 = (
        await (await postJson(lb.url, call2026('i2', 'interview', {}, { inputResponses: answers1, requestState: r1.requestState }))).json()
      ).result as InputRequired;
      assert.equal(r2.resultType, 'input_required', 'the second question is a second round');
      const [k2, ask2] = Object.entries(r2.inputRequests)[0]!;
      assert.equal(ask2.params?.message, 'city?');
      assert.notEqual(r2.requestState, r1.requestState);

      const stale = await (
        await postJson(lb.url, call2026('i3', 'interview', {}, { inputResponses: answers1, requestState: r1.requestState }))
      ).json();
      assert.equal(stale.error?.message, INVALID_STATE, "round 1's state cannot answer round 2");

      const done = await (
        await postJson(
          lb.url,
          call2026(
            'i4',
            'interview',
            {},
            { inputResponses: { [k2]: { action: 'accept', content: { answer: 'Oslo' } } }, requestState: r2.requestState },
          ),
        )
      ).json();
      assert.equal(done.id, 'i4');
      assert.deepEqual(JSON.parse(textOf(done.result)), ['Ada', { type: 'text', text: 'onward' }, 'Oslo']);
      assert.equal(bridge.size, 0);
    } finally {
      server = () => probe;
    }
  });

  test('a client that did not declare the capability is not asked: the server hears -32601 and the call completes', async () => {
    caller = { ...alice, clientCapabilities: {} };
    try {
      const r = await (await postJson(lb.url, call2026('n1', 'ask', { question: 'q' }))).json();
      assert.equal(r.result.resultType, 'complete', 'no input_required round');
      assert.equal(r.result.isError, true, 'the probe tool fails on the refused elicitation');
      assert.match(textOf(r.result), /-32601|capability/i);
    } finally {
      caller = alice;
    }
  });
});

describe('bridge B: a 2025 client on a 2026-07-28 stdio server', () => {
  let srv: StdioServer;
  let relay: MessageRelay;
  let bridge: Server2026Bridge;
  let lb: Loopback;
  let tracked = 0;
  let open = 0;
  before(async () => {
    srv = stdioServer(SERVER_2026);
    relay = relayOver(srv);
    bridge = new Server2026Bridge(
      relay,
      { capabilities: { elicitation: {} }, clientInfo: { name: 'unit', version: '1' } },
      {
        answerTimeout: 0,
        track: () => {
          tracked++;
          open++;
          return () => void open--;
        },
      },
    );
    lb = await loopback();
    // A 2025 client's POST, as the stateful runtime hands it to the bridge.
    lb.handle = (_req, res, body) => {
      const parsed = JSON.parse(body.toString()) as JsonRpcMessage | JsonRpcMessage[];
      const messages = Array.isArray(parsed) ? parsed : [parsed];
      const exchange = new Exchange(res, { batch: Array.isArray(parsed), streams: relay.streams, priming: false, jsonWindow: 5000 });
      bridge.fromClient(messages, exchange);
      if (!messages.some(isRequest)) res.writeHead(202).end();
    };
  });
  after(async () => {
    bridge.close();
    relay.close(ErrorCode.SessionEnded, 'test over');
    await lb.close();
    await srv.stop();
  });

  test("bridgeInitialize answers a 2025 initialize from the server's server/discover", async () => {
    const r = await bridgeInitialize(relay, {
      jsonrpc: '2.0',
      id: 'init',
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'unit', version: '1' } },
    });
    assert.equal(r.id, 'init');
    const result = r.result as {
      protocolVersion: string;
      capabilities: Record<string, Record<string, unknown>>;
      serverInfo: { name: string };
    };
    assert.equal(result.protocolVersion, '2025-06-18', "the client's version, which berth serves");
    assert.equal(result.serverInfo.name, 'berth-conformance-2026');
    assert.equal(result.capabilities.tools!.listChanged, true);
    assert.ok(result.capabilities.prompts, 'capabilities come from discover');
    assert.ok(!('subscribe' in (result.capabilities.resources ?? {})), 'no resources/subscribe over the bridge');
    const discover = srv.sent.find((m) => isRequest(m) && m.method === 'server/discover') as JsonRpcRequest;
    assert.equal((discover.params!._meta as Record<string, unknown>)['io.modelcontextprotocol/protocolVersion'], '2026-07-28');

    const odd = await bridgeInitialize(relay, {
      jsonrpc: '2.0',
      id: 2,
      method: 'initialize',
      params: { protocolVersion: '1999-01-01', capabilities: {}, clientInfo: { name: 'unit', version: '1' } },
    });
    assert.equal((odd.result as { protocolVersion: string }).protocolVersion, '2025-11-25', 'an unknown version gets the latest');
  });

  test('bridgeInitialize refuses a server that is not 2026-era (a 2025 server does not know server/discover)', async () => {
    const old = stdioServer(PROBE);
    const oldRelay = relayOver(old);
    try {
      await handshake2025(oldRelay);
      const r = await bridgeInitialize(oldRelay, {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'unit', version: '1' } },
      });
      assert.equal(r.error?.code, ErrorCode.InternalError);
      assert.match(r.error!.message, /did not answer server\/discover as a 2026-07-28 server/);
    } finally {
      oldRelay.close(ErrorCode.SessionEnded, 'test over');
      await old.stop();
    }
  });

  /** The tools/call rounds the server was sent for `name`. */
  const roundsOf = (name: string) =>
    srv.sent.filter((m): m is JsonRpcRequest => isRequest(m) && m.method === 'tools/call' && m.params?.name === name);

  test('input_required becomes an elicitation on the call’s stream; the answer is retried at the server and the result comes back', async () => {
    const tool = 'test_input_required_result_elicitation';
    const r = await postJson(lb.url, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: tool, arguments: {} } });
    assert.match(r.headers.get('content-type')!, /^text\/event-stream/, 'the question upgrades the response');
    const stream = new SseReader(r);
    const ask = await stream.next((m) => m.method === 'elicitation/create', 'the elicitation');
    assert.equal((ask.params as { message: string }).message, 'What is your name?');
    assert.equal(bridge.pending, 1);
    assert.equal(open, 1, 'the call is tracked (keeps the session from idling) while it waits on the client');
    const reply = await postJson(lb.url, { jsonrpc: '2.0', id: ask.id, result: { action: 'accept', content: { name: 'Ada' } } });
    assert.equal(reply.status, 202);
    const result = await stream.next((m) => m.id === 5, 'the result');
    assert.equal(textOf(result.result), 'Hello, Ada!');
    assert.ok(!('resultType' in (result.result as object)), 'a 2025 client gets no resultType');
    assert.equal(bridge.pending, 0);
    await waitFor(() => open === 0, 'the call untracked');

    const rounds = roundsOf(tool);
    assert.equal(rounds.length, 2, 'asked once, retried once');
    assert.notEqual(rounds[0]!.id, rounds[1]!.id, 'each round is a request of its own');
    assert.deepEqual(rounds[1]!.params!.inputResponses, { user_name: { action: 'accept', content: { name: 'Ada' } } });
    const meta = rounds[1]!.params!._meta as Record<string, unknown>;
    assert.equal(meta['io.modelcontextprotocol/protocolVersion'], '2026-07-28');
    assert.deepEqual(meta['io.modelcontextprotocol/clientCapabilities'], { elicitation: {} }, "the 2025 client's capabilities");
  });

  test("two rounds: the server's requestState is carried into each retry", async () => {
    const tool = 'test_input_required_result_multi_round';
    const r = await postJson(lb.url, { jsonrpc: '2.0', id: 'mr', method: 'tools/call', params: { name: tool, arguments: {} } });
    const stream = new SseReader(r);
    const q1 = await stream.next((m) => m.method === 'elicitation/create', 'step 1');
    assert.match((q1.params as { message: string }).message, /^Step 1/);
    await postJson(lb.url, { jsonrpc: '2.0', id: q1.id, result: { action: 'accept', content: { name: 'Ada' } } });
    const q2 = await stream.next((m) => m.method === 'elicitation/create' && m.id !== q1.id, 'step 2');
    assert.match((q2.params as { message: string }).message, /^Step 2/);
    await postJson(lb.url, { jsonrpc: '2.0', id: q2.id, result: { action: 'accept', content: { color: 'blue' } } });
    const result = await stream.next((m) => m.id === 'mr', 'the result');
    assert.equal(textOf(result.result), 'Ada likes blue');
    const states = roundsOf(tool).map((m) => m.params!.requestState);
    assert.equal(states.length, 3);
    assert.equal(states[0], undefined);
    assert.equal(typeof states[1], 'string');
    assert.equal(typeof states[2], 'string');
    assert.notEqual(states[1], states[2], 'each round carries the state the server gave in the round before');
  });

  test('a client cancelling a call waiting on its answer ends its stream without a response; close() fails those still waiting', async () => {
    const tool = 'test_input_required_result_elicitation';
    const r = await postJson(lb.url, { jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: tool, arguments: {} } });
    const stream = new SseReader(r);
    await stream.next((m) => m.method === 'elicitation/create', 'the elicitation');
    await postJson(lb.url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'x' } });
    // "Receivers of cancellation notifications SHOULD ... Not send a response for the cancelled request" (2025-11-25).
    const carried = await stream.rest();
    assert.ok(!carried.some((m) => m.id === 'x'), `no response to the cancelled call: ${JSON.stringify(carried)}`);
    assert.equal(bridge.pending, 0);

    const r2 = await postJson(lb.url, { jsonrpc: '2.0', id: 'y', method: 'tools/call', params: { name: tool, arguments: {} } });
    const stream2 = new SseReader(r2);
    await stream2.next((m) => m.method === 'elicitation/create', 'the elicitation');
    const before = tracked;
    bridge.close();
    const failed = await stream2.next((m) => m.id === 'y', 'the answer once the session ended');
    assert.equal((failed.error as { code: number }).code, ErrorCode.SessionEnded);
    await waitFor(() => open === 0, 'nothing tracked any more');
    assert.equal(tracked, before);
  });
});
