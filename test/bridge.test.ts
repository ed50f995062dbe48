// Bridge A: 2026-07-28 clients served by a 2025-era stdio server (the probe). Elicitation, sampling and roots
// asked by the server become MRTR rounds the pinned SDK v2 client answers with its ordinary handlers; the
// requestState berth mints cannot be forged, replayed or used by another principal.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/bridge.test.ts
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { runBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { call2026 as rawCall } from './helpers/call-2026.ts';
import { principalDigest, requestDigest, RequestStateCodec, type StateClaims } from '../src/security/request-state.ts';

const MODERN = '2026-07-28';

describe('requestState codec', () => {
  const codec = new RequestStateCodec();
  const expected = {
    rt: 'default',
    rs: 'sess-1',
    p: principalDigest('alice'),
    m: 'tools/call',
    d: requestDigest({ name: 'ask', arguments: { q: 1, r: [2] } }),
  };
  const claims: StateClaims = { ...expected, c: 'berth-b1', n: 1, k: { r1: 0 }, exp: Date.now() + 60_000 };
  const token = codec.mint(claims);

  test('an authentic token for this request verifies; argument order does not matter', () => {
    assert.deepEqual(codec.verify(token, { ...expected, d: requestDigest({ arguments: { r: [2], q: 1 }, name: 'ask' }) }), claims);
  });
  test('tampered payload or MAC, another key, or garbage -> refused', () => {
    const [v, payload, mac] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...claims, c: 'berth-b2' })).toString('base64url');
    assert.equal(codec.verify(`${v}.${forged}.${mac}`, expected), undefined);
    assert.equal(codec.verify(`${v}.${payload}.${mac!.slice(0, -2)}AA`, expected), undefined);
    assert.equal(new RequestStateCodec().verify(token, expected), undefined);
    for (const junk of [undefined, 42, '', 'b1..', 'x.y.z']) assert.equal(codec.verify(junk, expected), undefined);
  });
  test('expired -> refused', () => {
    assert.equal(codec.verify(token, expected, claims.exp + 1), undefined);
  });
  test('a foreign principal, runtime session or runtime -> refused', () => {
    assert.equal(codec.verify(token, { ...expected, p: principalDigest('bob') }), undefined);
    assert.equal(codec.verify(token, { ...expected, rs: 'sess-2' }), undefined);
    assert.equal(codec.verify(token, { ...expected, rt: 'other' }), undefined);
  });
  test('other arguments, name or method -> refused', () => {
    assert.equal(codec.verify(token, { ...expected, d: requestDigest({ name: 'ask', arguments: { q: 2, r: [2] } }) }), undefined);
    assert.equal(codec.verify(token, { ...expected, d: requestDigest({ name: 'sample', arguments: { q: 1, r: [2] } }) }), undefined);
    assert.equal(codec.verify(token, { ...expected, m: 'prompts/get' }), undefined);
  });
});

/** The SDK v2 client pinned to 2026-07-28 with ordinary handlers for every server-to-client request. */
async function pinnedClient(url: string, headers: Record<string, string>): Promise<Client> {
  const client = new Client(
    { name: 'bridge-test', version: '1' },
    { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} }, sampling: {}, roots: {} } },
  );
  client.setRequestHandler('elicitation/create', async (r) => ({ action: 'accept', content: { answer: `yes to ${r.params.message}` } }));
  client.setRequestHandler('sampling/createMessage', async () => ({
    role: 'assistant',
    content: { type: 'text', text: 'sampled!' },
    model: 'test-model',
    stopReason: 'endTurn',
  }));
  client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

