// The stateful core end to end: real berth processes, the official SDK client, real server processes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { connect, PROBE, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('stateful sessions', () => {
  let berth: BerthProcess;
  before(async () => {
    // The process driver here, so pids are host pids; test/namespace.test.ts covers the sandboxed driver.
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '2'], undefined, { BERTH_TEST_SECRET: 'must-not-leak' });
  });
  after(() => berth.stop());

  test('two sessions get different server processes, ids, directories and state', async () => {
    const a = await connect(berth.url);
    const b = await connect(berth.url);
    assert.notEqual(a.transport.sessionId, b.transport.sessionId);
    const wa = JSON.parse(textOf(await a.client.callTool({ name: 'whoami', arguments: {} })));
    const wb = JSON.parse(textOf(await b.client.callTool({ name: 'whoami', arguments: {} })));
    assert.notEqual(wa.instance, wb.instance);
    assert.notEqual(wa.pid, wb.pid);
    assert.equal(wa.session, a.transport.sessionId, 'BERTH_SESSION_ID is the session id');
    assert.equal(wb.session, b.transport.sessionId);
    assert.notEqual(wa.cwd, wb.cwd);
    assert.equal(wa.secret, null, "berth's own environment does not reach the server");
    await a.client.callTool({ name: 'state_set', arguments: { value: 'alpha' } });
    await b.client.callTool({ name: 'state_set', arguments: { value: 'beta' } });
    assert.equal(textOf(await a.client.callTool({ name: 'state_get', arguments: {} })), 'alpha');
    assert.equal(textOf(await b.client.callTool({ name: 'state_get', arguments: {} })), 'beta');
    assert.ok(existsSync(wa.cwd));
    await a.transport.terminateSession();
    await sleep(300);
    assert.equal(existsSync(wa.cwd), false, 'the working directory is removed when the session ends');
    assert.throws(() => process.kill(wa.pid, 0), 'the server process is gone');
    assert.equal(textOf(await b.client.callTool({ name: 'state_get', arguments: {} })), 'beta', 'the other session goes on');
    await b.transport.terminateSession();
    await Promise.all([a.client.close(), b.client.close()]);
  });

  test('elicitation, sampling, roots, progress and logging round trips', async () => {
    const { client, transport } = await connect(berth.url, { elicitation: {}, sampling: {}, roots: { listChanged: true } });
    client.setRequestHandler(ElicitRequestSchema, async (r) => ({ action: 'accept', content: { answer: `yes to ${r.params.message}` } }));
    client.setRequestHandler(CreateMessageRequestSchema, async (r) => {
      const c = r.params.messages[0]!.content as { text: string };
      return { role: 'assistant', model: 'test-model', content: { type: 'text', text: `sampled:${c.text}` } };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///work/project', name: 'project' }] }));
    const logs: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params.data));

    const ask = JSON.parse(textOf(await client.callTool({ name: 'ask', arguments: { question: 'continue?' } })));
    assert.deepEqual(ask, { action: 'accept', content: { answer: 'yes to continue?' } });
    const sample = JSON.parse(textOf(await client.callTool({ name: 'sample', arguments: { prompt: 'hi' } })));
    assert.equal(sample.text, 'sampled:hi');
    const roots = JSON.parse(textOf(await client.callTool({ name: 'roots', arguments: {} })));
    assert.deepEqual(roots.roots, [{ uri: 'file:///work/project', name: 'project' }]);
    const progress: number[] = [];
    const r = await client.callTool({ name: 'progress', arguments: { steps: 5 } }, undefined, {
      onprogress: (p) => void progress.push(p.progress),
    });
    assert.equal(textOf(r), 'done 5');
    await sleep(50);
    assert.ok(progress.length >= 4, `progress notifications arrived: ${progress}`);
    assert.deepEqual(
      progress,
      [...progress].sort((x, y) => x - y),
    );
    await client.callTool({ name: 'log', arguments: { message: 'hello-log' } });
    await sleep(50);
    assert.ok(logs.includes('hello-log'), 'logging notification delivered');
    await transport.terminateSession();
    await client.close();
  });

  test('concurrent calls in one session, each answered on its own stream', async () => {
    const { client, transport } = await connect(berth.url);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => client.callTool({ name: 'echo', arguments: { text: `m${i}` } })),
    );
    assert.deepEqual(
      results.map(textOf),
      Array.from({ length: 20 }, (_, i) => `m${i}`),
    );
    await transport.terminateSession();
    await client.close();
  });

  test('2 MiB results pass intact', async () => {
    const { client, transport } = await connect(berth.url);
    const bytes = 2 * 1024 * 1024;
    const text = textOf(await client.callTool({ name: 'big', arguments: { bytes } }));
    assert.equal(text.length, bytes);
    const unit = 'abcdefghijklmnopqrstuvwxyz0123456789';
    assert.equal(text, unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes));
    await transport.terminateSession();
    await client.close();
  });

  test('cancellation reaches the server and frees the call', async () => {
    const { client, transport } = await connect(berth.url);
    const ac = new AbortController();
    const p = client.callTool({ name: 'sleep', arguments: { ms: 10_000 } }, undefined, { signal: ac.signal });
    await sleep(200);
    ac.abort('test');
    await assert.rejects(p);
    // The session still works and is not stuck with a phantom in-flight call.
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'after' } })), 'after');
    await transport.terminateSession();
    await client.close();
  });

  test('a crashing server fails its session fast; other sessions continue', async () => {
    const victim = await connect(berth.url);
    const other = await connect(berth.url);
    const t0 = Date.now();
    const err = await victim.client.callTool({ name: 'crash', arguments: {} }).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err, 'the call failed');
    assert.match(String(err), /exited/);
    assert.ok(Date.now() - t0 < 3000, 'failed fast');
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': victim.transport.sessionId!,
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    assert.equal(r.status, 404, 'the crashed session answers 404');
    assert.equal(textOf(await other.client.callTool({ name: 'echo', arguments: { text: 'alive' } })), 'alive');
    await other.transport.terminateSession();
    await Promise.all([victim.client.close(), other.client.close()]);
  });

  test("server stderr goes to berth's log, tagged with the session", async () => {
    const { client, transport } = await connect(berth.url);
    // tsx's loader prints nothing; make the probe write to stderr through a failing tool instead.
    await client.callTool({ name: 'echo', arguments: { text: 'x' } });
    await transport.terminateSession();
    await client.close();
    const lines = berth
      .logs()
      .split('\n')
      .filter((l) => l.includes('"session created"'));
    assert.ok(lines.length > 0);
    assert.match(lines[0]!, /"session":"[A-Za-z0-9_-]{8}"/);
  });
});

