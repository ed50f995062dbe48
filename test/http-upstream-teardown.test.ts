// A server that serves HTTP itself cannot hold a session's end or a start slot by never finishing an answer. It used
// to: berth read the body of its goodbye DELETE (and of its readiness GET) to the end, on connections with no body
// timeout, so a server that sent headers and then nothing kept DELETE hanging and its sandbox running after the
// session's place was freed (maxSessions 1 let three sandboxes live), and kept a start's slot forever.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../src/config/load.ts';
import { HttpChannel } from '../src/relay/http-channel.ts';
import { HttpUpstream } from '../src/relay/http-upstream.ts';
import { relayOptions } from '../src/session/connector.ts';
import { ACCEPT_BOTH, initBody, serveConfig, type BerthProcess } from './helpers/berth.ts';

const HANG = [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/hang-http-server.ts', import.meta.url)),
];

/** The process still exists (or is a zombie: berth has not reaped it yet). */
const alive = (pid: number) => existsSync(`/proc/${pid}`);

/** Polls `cond` every 50 ms until it holds; fails after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  for (const deadline = Date.now() + ms; !(await cond());) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `work`, or a failure naming `what` after `ms` (what used to hang fails the test instead of stalling it). */
async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms)),
  );
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

function hangBerth(flags: string[], runtime: Record<string, unknown> = {}, limits: Record<string, unknown> = {}): Promise<BerthProcess> {
  return serveConfig({
    server: { port: 0 },
    runtimes: {
      default: {
        command: [...HANG, ...flags],
        upstream: 'http',
        serverEra: '2025',
        isolation: 'process',
        network: 'host',
        warmPool: 0,
        ...runtime,
        limits: { startupTimeout: '30s', ...limits },
      },
    },
  });
}

/** A raw initialize (given up after ms): its status, its session id and the server's pid, or the refusal's text. */
async function init(url: string, ms = 30_000): Promise<{ status: number; sid: string; pid: number; text: string }> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' },
    body: initBody(),
    signal: AbortSignal.timeout(ms),
  });
  const text = await r.text();
  const pid = Number(/"name":"hang-(\d+)"/.exec(text)?.[1]);
  return { status: r.status, sid: r.headers.get('mcp-session-id') ?? '', pid, text };
}

const del = (url: string, sid: string) =>
  fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sid }, signal: AbortSignal.timeout(10_000) });

describe('a server that never ends its answer to DELETE', { timeout: 180_000 }, () => {
  const STOP_GRACE = 2000;
  let berth: BerthProcess;
  before(async () => (berth = await hangBerth(['--hang-delete'], {}, { maxSessions: 1, stopGrace: `${STOP_GRACE}ms` })));
  after(() => berth?.stop());

  test('DELETE answers 204 at once, the sandbox is stopped, and the next session starts (maxSessions 1)', async () => {
    for (let i = 0; i < 3; i++) {
      const s = await init(berth.url);
      assert.equal(s.status, 200, s.text);
      assert.ok(alive(s.pid), 'the server runs');
      const t0 = Date.now();
      const r = await del(berth.url, s.sid);
      assert.equal(r.status, 204);
      assert.ok(Date.now() - t0 < STOP_GRACE + 3000, `DELETE took ${Date.now() - t0} ms`);
      await until(() => !alive(s.pid), `session ${i}'s server stops`, STOP_GRACE + 3000);
    }
  });
});

