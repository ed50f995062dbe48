// Issue 16 item 5: a web page calls berth directly, from a real browser (playwright-core driving Debian's chromium).
//
// The MCP specification (2025-11-25, Transports, Streamable HTTP, "Security Warning"):
//   "Servers MUST validate the Origin header on all incoming connections to prevent DNS rebinding attacks. If the
//    Origin header is present and invalid, servers MUST respond with HTTP 403 Forbidden."
// It says nothing of CORS; the Fetch standard does: a page may send an MCP POST (Content-Type: application/json,
// Mcp-Session-Id) only after a preflight (OPTIONS) the server grants, and may read a response header such as
// Mcp-Session-Id only when the response exposes it. So a runtime's cors.allowedOrigins is the other half of the
// Origin check: an origin listed there passes it, gets its preflights answered and can read every answer, refusals
// included; any other page's preflight is refused (403) and the browser sends nothing.
//
// The page is served on 127.0.0.1 from a port of its own, so calling berth is cross-origin; the same page served
// as http://localhost:PORT is another origin (loopback too, so it passes server.allowedOrigins' default), the one
// not in cors.allowedOrigins.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { runBerth, serveBerth, PROBE, type BerthProcess } from './helpers/berth.ts';

/** Debian's chromium (the real binary behind its wrapper script), or why it cannot run. */
async function launchChromium(): Promise<{ browser?: Browser; skip?: string }> {
  const path = process.env.CHROMIUM_PATH ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
  if (!path) return { skip: 'no chromium installed (apt-get install chromium)' };
  try {
    const { chromium } = await import('playwright-core');
    // As root (CI) Chromium's own sandbox cannot start; the pages it loads are the test's own.
    const browser = await chromium.launch({
      executablePath: path,
      args: ['--disable-dev-shm-usage', ...(process.getuid?.() === 0 ? ['--no-sandbox'] : [])],
    });
    return { browser };
  } catch (e) {
    return { skip: `chromium at ${path} cannot run: ${(e as Error).message.split('\n')[0]}` };
  }
}

/** A blank page, the origin the browser runs the client from. */
async function pageServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>web client</title>'),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A request as a browser's preflight looks (Node's fetch would not let the test set Origin freely). */
function raw(
  url: string,
  method: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** berth's log lines for requests of one method with one status. */
const requestLines = (b: BerthProcess, method: string, status: number) =>
  b
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l) as { method: string; status: number })
    .filter((l) => l.method === method && l.status === status);

interface PageRun {
  sessionId: string | null;
  echo: string;
  elicitation: { message: string; requestedAnswer: boolean };
  ask: string;
  unknownSession: { status: number; body: unknown };
  deleted: number;
}

/**
 * The web client, run inside the page: plain fetch(), as the Streamable HTTP transport describes it. initialize
 * (reading Mcp-Session-Id, which only an exposed header allows), notifications/initialized, tools/call echo, then
 * tools/call ask: the elicitation arrives on the call's SSE stream and the page answers it with a POST while that
 * stream stays open; then a refusal (an unknown session: 404) read as JSON, and DELETE.
 */
async function webClient(url: string): Promise<PageRun> {
  const headersFor = (sid?: string): Record<string, string> => ({
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } : {}),
  });
  const post = (body: unknown, sid?: string) => fetch(url, { method: 'POST', headers: headersFor(sid), body: JSON.stringify(body) });
  type Message = { id?: number | string; method?: string; params?: Record<string, unknown>; result?: unknown; error?: unknown };
  /** The answer to request `id`: a JSON body, or the SSE stream's messages until it, each server request answered. */
  async function answer(r: Response, id: number, onRequest: (m: Message) => Promise<void>): Promise<Message> {
    if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
    if ((r.headers.get('content-type') ?? '').startsWith('application/json')) return (await r.json()) as Message;
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before the answer to ${id}`);
      buffer += value.replace(/\r\n/g, '\n');
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        if (data === '') continue; // the priming event
        const m = JSON.parse(data) as Message;
        if (m.method !== undefined && m.id !== undefined) await onRequest(m);
        else if (m.id === id) {
          await reader.cancel();
          return m;
        }
      }
    }
  }
  const noRequests = async (m: Message) => {
    throw new Error(`unexpected server request ${m.method}`);
  };

  const init = await post({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'web page', version: '1' } },
  });
  const sessionId = init.headers.get('mcp-session-id');
  await answer(init, 1, noRequests);
  if (!sessionId) return { sessionId } as PageRun;
  const initialized = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId);
  if (initialized.status !== 202) throw new Error(`notifications/initialized: HTTP ${initialized.status}`);

  const echoed = await answer(
    await post(
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'from a web page' } } },
      sessionId,
    ),
    2,
    noRequests,
  );
  const textOf = (m: Message) => ((m.result as { content: Array<{ text: string }> }).content ?? []).map((c) => c.text).join('');

  let elicitation = { message: '', requestedAnswer: false };
  const asked = await answer(
    await post(
      { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'ask', arguments: { question: 'Favourite colour?' } } },
      sessionId,
    ),
    3,
    async (m) => {
      if (m.method !== 'elicitation/create') throw new Error(`unexpected server request ${m.method}`);
      const schema = m.params!.requestedSchema as { properties?: Record<string, unknown> };
      elicitation = { message: m.params!.message as string, requestedAnswer: 'answer' in (schema.properties ?? {}) };
      const r = await post({ jsonrpc: '2.0', id: m.id, result: { action: 'accept', content: { answer: 'teal' } } }, sessionId);
      if (r.status !== 202) throw new Error(`the elicitation's answer: HTTP ${r.status}`);
    },
  );

  const refused = await post({ jsonrpc: '2.0', id: 4, method: 'ping' }, 'no-such-session');
  const unknownSession = { status: refused.status, body: await refused.json() };
  const deleted = (await fetch(url, { method: 'DELETE', headers: headersFor(sessionId) })).status;
  return { sessionId, echo: textOf(echoed), elicitation, ask: textOf(asked), unknownSession, deleted };
}