describe('session expiry', () => {
  test('idle timeout ends a quiet session; a long call is not idleness', async () => {
    const berth = await runBerth(['--idle-timeout', '2s', '--warm-pool', '2']);
    try {
      await sleep(1500); // let both warm servers come up so the two connects are quick
      const busy = await connect(berth.url);
      // The long call starts at once (2.5x the idle timeout) and keeps its session alive; under load the
      // second connect may take a while, which must not count against the busy session.
      const call = busy.client.callTool({ name: 'sleep', arguments: { ms: 5000 } });
      const quiet = await connect(berth.url);
      assert.equal(textOf(await call), 'slept 5000');
      assert.equal(textOf(await busy.client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
      await assert.rejects(quiet.client.callTool({ name: 'echo', arguments: { text: 'x' } }), /404|not found/i);
      await Promise.all([busy.client.close(), quiet.client.close()]);
      assert.match(berth.logs(), /"reason":"idle"/);
    } finally {
      await berth.stop();
    }
  });

  test('an open, silent GET stream is not activity', async () => {
    const berth = await runBerth(['--idle-timeout', '1s', '--warm-pool', '1']);
    try {
      const { client } = await connect(berth.url); // the SDK client opens a GET stream after initialize
      await sleep(2500);
      await assert.rejects(client.callTool({ name: 'echo', arguments: { text: 'x' } }), /404|not found/i);
      await client.close();
    } finally {
      await berth.stop();
    }
  });

  test('max lifetime ends a session even while it is busy', async () => {
    const berth = await runBerth(['--max-lifetime', '1500ms', '--warm-pool', '1']);
    try {
      const { client } = await connect(berth.url);
      const t0 = Date.now();
      const err = await client.callTool({ name: 'sleep', arguments: { ms: 5000 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, 'the in-flight call failed');
      assert.match(String(err), /maximum lifetime/);
      assert.ok(Date.now() - t0 < 4000, 'the in-flight call failed at once when the session ended, long before the call would end');
      await client.close();
    } finally {
      await berth.stop();
    }
  });
});

describe('drain', () => {
  test('SIGTERM lets an in-flight call finish, refuses new sessions, then exits', async () => {
    const berth = await runBerth(['--warm-pool', '1']);
    const { client } = await connect(berth.url);
    const call = client.callTool({ name: 'sleep', arguments: { ms: 800 } });
    await sleep(150);
    berth.proc.kill('SIGTERM');
    await sleep(100);
    const r = await fetch(berth.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    }).catch(() => undefined);
    if (r) assert.equal(r.status, 503);
    assert.equal(textOf(await call), 'slept 800');
    assert.equal(await berth.stop(), 0);
    await client.close();
  });
});

describe('delivery when no stream is open', () => {
  const post = (url: string, sid: string, body: unknown) =>
    fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sid,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify(body),
    });

  test('server stderr lines reach the log tagged with the session', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1']);
    try {
      const { client, transport } = await connect(berth.url);
      await client.callTool({ name: 'stderr', arguments: { text: 'a-line-on-stderr' } });
      await sleep(100);
      const line = berth
        .logs()
        .split('\n')
        .find((l) => l.includes('a-line-on-stderr'));
      assert.ok(line, 'the stderr line is in the log');
      assert.equal(JSON.parse(line).session, transport.sessionId!.slice(0, 8));
      assert.equal(JSON.parse(line).stream, 'stderr');
      await transport.terminateSession();
      await client.close();
    } finally {
      await berth.stop();
    }
  });

  test('unrelated messages wait for a GET stream, bounded; overflow is logged, never silent', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1', '--retain-events', '5']);
    try {
      const { rawInit, sseMessages } = await import('./helpers/berth.ts');
      const sid = await rawInit(berth.url);
      // No GET stream open: 3 list_changed notifications are queued (after the tool's own response).
      const r = await post(berth.url, sid, {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'notify_many', arguments: { count: 3 } },
      });
      assert.equal(r.status, 200, berth.logs());
      await r.text();
      const ac = new AbortController();
      const get = await fetch(berth.url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid }, signal: ac.signal });
      assert.equal(get.status, 200);
      const reader = get.body!.getReader();
      let text = '';
      while (sseMessages(text).length < 3) text += new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      await sleep(200); // let berth see the stream close (redelivery after a drop is resumability's job)
      assert.deepEqual(
        sseMessages(text).map((m) => (m as { method: string }).method),
        Array(3).fill('notifications/tools/list_changed'),
      );
      // Beyond the bound, notifications are dropped with a warning in the log (requests get an error instead).
      const ask = await post(berth.url, sid, {
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/call',
        params: { name: 'notify_many', arguments: { count: 9 } },
      });
      await ask.text();
      await sleep(200); // berth's log reaches us through a pipe
      assert.match(berth.logs(), /server messages? dropped: no client stream carried them before newer messages displaced them/);
    } finally {
      await berth.stop();
    }
  });
});