describe('an ended session keeps its place until its server has stopped', { timeout: 180_000 }, () => {
  let berth: BerthProcess;
  // It outlives SIGTERM: its sandbox runs for stopGrace after the session ended (by idleness, nobody waiting on it).
  before(
    async () => (berth = await hangBerth(['--hang-delete', '--ignore-term'], { idleTimeout: '1s' }, { maxSessions: 1, stopGrace: '5s' })),
  );
  after(() => berth?.stop());

  test('while its server stops, a new session is refused at maxSessions; once it is gone, one starts', async () => {
    const a = await init(berth.url);
    assert.equal(a.status, 200, a.text);
    // The idle timeout ends it (/healthz, unlike a request with its id, is no activity of the session's).
    await until(async () => {
      const h = (await (await fetch(new URL('/healthz', berth.url))).json()) as { runtimes: { default: { sessions: number } } };
      return h.runtimes.default.sessions === 0;
    }, 'the session ends when idle');
    assert.ok(alive(a.pid), 'its server is still stopping');
    const b = await init(berth.url);
    assert.ok(alive(a.pid), 'its server was still running when the new session asked');
    assert.equal(b.status, 503, `a second sandbox beside the one still running: ${b.text}`);
    assert.match(b.text, /maximum of 1 sessions \(maxSessions\)/);
    await until(() => !alive(a.pid), 'the old server is killed after stopGrace', 15_000);
    let c = b;
    await until(async () => (c = await init(berth.url)).status === 200, 'a new session starts once the old one is gone');
    assert.ok(alive(c.pid));
    assert.equal((await del(berth.url, c.sid)).status, 204);
  });
});

describe('a server whose readiness GET never ends', { timeout: 180_000 }, () => {
  let berth: BerthProcess;
  before(
    async () => (berth = await hangBerth(['--hang-get'], {}, { startupTimeout: '5s', maxConcurrentStarts: 1, startQueueTimeout: '1s' })),
  );
  after(() => berth?.stop());

  test('is ready once it answers (its stream is not read), and holds no start slot', async () => {
    // It answered, so it listens: warm at once, not after startupTimeout, and never held past it.
    const t0 = Date.now();
    const a = await within(init(berth.url), 15_000, 'the first initialize');
    assert.equal(a.status, 200, a.text);
    assert.ok(Date.now() - t0 < 5000, `initialize took ${Date.now() - t0} ms`);
    const b = await within(init(berth.url), 15_000, 'the second initialize');
    assert.equal(b.status, 200, `the start slot is still held: ${b.text}`);
    for (const s of [a, b]) assert.equal((await del(berth.url, s.sid)).status, 204);
  });
});

describe("berth's goodbye to a server (HttpUpstream, HttpChannel) is bounded", () => {
  let server: ReturnType<typeof createServer>;
  let port: number;
  /** How the server treats DELETE (each test sets it). */
  let onDelete: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
  before(async () => {
    server = createServer((req, res) => {
      if (req.method === 'DELETE') return onDelete(req, res);
      if (req.method === 'GET') return void res.writeHead(405).end();
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        const m = JSON.parse(body) as { id?: unknown };
        if (m.id === undefined) return void res.writeHead(202).end();
        const result = { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'x', version: '1' } };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'up-1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });

  /** DELETE answered as `answer` does; resolves when the server sees its connection closed (berth gave up on it). */
  function deleteDropped(answer: (res: ServerResponse) => void): Promise<void> {
    return new Promise((resolve) => {
      onDelete = (req, res) => {
        req.socket.once('close', () => resolve());
        answer(res);
      };
    });
  }

  test('HttpUpstream.close: a DELETE whose body never ends is dropped within about a second', async () => {
    const config = parseConfig({ runtimes: { default: { command: ['true'], upstream: 'http' } } }).runtimes.default!;
    const u = new HttpUpstream(port, relayOptions(config));
    u.upstreamSessionId = 'up-1';
    const dropped = deleteDropped((res) => res.writeHead(200, { 'content-type': 'text/plain' }).write('x'));
    const t0 = Date.now();
    await within(u.close(), 5000, 'HttpUpstream.close');
    assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0} ms`);
    await within(dropped, 5000, "the DELETE's connection closing");
  });

  test('HttpChannel.close: a DELETE never answered is given up within about a second', async () => {
    const channel = new HttpChannel(port);
    const answered = once(channel, 'message');
    channel.send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    await within(answered, 10_000, 'initialize');
    channel.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    // No headers at all: undici's own headersTimeout (300 s) was the only bound.
    const dropped = deleteDropped(() => undefined);
    const t0 = Date.now();
    await within(channel.close(), 5000, 'HttpChannel.close');
    assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0} ms`);
    await within(dropped, 5000, "the DELETE's connection closing");
  });
});