/** A page's first MCP request: what the browser let it see, or the error fetch() threw. */
async function tryInitialize(url: string): Promise<{ status?: number; error?: string }> {
  try {
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'web page', version: '1' } },
      }),
    });
    return { status: r.status };
  } catch (e) {
    return { error: String(e) };
  }
}

describe('calling berth from a browser (CORS)', async () => {
  const launched = await launchChromium();
  if (launched.skip) console.log(`skipping the browser tests: ${launched.skip}`);
  const browser = launched.browser;
  let pages: { server: Server; port: number };
  let allowed: string; // the page's origin, listed in cors.allowedOrigins
  let other: string; // the same page as another loopback origin, not listed
  let berth: BerthProcess; // --cors-origin <allowed>
  let plain: BerthProcess; // no cors config: today's behaviour
  let page: Page;

  before(async () => {
    pages = await pageServer();
    allowed = `http://127.0.0.1:${pages.port}`;
    other = `http://localhost:${pages.port}`;
    [berth, plain] = await Promise.all([
      runBerth(['--isolation', 'process', '--cors-origin', allowed]),
      // Nothing started ahead of demand: this one only answers preflights.
      serveBerth({ command: PROBE, isolation: 'process', warmPool: 0 }),
    ]);
    if (browser) {
      page = await browser.newPage();
      // tsx (esbuild's keepNames) wraps the client's inner functions in __name(…), a helper the page does not have.
      await page.addInitScript('globalThis.__name = (f) => f');
    }
  });
  after(async () => {
    await browser?.close();
    await Promise.all([berth?.stop(), plain?.stop()]);
    pages?.server.close();
  });

  test('a preflight from a listed origin is granted: 204, the origin echoed, the MCP methods and asked-for headers, a max age', async () => {
    const r = await raw(berth.url, 'OPTIONS', {
      origin: allowed,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type,mcp-protocol-version,mcp-session-id,mcp-param-region',
    });
    assert.equal(r.status, 204, r.body);
    assert.equal(r.headers['access-control-allow-origin'], allowed);
    assert.match(String(r.headers.vary), /\bOrigin\b/);
    assert.deepEqual(String(r.headers['access-control-allow-methods']).split(/,\s*/).sort(), ['DELETE', 'GET', 'POST']);
    assert.equal(r.headers['access-control-allow-headers'], 'content-type, mcp-protocol-version, mcp-session-id, mcp-param-region');
    assert.equal(r.headers['access-control-max-age'], '600'); // cors.maxAge's default, 10m, in seconds
    assert.equal(r.body, '');
  });

  test('a preflight from another origin, or asking for a header outside the MCP set, is refused with a JSON-RPC error', async () => {
    const foreign = await raw(berth.url, 'OPTIONS', { origin: other, 'access-control-request-method': 'POST' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    const body = JSON.parse(foreign.body) as { error: { code: number; message: string } };
    assert.equal(body.error.code, -32000);
    assert.match(body.error.message, /Origin "http:\/\/localhost:\d+" may not call this runtime from a browser \(cors\.allowedOrigins\)/);

    const header = await raw(berth.url, 'OPTIONS', {
      origin: allowed,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type,x-tracking',
    });
    assert.equal(header.status, 403);
    assert.match(JSON.parse(header.body).error.message, /a browser may not send x-tracking to this runtime/);
    const method = await raw(berth.url, 'OPTIONS', { origin: allowed, 'access-control-request-method': 'PUT' });
    assert.equal(method.status, 405);
    assert.match(JSON.parse(method.body).error.message, /Method Not Allowed: PUT/);
  });

  test('an origin in cors.allowedOrigins passes the Origin check too, and reads refusals (401); another origin still gets 403', async () => {
    const b = await runBerth(
      [
        ...['--isolation', 'process', '--warm-pool', '0', '--auth', 'api-key', '--api-key-env', 'CORS_TEST_KEYS'],
        ...['--allowed-origin', 'http://tools.example', '--cors-origin', 'https://app.example'],
      ],
      undefined,
      { CORS_TEST_KEYS: 'cors-test-key' },
    );
    try {
      const get = (origin: string) => raw(b.url, 'GET', { origin, accept: 'text/event-stream' });
      // Past the Origin check, a request without a key is refused by admission (401): readable by the listed page,
      // its challenge header exposed.
      const listed = await get('https://app.example');
      assert.equal(listed.status, 401, listed.body);
      assert.equal(listed.headers['access-control-allow-origin'], 'https://app.example');
      assert.match(String(listed.headers['www-authenticate']), /^Bearer resource_metadata=/);
      assert.ok(
        String(listed.headers['access-control-expose-headers'])
          .split(/,\s*/)
          .map((h) => h.toLowerCase())
          .includes('www-authenticate'),
      );
      const tools = await get('http://tools.example');
      assert.equal(tools.status, 401, 'server.allowedOrigins still applies');
      assert.equal(tools.headers['access-control-allow-origin'], undefined, 'but only cors.allowedOrigins may read answers');
      const foreign = await get('https://elsewhere.example');
      assert.equal(foreign.status, 403);
      assert.match(JSON.parse(foreign.body).error.message, /Origin "https:\/\/elsewhere\.example" is not allowed/);
      // A preflight carries no credentials: it is answered without a key.
      const preflight = await raw(b.url, 'OPTIONS', { origin: 'https://app.example', 'access-control-request-method': 'POST' });
      assert.equal(preflight.status, 204, preflight.body);
    } finally {
      await b.stop();
    }
  });

  test('with no cors config, OPTIONS is refused as before: 405, Allow, and no CORS headers', async () => {
    const r = await raw(plain.url, 'OPTIONS', {
      origin: allowed,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type',
    });
    assert.equal(r.status, 405, r.body);
    assert.match(JSON.parse(r.body).error.message, /Method Not Allowed: OPTIONS/);
    assert.ok(!Object.keys(r.headers).some((h) => h.startsWith('access-control-')), JSON.stringify(r.headers));
    assert.equal(r.headers.vary, undefined);
  });

  test(
    'a page on a listed origin initializes, calls a tool and answers an elicitation through berth',
    { skip: launched.skip },
    async () => {
      await page.goto(`${allowed}/`);
      const run = await page.evaluate(webClient, new URL(berth.url).href);
      assert.match(run.sessionId ?? '', /\S{16,}/, 'the page reads Mcp-Session-Id (exposed)');
      assert.equal(run.echo, 'from a web page');
      assert.deepEqual(run.elicitation, { message: 'Favourite colour?', requestedAnswer: true });
      assert.deepEqual(JSON.parse(run.ask), { action: 'accept', content: { answer: 'teal' } });
      // A refusal is readable too: its status and JSON-RPC body, not a network error.
      assert.equal(run.unknownSession.status, 404);
      assert.equal((run.unknownSession.body as { error: { code: number } }).error.code, -32001);
      assert.equal(run.deleted, 204);
      assert.ok(requestLines(berth, 'OPTIONS', 204).length > 0, 'the browser sent preflights and berth granted them');
    },
  );

  test('a page on another origin is stopped at the preflight: the browser never sends the POST', { skip: launched.skip }, async () => {
    const refusedBefore = requestLines(berth, 'OPTIONS', 403).length;
    const initializesBefore = requestLines(berth, 'initialize', 200).length;
    await page.goto(`${other}/`);
    const r = await page.evaluate(tryInitialize, new URL(berth.url).href);
    assert.match(r.error ?? `HTTP ${r.status}`, /TypeError: Failed to fetch/);
    await until("the refused preflight in berth's log", () =>
      requestLines(berth, 'OPTIONS', 403).length > refusedBefore ? true : undefined,
    );
    assert.equal(requestLines(berth, 'initialize', 200).length, initializesBefore, 'no initialize reached berth');
  });

  test('a page calling a runtime without cors config fails as it did before', { skip: launched.skip }, async () => {
    await page.goto(`${allowed}/`);
    const r = await page.evaluate(tryInitialize, new URL(plain.url).href);
    assert.match(r.error ?? `HTTP ${r.status}`, /TypeError: Failed to fetch/);
    await until("the refused OPTIONS in berth's log", () => (requestLines(plain, 'OPTIONS', 405).length > 0 ? true : undefined));
  });
});
