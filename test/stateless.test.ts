// berth --stateless hosting the probe server: no sessions, a shared warm pool, nothing server-initiated.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/stateless.test.ts
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ElicitRequestSchema, type Progress } from '@modelcontextprotocol/sdk/types.js';
import { ACCEPT_BOTH, ROOT, connect, initBody, runBerth, sseMessages, textOf, type BerthProcess } from './helpers/berth.ts';

// Absolute paths: the server runs in its private working directory, not in the repository.
const PROBE_ABS = [process.execPath, '--import', import.meta.resolve('tsx'), join(ROOT, 'test/fixtures/probe-server.ts')];
const MiB = 1024 * 1024;
const POST_HEADERS = { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-protocol-version': '2025-11-25' };

function rpc(id: number | string, method: string, params?: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
}

async function post(
  url: string,
  body: string,
): Promise<{ status: number; contentType: string; messages: Array<Record<string, any>>; text: string }> {
  const r = await fetch(url, { method: 'POST', headers: POST_HEADERS, body });
  const text = await r.text();
  const contentType = r.headers.get('content-type') ?? '';
  const messages = (contentType.startsWith('text/event-stream') ? sseMessages(text) : text ? [JSON.parse(text)] : []) as Array<
    Record<string, any>
  >;
  return { status: r.status, contentType, messages, text };
}

/** The probe's `big` content: "abc...xyz0...9" repeated, cut at `bytes`. */
function bigText(bytes: number): string {
  const unit = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes);
}

