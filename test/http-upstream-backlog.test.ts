// A server that serves HTTP itself and never reads its request bodies (nor answers them) must not let its client
// grow berth's memory: berth holds each body until its request completes, and nothing bounded how many it started,
// forwarded (HttpUpstream) or over berth's own session with the server (HttpChannel, bridge B). As for a stdio server
// (test/input-backlog.test.ts), limits.inputBacklog bounds them: past it the session's POSTs get 503 + Retry-After +
// a JSON-RPC error naming the setting, until the server takes what waited; other sessions go on. Real berth, the
// hostile http fixture (its `deaf` tool stops it reading), the official SDK client and raw HTTP; and HttpChannel on
// its own, to show a body stops counting however its request ends (else a session would be refused for good).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpChannel, InputBacklog } from '../src/relay/http-channel.ts';
import type { JsonRpcMessage } from '../src/wire/jsonrpc.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

/** How many calls of 1 MiB are sent at once while the server is deaf: past 2 MiB (at most 3 taken) the rest are refused. */
const SENT = 8;

interface Sent {
  status?: number;
  retryAfter?: string | null;
  text?: string;
}

/** berth hosting the hostile http server, limits.inputBacklog 2 MiB; serverEra 2026 bridges 2025 clients (bridge B). */
async function hostileBerth(serverEra: '2025' | '2026'): Promise<BerthProcess> {
  return serveConfig({
    server: { port: 0 },
    runtimes: {
      default: {
        command: await compiledFixture('hostile-http-server'),
        upstream: 'http',
        serverEra,
        isolation: 'process',
        network: 'host',
        warmPool: 2,
        limits: { inputBacklog: '2MiB' },
      },
    },
  });
}

/**
 * A tools/call of about 1 MiB (the `size` tool) as raw HTTP, read to its end: its status, Retry-After and body are
 * filled in as they come (the SDK would hide a refusal's status). Given up when `signal` aborts.
 */
function sizeCall(url: string, sessionId: string, id: number, signal: AbortSignal): Sent {
  const sent: Sent = {};
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name: 'size', arguments: { text: 'x'.repeat(1048476) } },
  });
  void fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-11-25',
    },
    body,
    signal,
  })
    .then(async (r) => {
      sent.retryAfter = r.headers.get('retry-after');
      sent.status = r.status;
      sent.text = await r.text();
    })
    .catch(() => undefined);
  return sent;
}

function backlogSuite(era: '2025' | '2026', path: string) {
  describe(`a deaf http server (${path}): past limits.inputBacklog its client gets 503`, { timeout: 120_000 }, () => {
    let berth: BerthProcess;
    const dir = mkdtempSync(join(tmpdir(), 'berth-http-backlog-'));
    before(async () => (berth = await hostileBerth(era)));
    after(async () => {
      await berth?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('refused naming the setting, another session is served, and taking what waited lifts it', async () => {
      const deaf = await connect(berth.url);
      const other = await connect(berth.url);
      const sid = deaf.transport.sessionId!;
      const gone = new AbortController();
      try {
        // Deaf until the file appears, and at most 120 s: its loop ends by itself.
        const hear = join(dir, `hear-${era}`);
        assert.equal(textOf(await deaf.client.callTool({ name: 'deaf', arguments: { ms: 120_000, until: hear } })), 'deaf');

        const sent = Array.from({ length: SENT }, (_, i) => sizeCall(berth.url, sid, 100 + i, gone.signal));
        const refused = () => sent.filter((s) => s.status === 503 && s.text !== undefined);
        // 2 MiB may be under way, and the call that crossed it: the rest are refused at once.
        await waitFor(() => refused().length >= SENT - 3, `${SENT - 3} of ${SENT} calls of 1 MiB refused`, 20_000);
        const refusal = refused()[0]!;
        assert.equal(refusal.retryAfter, '1');
        const error = (JSON.parse(refusal.text!) as { error?: { code: number; message: string } }).error;
        assert.equal(error?.code, -32000);
        assert.match(
          error!.message,
          /has not finished taking [\d.]+ MiB of earlier messages \(POSTs it has not answered in full\), more than limits\.inputBacklog \(2 MiB\)/,
        );

        // Another session of the same runtime is untouched.
        assert.match(textOf(await other.client.callTool({ name: 'whoami', arguments: {} })), /^pid \d+$/);

        // The server hears again: what waited is taken and answered, and so are the client's messages.
        writeFileSync(hear, '');
        await waitFor(() => sent.every((s) => s.text !== undefined), 'every call answered or refused', 30_000);
        const taken = sent.filter((s) => s.status === 200);
        assert.ok(taken.length >= 2 && taken.length <= 3, `${taken.length} of ${SENT} taken: ${sent.map((s) => s.status)}`);
        assert.equal(taken.length + refused().length, SENT, `${sent.map((s) => s.status)}`);
        for (const s of taken) assert.match(s.text!, /1048476 characters/);
        const again = sizeCall(berth.url, sid, 200, gone.signal);
        await waitFor(() => again.text !== undefined, 'a call after the server heard again', 30_000);
        assert.equal(again.status, 200, again.text);
        assert.match(again.text!, /1048476 characters/);
      } finally {
        gone.abort();
        await Promise.all([deaf.transport.terminateSession(), other.transport.terminateSession()]).catch(() => undefined);
        await Promise.all([deaf.client.close(), other.client.close()]);
      }
    });
  });
}

backlogSuite('2025', 'forwarded, HttpUpstream');
backlogSuite('2026', 'bridge B, HttpChannel');

describe("HttpChannel: a POST's body counts until its request completes, however it ends", () => {
  let server: ReturnType<typeof createServer>;
  let port: number;
  /** Requests the server holds unanswered (the `hold` tool): each answers its own when called. */
  const holding: Array<() => void> = [];
  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        const m = JSON.parse(body) as { id?: number; params?: { name?: string } };
        if (m.id === undefined) return void res.writeHead(202).end();
        const answer = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [] } });
        const how = m.params?.name;
        if (how === 'json') return void res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
        if (how === 'sse')
          return void res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`event: message\ndata: ${answer}\n\n`);
        if (how === 'refused') return void res.writeHead(500, { 'content-type': 'text/plain' }).end('no');
        if (how === 'cut') return void res.socket?.destroy();
        holding.push(() => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('answered as JSON, as SSE, refused, cut, or 202: nothing stays counted; held: counted until answered', async () => {
    // No backlog at all: any byte under way is past it.
    const channel = new HttpChannel(port, undefined, { backlog: new InputBacklog(0) });
    const answers = new Map<unknown, JsonRpcMessage>();
    channel.on('message', (m) => answers.set((m as { id?: unknown }).id, m));
    try {
      const call = (id: number, name: string) =>
        channel.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { pad: 'x'.repeat(1000) } } });
      ['json', 'sse', 'refused', 'cut'].forEach((name, i) => call(i + 1, name));
      channel.send({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' });
      await waitFor(() => answers.size === 4, 'four answers (the refused and the cut one as errors)');
      await waitFor(() => channel.backlogged === undefined, 'nothing counted once every request completed');

      call(5, 'hold');
      await waitFor(() => holding.length === 1, 'the server holds the call');
      assert.match(channel.backlogged ?? '', /more than limits\.inputBacklog \(0 MiB\)/);
      holding.shift()!();
      await waitFor(() => answers.has(5), 'the held call answered');
      await waitFor(() => channel.backlogged === undefined, 'nothing counted once it was answered');
    } finally {
      await channel.close();
    }
  });
});