describe('edge cases found in review', () => {
  test('a batch whose reply turns into SSE still carries every response (2025-03-26)', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1']);
    try {
      const { rawInit, sseMessages } = await import('./helpers/berth.ts');
      const sid = await rawInit(berth.url);
      const r = await fetch(berth.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sid,
          'mcp-protocol-version': '2025-03-26',
        },
        body: JSON.stringify([
          { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'first' } } },
          {
            jsonrpc: '2.0',
            id: 2,
            method: 'tools/call',
            params: { name: 'progress', arguments: { steps: 2 }, _meta: { progressToken: 'p' } },
          },
        ]),
      });
      const ids = sseMessages(await r.text())
        .map((m) => (m as { id?: number }).id)
        .filter((id) => id !== undefined)
        .sort();
      assert.deepEqual(ids, [1, 2]);
    } finally {
      await berth.stop();
    }
  });

  test('a malformed percent-encoding in the path is a 404, and berth keeps serving', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '1']);
    try {
      const base = new URL(berth.url).origin;
      const r = await fetch(`${base}/runtimes/%E0%A4%A/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: '{}',
      });
      assert.equal(r.status, 404);
      assert.equal((await r.json()).error.code, -32000);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    } finally {
      await berth.stop();
    }
  });
});

describe('hostile servers', () => {
  test('a server flooding stdout without newlines is stopped at maxMessageSize; berth goes on', async () => {
    const { createRuntime } = await import('../src/index.ts');
    const berth = createRuntime({
      server: { port: 0 },
      runtimes: { default: { command: PROBE, isolation: 'process', warmPool: 1, limits: { maxMessageSize: '1MiB' } } },
    });
    await berth.start();
    try {
      const victim = await connect(berth.endpoint());
      const err = await victim.client.callTool({ name: 'flood', arguments: { mb: 8 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.match(String(err), /larger than maxMessageSize \(1 MiB\); berth stopped it/);
      const other = await connect(berth.endpoint());
      assert.equal(textOf(await other.client.callTool({ name: 'echo', arguments: { text: 'fine' } })), 'fine');
      assert.ok(process.memoryUsage().rss < 1024 * 1024 * 1024);
      await Promise.all([victim.client.close(), other.client.close()]);
    } finally {
      await berth.stop();
    }
  });
});