describe('a 2026 client and a 2025-era server (bridge A)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--auth', 'api-key', '--api-key-env', 'BRIDGE_KEYS'], undefined, {
      BRIDGE_KEYS: 'key-one,key-two',
    });
  });
  after(() => berth?.stop());

  test('elicitation, sampling and roots through MRTR, with state kept in one runtime session', async () => {
    const session = { authorization: 'Bearer key-one', 'berth-runtime-session': randomBytes(16).toString('base64url') };
    const client = await pinnedClient(berth.url, session);
    try {
      assert.equal(textOf(await client.callTool({ name: 'state_set', arguments: { value: 'kept' } })), 'ok');
      assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'ask', arguments: { question: 'ok?' } }))), {
        action: 'accept',
        content: { answer: 'yes to ok?' },
      });
      assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'sample', arguments: { prompt: 'hi' } }))), {
        type: 'text',
        text: 'sampled!',
      });
      assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'roots', arguments: {} }))), {
        roots: [{ uri: 'file:///work', name: 'work' }],
      });
      assert.equal(textOf(await client.callTool({ name: 'state_get', arguments: {} })), 'kept');
    } finally {
      await client.close();
    }
  });

  test('a forged, replayed or foreign requestState is refused in-band with -32602; the owner can still retry', async () => {
    const rs = randomBytes(16).toString('base64url');
    const alice = { authorization: 'Bearer key-one', 'berth-runtime-session': rs };
    const bob = { authorization: 'Bearer key-two', 'berth-runtime-session': rs };
    const first = await rawCall(berth.url, alice, 1, 'ask', { question: 'q' });
    assert.equal(first.body.result?.resultType, 'input_required', JSON.stringify(first.body));
    const [key] = Object.keys(first.body.result.inputRequests);
    assert.equal(first.body.result.inputRequests[key!].method, 'elicitation/create');
    const state: string = first.body.result.requestState;
    const inputResponses = { [key!]: { action: 'accept', content: { answer: 'a' } } };
    const refused = (r: { status: number; body: any }, id: number) => {
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { jsonrpc: '2.0', id, error: { code: -32602, message: 'Invalid or expired requestState' } });
    };
    const [v, payload, mac] = state.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), n: 2 })).toString(
      'base64url',
    );
    refused(
      await rawCall(berth.url, alice, 2, 'ask', { question: 'q' }, { inputResponses, requestState: `${v}.${forgedPayload}.${mac}` }),
      2,
    );
    refused(await rawCall(berth.url, bob, 3, 'ask', { question: 'q' }, { inputResponses, requestState: state }), 3);
    refused(await rawCall(berth.url, alice, 4, 'ask', { question: 'other' }, { inputResponses, requestState: state }), 4);
    const done = await rawCall(berth.url, alice, 5, 'ask', { question: 'q' }, { inputResponses, requestState: state });
    assert.equal(done.body.id, 5);
    assert.equal(done.body.result.resultType, 'complete');
    assert.deepEqual(JSON.parse(done.body.result.content[0].text), { action: 'accept', content: { answer: 'a' } });
    refused(await rawCall(berth.url, alice, 6, 'ask', { question: 'q' }, { inputResponses, requestState: state }), 6);
  });

  test('parallel pooled calls each get a server of their own: every question reaches the call that asked it', async () => {
    const auth = { authorization: 'Bearer key-two' };
    const questions = ['first?', 'second?', 'third?'];
    const firsts = await Promise.all(questions.map((q, i) => rawCall(berth.url, auth, 100 + i, 'ask', { question: q })));
    const answers = await Promise.all(
      firsts.map((first, i) => {
        assert.equal(first.body.result?.resultType, 'input_required', JSON.stringify(first.body));
        const [key, req] = Object.entries(first.body.result.inputRequests as Record<string, { params: { message: string } }>)[0]!;
        assert.equal(req.params.message, questions[i], 'the question of this call, not of a call sharing its server');
        const inputResponses = { [key]: { action: 'accept', content: { answer: `answer ${i}` } } };
        return rawCall(
          berth.url,
          auth,
          200 + i,
          'ask',
          { question: questions[i] },
          { inputResponses, requestState: first.body.result.requestState },
        );
      }),
    );
    answers.forEach((r, i) =>
      assert.deepEqual(JSON.parse(r.body.result.content[0].text), { action: 'accept', content: { answer: `answer ${i}` } }),
    );
  });

  test("the server's log messages reach only a request that asked for them (_meta logLevel), at or above that level", async () => {
    const auth = { authorization: 'Bearer key-two' };
    const logged = async (id: number, logLevel?: string) => {
      const meta = logLevel ? { _meta: { 'io.modelcontextprotocol/logLevel': logLevel } } : {};
      const r = await rawCall(berth.url, auth, id, 'log', { message: `m${id}` }, meta, {});
      return r.text.includes('notifications/message');
    };
    assert.equal(await logged(300), false, 'no logLevel: no log messages');
    assert.equal(await logged(301, 'info'), true);
    assert.equal(await logged(302, 'debug'), true);
    assert.equal(await logged(303, 'error'), false, 'an info message is below error');
  });

  test('a client that did not declare sampling: the server is told -32601, nothing is asked', async () => {
    const r = await rawCall(berth.url, { authorization: 'Bearer key-one' }, 7, 'sample', { prompt: 'x' });
    assert.equal(r.body.id, 7);
    assert.ok(r.body.error || r.body.result?.isError, JSON.stringify(r.body));
    assert.notEqual(r.body.result?.resultType, 'input_required');
  });
});

