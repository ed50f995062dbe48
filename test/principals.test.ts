// Pooled servers never cross principals (issue 13 item 3). The hostile fixture keeps everything its clients told it
// (remember/recall) and every answer it got (heard), so a server shared between two API keys would hand one
// principal's roots, elicitation and sampling answers to the other. Also: a server request that belongs to no call
// (the fixture's startup roots/list, --ask-at-start) reaches a 2025 client's GET stream even while a POST is in
// flight, and is answered by berth for 2026 clients instead of becoming a round of an unrelated call.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/principals.test.ts
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as Client2025 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as Transport2025 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ACCEPT_BOTH, readUntil, runBerth, sseEvents, textOf, type BerthProcess } from './helpers/berth.ts';
import { call2026 } from './helpers/call-2026.ts';

const HOSTILE = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/hostile-server.ts', import.meta.url)),
];
const MODERN = '2026-07-28';
const KEYS = { PRINCIPAL_KEYS: 'key-alice,key-bob,key-carol' };
const AUTH = ['--auth', 'api-key', '--api-key-env', 'PRINCIPAL_KEYS'];
const alice = { authorization: 'Bearer key-alice' };
const bob = { authorization: 'Bearer key-bob' };
const carol = { authorization: 'Bearer key-carol' };

/** What one principal's client answers: every answer names its principal, so a leak is visible in any reply. */
function secretsOf(who: string) {
  return { root: `file:///home/${who}/private`, answer: `${who}-elicited`, sampled: `${who}-sampled`, remembered: `${who}-remembered` };
}

/** The SDK v2 client pinned to 2026-07-28, answering the server's questions (as MRTR rounds) with `who`'s secrets. */
async function modernClient(url: string, who: string, headers: Record<string, string>): Promise<Client> {
  const s = secretsOf(who);
  const client = new Client(
    { name: who, version: '1' },
    { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} }, sampling: {}, roots: {} } },
  );
  client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { answer: s.answer } }));
  client.setRequestHandler('sampling/createMessage', async () => ({
    role: 'assistant',
    content: { type: 'text', text: s.sampled },
    model: 'm',
    stopReason: 'endTurn',
  }));
  client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: s.root, name: who }] }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

const call = async (c: Client | Client2025, name: string, args: Record<string, unknown> = {}) =>
  textOf(await c.callTool({ name, arguments: args }));
const noneOf = (text: string, who: string) => Object.values(secretsOf(who)).filter((secret) => text.includes(secret));