describe('stateless runtime', { timeout: 60_000 }, () => {
  let berth: BerthProcess;
  const clients: Client[] = [];

  async function client(capabilities = {}): Promise<Client> {
    const { client: c } = await connect(berth.url, capabilities);
    clients.push(c);
    return c;
  }

  before(async () => {
    // One pooled server: every request below shares it, which is what makes same-id collisions possible.
    berth = await runBerth(['--stateless', '--warm-pool', '1', '--drain-timeout', '1s'], PROBE_ABS);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await berth?.stop();
  });

  test('initialize answers without an Mcp-Session-Id', async () => {
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' },
      body: initBody(1, '2025-06-18'),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('mcp-session-id'), null);
    const body = (await r.json()) as { id: number; result: { protocolVersion: string; serverInfo: { name: string } } };
    assert.equal(body.id, 1);
    assert.equal(body.result.protocolVersion, '2025-06-18', 'the client’s supported version is kept');
    assert.equal(body.result.serverInfo.name, 'probe');
  });

  test('the SDK client connects without a session, lists tools and calls echo', async () => {
    const { client: c, transport } = await connect(berth.url);
    clients.push(c);
    assert.equal(transport.sessionId, undefined, 'no session id was handed out');
    const { tools } = await c.listTools();
    const names = tools.map((t) => t.name);
    for (const n of ['echo', 'ask', 'progress', 'big']) assert.ok(names.includes(n), `tools/list has ${n}`);
    assert.equal(textOf(await c.callTool({ name: 'echo', arguments: { text: 'hello stateless' } })), 'hello stateless');
  });

  test('two clients using the same JSON-RPC ids concurrently each get their own answers', async () => {
    const [a, b] = await Promise.all([client(), client()]);
    // Fresh SDK clients number their requests identically, so every pair below shares an id.
    const n = 15;
    const calls = [];
    for (let i = 0; i < n; i++) {
      calls.push(a.callTool({ name: 'echo', arguments: { text: `A${i}` } }).then(textOf));
      calls.push(b.callTool({ name: 'echo', arguments: { text: `B${i}` } }).then(textOf));
    }
    const got = await Promise.all(calls);
    for (let i = 0; i < n; i++) {
      assert.equal(got[2 * i], `A${i}`);
      assert.equal(got[2 * i + 1], `B${i}`);
    }
  });

  test('two raw POSTs with id 1 in flight at once each get their own result', async () => {
    const call = (steps: number) => post(berth.url, rpc(1, 'tools/call', { name: 'progress', arguments: { steps } }));
    const [long, short] = await Promise.all([call(40), call(20)]);
    for (const [r, steps] of [
      [long, 40],
      [short, 20],
    ] as const) {
      assert.equal(r.status, 200, r.text);
      const last = r.messages.at(-1)!;
      assert.equal(last.id, 1);
      assert.equal(last.result?.content?.[0]?.text, `done ${steps}`, r.text);
    }
  });

  test('ask (elicitation) fails fast with an error that says the runtime is stateless', async () => {
    const c = await client({ elicitation: { form: {} } });
    let elicited = 0;
    c.setRequestHandler(ElicitRequestSchema, async () => {
      elicited++;
      return { action: 'accept', content: { answer: 'should never be asked' } };
    });
    const t0 = Date.now();
    const outcome = await c.callTool({ name: 'ask', arguments: { question: 'anyone there?' } }, undefined, { timeout: 10_000 }).then(
      (r) => ({ isError: r.isError === true, text: textOf(r) }),
      (e: Error) => ({ isError: true, text: e.message }),
    );
    const ms = Date.now() - t0;
    assert.ok(ms < 3000, `failed fast (${ms} ms)`);
    assert.equal(outcome.isError, true, `the call fails: ${outcome.text}`);
    assert.match(outcome.text, /stateless/i, `the error names the cause: ${outcome.text}`);
    assert.equal(elicited, 0, 'no elicitation reached the client');
  });

  test('GET and DELETE -> 405 with Allow: POST', async () => {
    for (const [method, headers] of [
      ['GET', { accept: 'text/event-stream' }],
      ['DELETE', {}],
    ] as const) {
      const r = await fetch(berth.url, { method, headers });
      const text = await r.text();
      assert.equal(r.status, 405, `${method}: ${text}`);
      assert.match(r.headers.get('allow') ?? '', /\bPOST\b/);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json\b/);
      const body = JSON.parse(text) as { error: { code: number; message: string } };
      assert.equal(body.error.code, -32000);
      assert.match(body.error.message, /Method Not Allowed.*stateless/);
    }
  });

  test('progress notifications still reach onprogress', async () => {
    const c = await client();
    const seen: Progress[] = [];
    const r = await c.callTool({ name: 'progress', arguments: { steps: 5 } }, undefined, { onprogress: (p) => seen.push(p) });
    assert.equal(textOf(r), 'done 5');
    assert.deepEqual(
      seen.map((p) => [p.progress, p.total]),
      [1, 2, 3, 4, 5].map((i) => [i, 5]),
    );
  });

  test('concurrent requests from two clients with the same progressToken each get only their own progress', async () => {
    // Unrelated clients pick tokens independently (the SDK uses the request id), so they collide on a shared server.
    const call = (steps: number) =>
      post(berth.url, rpc(1, 'tools/call', { name: 'progress', arguments: { steps }, _meta: { progressToken: 'same-token' } }));
    const [a, b] = await Promise.all([call(12), call(6)]);
    for (const [r, steps] of [
      [a, 12],
      [b, 6],
    ] as const) {
      assert.equal(r.status, 200, r.text);
      const progress = r.messages.filter((m) => m.method === 'notifications/progress');
      assert.deepEqual(
        progress.map((m) => [m.params.progressToken, m.params.progress, m.params.total]),
        Array.from({ length: steps }, (_, i) => ['same-token', i + 1, steps]),
        `the ${steps}-step call's stream: ${r.text.slice(0, 2000)}`,
      );
      assert.equal(r.messages.at(-1)?.result?.content?.[0]?.text, `done ${steps}`);
    }
  });

  test('a 2 MiB result arrives intact', async () => {
    const c = await client();
    const r = await c.callTool({ name: 'big', arguments: { bytes: 2 * MiB } });
    const text = textOf(r);
    assert.equal(text.length, 2 * MiB);
    assert.ok(text === bigText(2 * MiB), 'every byte matches');
  });
});
