// --upstream http: each session gets its own server process serving Streamable HTTP on $PORT; berth proxies.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { connect, PROBE, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

describe('http upstream', () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--upstream', 'http', '--isolation', 'process', '--warm-pool', '2'], [...PROBE, '--http']);
  });
  after(() => berth.stop());

  test('two sessions, two server processes, berth session ids (not the upstream ones)', async () => {
    const a = await connect(berth.url);
    const b = await connect(berth.url);
    const wa = JSON.parse(textOf(await a.client.callTool({ name: 'whoami', arguments: {} })));
    const wb = JSON.parse(textOf(await b.client.callTool({ name: 'whoami', arguments: {} })));
    assert.notEqual(wa.instance, wb.instance);
    assert.notEqual(wa.pid, wb.pid);
    assert.equal(wa.session, a.transport.sessionId);
    assert.match(a.transport.sessionId!, /^[A-Za-z0-9_-]{32}$/, "berth's own id, not the upstream's UUID");
    await a.transport.terminateSession();
    await new Promise((r) => setTimeout(r, 300));
    assert.throws(() => process.kill(wa.pid, 0), 'DELETE stops the server process');
    assert.equal(textOf(await b.client.callTool({ name: 'echo', arguments: { text: 'ok' } })), 'ok');
    await b.transport.terminateSession();
    await Promise.all([a.client.close(), b.client.close()]);
  });

  test('elicitation and progress stream through the proxy; 2 MiB results intact', async () => {
    const { client, transport } = await connect(berth.url, { elicitation: {} });
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { answer: 'via proxy' } }));
    const ask = JSON.parse(textOf(await client.callTool({ name: 'ask', arguments: { question: 'q' } })));
    assert.deepEqual(ask.content, { answer: 'via proxy' });
    const seen: number[] = [];
    await client.callTool({ name: 'progress', arguments: { steps: 4 } }, undefined, { onprogress: (p) => void seen.push(p.progress) });
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(seen.length >= 3, `progress: ${seen}`);
    const big = textOf(await client.callTool({ name: 'big', arguments: { bytes: 2 * 1024 * 1024 } }));
    assert.equal(big.length, 2 * 1024 * 1024);
    await transport.terminateSession();
    await client.close();
  });

  test('a crashing http server ends its session with 404 afterwards', async () => {
    const { client, transport } = await connect(berth.url);
    await assert.rejects(client.callTool({ name: 'crash', arguments: {} }));
    await new Promise((r) => setTimeout(r, 200));
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': transport.sessionId! },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(r.status, 404);
    await client.close();
  });
});
