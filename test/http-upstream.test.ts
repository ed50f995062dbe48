// --upstream http: each session gets its own server process serving Streamable HTTP on $PORT; berth proxies.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { compiledProbe, ensureMicrovmAssets, warm } from './fixtures/slow-boot.ts';
import { connect, PROBE, ROOT, runBerth, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `cond` every 50 ms until it holds; fails after 15 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 15_000; !cond();) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

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
    await until(() => !alive(wa.pid), 'DELETE stops the server process');
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
    // Progress comes on the call's stream before its result: all of it has arrived when the call returns.
    await client.callTool({ name: 'progress', arguments: { steps: 4 } }, undefined, { onprogress: (p) => void seen.push(p.progress) });
    assert.ok(seen.length >= 3, `progress: ${seen}`);
    const big = textOf(await client.callTool({ name: 'big', arguments: { bytes: 2 * 1024 * 1024 } }));
    assert.equal(big.length, 2 * 1024 * 1024);
    await transport.terminateSession();
    await client.close();
  });

  test('a crashing http server ends its session with 404 afterwards', async () => {
    const { client, transport } = await connect(berth.url);
    await assert.rejects(client.callTool({ name: 'crash', arguments: {} }));
    // The session ends once berth sees the server's exit: from then on its id answers 404.
    const post = () =>
      fetch(berth.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': transport.sessionId!,
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
    let r = await post();
    for (const deadline = Date.now() + 15_000; r.status !== 404 && Date.now() < deadline; r = await post()) {
      await r.body?.cancel();
      await new Promise((done) => setTimeout(done, 50));
    }
    assert.equal(r.status, 404);
    await client.close();
  });
});

// In a microVM the server listens in the guest (berth gives it HOST=0.0.0.0) and QEMU forwards $PORT to it.
ensureMicrovmAssets();
const vm = await microvmDriver.probe(ROOT);
if (!vm.ok) console.log(`# SKIP http upstream in a microVM: ${vm.reason}`);

describe('http upstream in a microVM', { skip: vm.ok ? false : `microvm driver unavailable here: ${vm.reason}` }, () => {
  let berth: BerthProcess;
  const dir = mkdtempSync(join(tmpdir(), 'berth-http-vm-'));
  // An environment value with spaces, quotes and a `$` must reach the guest's server as it is.
  const secret = `it's "quoted" $HOME  with spaces`;
  before(async () => {
    const probe = await compiledProbe();
    const runtime = {
      command: [...probe, '--http'],
      upstream: 'http',
      isolation: 'microvm',
      warmPool: 2,
      env: { BERTH_TEST_SECRET: secret },
      limits: { startupTimeout: '180s' },
    };
    writeFileSync(join(dir, 'berth.yaml'), JSON.stringify({ server: { port: 0 }, runtimes: { default: runtime } })); // JSON is YAML
    berth = await startBerth(['serve', '--config', join(dir, 'berth.yaml')]);
    await warm(berth.url, 2);
  });
  after(async () => {
    await berth?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('two sessions, two VMs: calls, elicitation and a large result through the forwarded port; DELETE ends one', async () => {
    const a = await connect(berth.url, { elicitation: {} });
    const b = await connect(berth.url);
    a.client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { answer: 'from the guest' } }));
    const wa = JSON.parse(textOf(await a.client.callTool({ name: 'whoami', arguments: {} })));
    const wb = JSON.parse(textOf(await b.client.callTool({ name: 'whoami', arguments: {} })));
    assert.notEqual(wa.instance, wb.instance);
    assert.equal(wa.session, a.transport.sessionId);
    assert.equal(wa.secret, secret);
    assert.deepEqual(JSON.parse(textOf(await a.client.callTool({ name: 'ask', arguments: { question: 'q' } }))).content, {
      answer: 'from the guest',
    });
    assert.equal(textOf(await a.client.callTool({ name: 'big', arguments: { bytes: 512 * 1024 } })).length, 512 * 1024);
    await a.transport.terminateSession();
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': a.transport.sessionId!,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(r.status, 404);
    assert.equal(textOf(await b.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
    await b.transport.terminateSession();
    await Promise.all([a.client.close(), b.client.close()]);
  });
});