describe('several requests in a round, several rounds (bridge A)', { timeout: 60_000 }, () => {
  const ROUNDS = [
    process.execPath,
    '--import',
    import.meta.resolve('tsx'),
    fileURLToPath(new URL('./fixtures/legacy-rounds.ts', import.meta.url)),
  ];
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], ROUNDS);
  });
  after(() => berth?.stop());

  test('parallel asks share one input_required; the retry carries the call to the next round and the result', async () => {
    const first = await rawCall(berth.url, {}, 1, 'interview', {}, {}, { elicitation: { form: {} }, sampling: {} });
    const asked = first.body.result.inputRequests as Record<string, { method: string; params: any }>;
    assert.deepEqual(
      Object.values(asked)
        .map((r) => r.method)
        .sort(),
      ['elicitation/create', 'sampling/createMessage'],
      JSON.stringify(first.body),
    );
    const answers = Object.fromEntries(
      Object.entries(asked).map(([k, r]) => [
        k,
        r.method === 'sampling/createMessage'
          ? { role: 'assistant', content: { type: 'text', text: 'carpe' }, model: 'm', stopReason: 'endTurn' }
          : { action: 'accept', content: { answer: 'ada' } },
      ]),
    );
    const second = await rawCall(
      berth.url,
      {},
      2,
      'interview',
      {},
      { inputResponses: answers, requestState: first.body.result.requestState },
      { elicitation: { form: {} }, sampling: {} },
    );
    assert.equal(second.body.id, 2);
    const [key, req] = Object.entries(second.body.result.inputRequests as Record<string, { method: string; params: any }>)[0]!;
    assert.equal(req.params.message, 'city?');
    const done = await rawCall(
      berth.url,
      {},
      3,
      'interview',
      {},
      { inputResponses: { [key]: { action: 'accept', content: { answer: 'paris' } } }, requestState: second.body.result.requestState },
      { elicitation: { form: {} }, sampling: {} },
    );
    assert.equal(done.body.id, 3);
    assert.deepEqual(JSON.parse(done.body.result.content[0].text), ['ada', { type: 'text', text: 'carpe' }, 'paris']);
  });
});

describe('a client that never retries (bridge A)', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--pending-input-timeout', '300ms']);
  });
  after(() => berth?.stop());

  test('after the pending timeout its state is refused and the runtime session serves on', async () => {
    const session = { 'berth-runtime-session': randomBytes(16).toString('base64url') };
    const first = await rawCall(berth.url, session, 1, 'ask', { question: 'q' });
    const { requestState, inputRequests } = first.body.result;
    await new Promise((r) => setTimeout(r, 600));
    const late = await rawCall(
      berth.url,
      session,
      2,
      'ask',
      { question: 'q' },
      { requestState, inputResponses: { [Object.keys(inputRequests)[0]!]: { action: 'accept', content: { answer: 'a' } } } },
    );
    assert.equal(late.body.error?.code, -32602, JSON.stringify(late.body));
    const echo = await rawCall(berth.url, session, 3, 'echo', { text: 'still here' });
    assert.equal(textOf(echo.body.result), 'still here');
  });
});
