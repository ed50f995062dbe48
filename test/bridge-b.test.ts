// Bridge B: the SDK v1 client (2025, initialize + Mcp-Session-Id) against a real berth hosting a 2026-only server.
// berth answers initialize from server/discover and turns `input_required` into ordinary elicitations.
// Build first: npm run build && node --import tsx --test test/bridge-b.test.ts
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ElicitRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { connect, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const SERVER_2026 = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/server-2026.ts', import.meta.url)),
];

describe('a 2025 client served by a 2026-era server (bridge B)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], SERVER_2026);
  });
  after(() => berth?.stop());

  /** A v1 client whose elicitation handler answers from `answers` by the requested field, recording each message. */
  async function client(answers: Record<string, string>) {
    const { client, transport } = await connect(berth.url, { elicitation: { form: {} } });
    const asked: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      const params = req.params as { message: string; requestedSchema: { properties: Record<string, unknown> } };
      asked.push(params.message);
      const field = Object.keys(params.requestedSchema.properties)[0]!;
      return { action: 'accept', content: { [field]: answers[field]! } };
    });
    return { client, transport, asked };
  }

  test('initialize is answered from server/discover; a plain tool call works', async () => {
    const { client: c, transport } = await client({});
    assert.equal(c.getServerVersion()?.name, 'fixture-2026');
    assert.ok(c.getServerCapabilities()?.tools);
    assert.ok(transport.sessionId);
    const tools = await c.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'greet'));
    const r = await c.callTool({ name: 'echo', arguments: { text: 'hi' } });
    assert.equal(textOf(r), 'hi');
    assert.equal((r as Record<string, unknown>).resultType, undefined, 'resultType is stripped');
    await c.ping();
    await c.setLoggingLevel('debug');
    await c.close();
  });

  test('input_required becomes an elicitation the v1 handler answers; the final result arrives', async () => {
    const { client: c, asked } = await client({ name: 'ada' });
    const r = await c.callTool({ name: 'greet', arguments: { greeting: 'Hello' } });
    assert.match(textOf(r), /^Hello, ada! \(asked by /);
    assert.deepEqual(asked, ['Your name?']);
    await c.close();
  });

  test('two rounds: each round is asked and answered in turn, requestState carried exactly', async () => {
    const { client: c, asked } = await client({ name: 'ada', colour: 'green' });
    const r = await c.callTool({ name: 'survey', arguments: {} });
    assert.equal(textOf(r), 'ada likes green');
    assert.deepEqual(asked, ['Your name?', 'Your colour?']);
    await c.close();
  });

  test('a declined elicitation is passed to the server as the response', async () => {
    const { client: c } = await connect(berth.url, { elicitation: { form: {} } });
    let n = 0;
    c.setRequestHandler(ElicitRequestSchema, async () => (++n < 3 ? { action: 'decline' } : { action: 'accept', content: { name: 'bo' } }));
    // The fixture asks again while it has no name: the decline reached it, and a later round succeeds.
    const r = await c.callTool({ name: 'greet', arguments: { greeting: 'Hi' } });
    assert.match(textOf(r), /^Hi, bo!/);
    assert.equal(n, 3);
    await c.close();
  });

  test('list changes reach the client: berth listens at the server for it (GET stream, tools/list_changed)', async () => {
    const { client: c } = await client({});
    assert.equal(c.getServerCapabilities()?.tools?.listChanged, true);
    let changed = 0;
    c.setNotificationHandler(ToolListChangedNotificationSchema, async () => void changed++);
    // The SDK client opens its GET stream after initialize; give it a moment before the change.
    await new Promise((r) => setTimeout(r, 300));
    await c.callTool({ name: 'add_tool', arguments: {} });
    const deadline = Date.now() + 5000;
    while (changed === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(changed, 1);
    assert.ok(
      (await c.listTools()).tools.some((t) => t.name.startsWith('added_')),
      'the same sandbox now lists the new tool',
    );
    await c.close();
  });

  test('DELETE ends the session', async () => {
    const { client: c, transport } = await client({});
    const sid = transport.sessionId!;
    await transport.terminateSession();
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: {
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        'mcp-session-id': sid,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    assert.equal(r.status, 404);
    await c.close();
  });
});
