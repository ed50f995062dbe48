// Both bridges in front of servers that serve Streamable HTTP themselves (upstream: http), which berth reaches
// message by message over an HTTP session of its own (src/relay/http-channel.ts, the official SDK client transport).
// Before, a 2025-era http server answered 2026 clients 501, and a 2026-era http server could not serve 2025 clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { connect, PROBE, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const MODERN = '2026-07-28';
const SERVER_2026_HTTP = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/conformance-server-2026.ts', import.meta.url)),
  '--http',
];

describe('bridge A over HTTP: 2026-07-28 clients of a 2025-era http server', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--upstream', 'http', '--isolation', 'process', '--warm-pool', '1'], [...PROBE, '--http']);
  });
  after(() => berth?.stop());

  test('the SDK v2 client pinned to 2026-07-28 lists tools, calls one, and answers an elicitation as an input round', async () => {
    const client = new Client(
      { name: 'bridge-a-http', version: '1' },
      { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} } } },
    );
    const asked: string[] = [];
    client.setRequestHandler('elicitation/create', async (req) => {
      asked.push((req.params as { message: string }).message);
      return { action: 'accept', content: { answer: 'teal' } };
    });
    await client.connect(new StreamableHTTPClientTransport(new URL(berth.url)));
    try {
      assert.equal(client.getServerVersion()?.name, 'probe');
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'ask'));
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'over http' } })), 'over http');
      const r = JSON.parse(textOf(await client.callTool({ name: 'ask', arguments: { question: 'colour?' } })));
      assert.deepEqual(r, { action: 'accept', content: { answer: 'teal' } });
      assert.deepEqual(asked, ['colour?']);
    } finally {
      await client.close();
    }
  });
});

describe('bridge B over HTTP: 2025 clients of a 2026-era http server (serverEra 2026)', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--upstream', 'http', '--server-era', '2026', '--isolation', 'process', '--warm-pool', '1'], SERVER_2026_HTTP);
  });
  after(() => berth?.stop());

  test('initialize is answered from server/discover; a tool call works; input_required becomes an elicitation', async () => {
    const { client, transport } = await connect(berth.url, { elicitation: { form: {} } });
    const asked: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push((req.params as { message: string }).message);
      return { action: 'accept', content: { name: 'ada' } };
    });
    try {
      assert.equal(client.getServerVersion()?.name, 'berth-conformance-2026');
      assert.ok(transport.sessionId);
      assert.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })).length > 0, true);
      const r = await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} });
      assert.equal(textOf(r), 'Hello, ada!');
      assert.deepEqual(asked, ['What is your name?']);
      await transport.terminateSession();
    } finally {
      await client.close();
    }
  });
});