describe('two principals through the 2026 bridge (pooled 2025-era servers)', { timeout: 120_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', ...AUTH], [...HOSTILE, '--ask-at-start'], KEYS);
  });
  after(() => berth?.stop());

  test("neither sees the other's roots, elicitation or sampling answers, nor what it told the server", async () => {
    const a = await modernClient(berth.url, 'alice', alice);
    const b = await modernClient(berth.url, 'bob', bob);
    try {
      // Alice tells a server everything; her own later calls find it (the fixture does keep it: the control).
      assert.equal(JSON.parse(await call(a, 'keep_roots')).roots[0].uri, secretsOf('alice').root);
      assert.match(await call(a, 'keep_ask', { question: 'secret?' }), /alice-elicited/);
      assert.match(await call(a, 'sample', { prompt: 'p' }), /alice-sampled/);
      assert.equal(await call(a, 'remember', { value: secretsOf('alice').remembered }), 'ok');
      const aliceHeard = await call(a, 'heard');
      assert.deepEqual(
        noneOf(aliceHeard, 'alice').sort(),
        [secretsOf('alice').root, secretsOf('alice').answer, secretsOf('alice').sampled].sort(),
        aliceHeard,
      );
      assert.match(await call(a, 'recall'), /alice-remembered/);
      const aliceServer = JSON.parse(await call(a, 'whoami')).instance;

      // Bob, on the same runtime, through the same pool: none of it, from any server he is given.
      for (const tool of ['heard', 'recall', 'keep_roots', 'heard']) {
        const text = await call(b, tool);
        assert.deepEqual(noneOf(text, 'alice'), [], `bob's ${tool}: ${text}`);
      }
      assert.notEqual(JSON.parse(await call(b, 'whoami')).instance, aliceServer, "bob is never given alice's server");

      // Both at once, several calls each (each bridged call holds a server of its own): still nothing crosses.
      const both = await Promise.all(
        [0, 1, 2].flatMap((i) => [
          call(a, 'keep_ask', { question: `a${i}` })
            .then(() => call(a, 'heard'))
            .then((t) => ({ who: 'alice', t })),
          call(b, i % 2 ? 'sample' : 'keep_ask', { ...(i % 2 ? { prompt: `b${i}` } : { question: `b${i}` }) })
            .then(() => call(b, 'heard'))
            .then((t) => ({ who: 'bob', t })),
        ]),
      );
      for (const { who, t } of both) assert.deepEqual(noneOf(t, who === 'alice' ? 'bob' : 'alice'), [], `${who} heard: ${t}`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("a server's startup request is answered by berth (empty roots), never made a round of the call that follows", async () => {
    // A new principal's first call lands on a fresh server, whose startup roots/list comes during berth's handshake.
    // Raw, for what the SDK hides: the resultType of the first answer.
    const first = (await call2026(berth.url, carol, 7, 'heard', {}, {}, { roots: {}, elicitation: { form: {} } })).body;
    assert.equal(first.result?.resultType, 'complete', `not an input_required round: ${JSON.stringify(first)}`);
    const heard = JSON.parse(first.result.content[0].text) as unknown[];
    assert.ok(heard.length > 0, 'the startup ask was answered');
    for (const h of heard) if ((h as { startup?: unknown }).startup !== undefined) assert.deepEqual(h, { startup: { roots: [] } });
  });
});

describe('two principals of a stateless runtime (2025 clients, shared warm pool)', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--stateless', '--isolation', 'process', '--warm-pool', '1', ...AUTH], HOSTILE, KEYS);
  });
  after(() => berth?.stop());

  const client2025 = async (headers: Record<string, string>) => {
    const c = new Client2025({ name: 'stateless', version: '1' });
    await c.connect(new Transport2025(new URL(berth.url), { requestInit: { headers } }));
    return c;
  };

  test('what one principal told a pooled server never reaches another', async () => {
    const a = await client2025(alice);
    const b = await client2025(bob);
    try {
      assert.equal(await call(a, 'remember', { value: secretsOf('alice').remembered }), 'ok');
      assert.match(await call(a, 'recall'), /alice-remembered/, 'the control: her own server keeps it');
      const aliceServer = JSON.parse(await call(a, 'whoami')).instance;
      for (let i = 0; i < 3; i++) assert.doesNotMatch(await call(b, 'recall'), /alice/);
      assert.notEqual(JSON.parse(await call(b, 'whoami')).instance, aliceServer);
      // At once: alice's calls may spread over more servers of her own, bob's never reach hers.
      const both = await Promise.all([0, 1, 2].flatMap(() => [call(a, 'recall'), call(b, 'recall')]));
      both.forEach((t, i) => i % 2 && assert.doesNotMatch(t, /alice/));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('a full stateless pool (max-sessions 2, three principals)', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--stateless', '--isolation', 'process', '--warm-pool', '1', '--max-sessions', '2', ...AUTH], HOSTILE, KEYS);
  });
  after(() => berth?.stop());

  test("makes room by stopping another principal's idle server, never by lending it", async () => {
    const clients = await Promise.all(
      [alice, bob, carol].map(async (headers) => {
        const c = new Client2025({ name: 'full', version: '1' });
        await c.connect(new Transport2025(new URL(berth.url), { requestInit: { headers } }));
        return c;
      }),
    );
    const [a, b, c] = clients;
    try {
      assert.equal(await call(a!, 'remember', { value: secretsOf('alice').remembered }), 'ok');
      const aliceServer = JSON.parse(await call(a!, 'whoami')).instance;
      assert.doesNotMatch(await call(b!, 'recall'), /alice/);
      // Both servers are claimed now: carol waits until one is idle and stopped, then gets a fresh one.
      assert.equal(await call(c!, 'recall'), '[]');
      assert.notEqual(JSON.parse(await call(c!, 'whoami')).instance, aliceServer);
      assert.doesNotMatch(await call(b!, 'recall'), /alice/);
    } finally {
      await Promise.all(clients.map((x) => x.close()));
    }
  });
});

describe('a server request outside any call, 2025 client (stateful)', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], [...HOSTILE, '--ask-at-start']);
  });
  after(() => berth?.stop());

  test('goes to the GET stream although a POST is in flight with a live stream', async () => {
    const V = '2025-11-25';
    const post = (body: unknown, sid?: string) =>
      fetch(berth.url, {
        method: 'POST',
        headers: {
          accept: ACCEPT_BOTH,
          'content-type': 'application/json',
          'mcp-protocol-version': V,
          ...(sid ? { 'mcp-session-id': sid } : {}),
        },
        body: JSON.stringify(body),
      });
    const init = await post({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: V, capabilities: { roots: {}, elicitation: {} }, clientInfo: { name: 'raw', version: '1' } },
    });
    assert.equal(init.status, 200, await init.clone().text());
    await init.text();
    const sid = init.headers.get('mcp-session-id')!;
    const messages = (text: string) =>
      sseEvents(text)
        .filter((e) => e.data)
        .map((e) => JSON.parse(e.data));

    // A call in flight, its stream live: the server's question for it has reached it.
    const ask = await post(
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'keep_ask', arguments: { question: 'for the call' } } },
      sid,
    );
    let callText = await readUntil(ask, (evs) => evs.some((e) => e.data.includes('elicitation/create')));
    const elicit = messages(callText).find((m) => m.method === 'elicitation/create');

    const get = await fetch(berth.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': V } });
    assert.equal(get.status, 200);
    // The handshake ends now, with the call still in flight: the server's startup roots/list belongs to no call.
    const initialized = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
    assert.equal(initialized.status, 202);
    const getText = await readUntil(get, (evs) => evs.some((e) => e.data.includes('roots/list')));
    const roots = messages(getText).find((m) => m.method === 'roots/list');
    assert.equal(
      (await post({ jsonrpc: '2.0', id: roots.id, result: { roots: [{ uri: 'file:///startup', name: 's' }] } }, sid)).status,
      202,
    );

    // The call goes on as before, and its stream never carried the startup request.
    assert.equal(
      (await post({ jsonrpc: '2.0', id: elicit.id, result: { action: 'accept', content: { answer: 'for the call' } } }, sid)).status,
      202,
    );
    callText += await readUntil(ask, (evs) => evs.some((e) => e.data.includes('"result"') && e.data.includes('"id":2')));
    assert.ok(!callText.includes('roots/list'), `the call's stream: ${callText}`);
    void get.body?.cancel();

    const heard = await post({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'heard', arguments: {} } }, sid);
    const text = await heard.text();
    const result = text.startsWith('{') ? JSON.parse(text) : messages(text).find((m) => m.id === 3);
    const got = JSON.parse(result.result.content[0].text) as unknown[];
    assert.deepEqual(
      new Set(got.map((h) => JSON.stringify(h))),
      new Set(
        [{ startup: { roots: [{ uri: 'file:///startup', name: 's' }] } }, { action: 'accept', content: { answer: 'for the call' } }].map(
          (h) => JSON.stringify(h),
        ),
      ),
    );
  });
});
