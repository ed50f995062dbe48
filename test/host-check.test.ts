// DNS rebinding: a page whose name the attacker re-points at 127.0.0.1 is, to the browser, berth's own origin; its
// GETs carry no Origin, only its own name as Host. berth on loopback answers only to loopback names and the hosts of
// its publicUrl (server.allowedHosts: auto), on every path (src/http/host-check.ts).
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { hostCheck } from '../src/http/host-check.ts';
import { connect, PROBE, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';

/** One request to berth's loopback port, naming `host` as the Host header (what a rebound page would send). */
function ask(url: string, host: string, path: string, method = 'GET', body?: string): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method,
        headers: {
          host,
          ...(body ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function serve(server: Record<string, unknown>): Promise<BerthProcess> {
  return serveConfig({ server: { port: 0, ...server }, runtimes: { default: { command: PROBE, isolation: 'process', network: 'host' } } });
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'rebound-page', version: '1' } },
});

describe('server.allowedHosts: auto, on loopback', () => {
  let berth: BerthProcess;
  let port: string;
  before(async () => {
    berth = await serve({ publicUrl: 'https://MCP.Example.test:8443/' });
    port = new URL(berth.url).port;
  });
  after(() => berth?.stop());

  test('a foreign name is refused on every path: 403, JSON-RPC -32000, naming server.allowedHosts', async () => {
    for (const [path, method, body] of [
      ['/metrics', 'GET', undefined],
      ['/healthz', 'GET', undefined],
      ['/readyz', 'GET', undefined],
      ['/admin/status', 'GET', undefined],
      ['/mcp', 'POST', INIT],
    ] as const) {
      const r = await ask(berth.url, `rebound.attacker.test:${port}`, path, method, body);
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
      const err = JSON.parse(r.text).error;
      assert.equal(err.code, -32000);
      assert.match(err.message, /Host "rebound\.attacker\.test:\d+" is not a name berth answers to \(server\.allowedHosts: auto;/);
    }
    // A name that merely ends like an allowed one is another name.
    assert.equal((await ask(berth.url, `evil-localhost:${port}`, '/healthz')).status, 403);
    assert.equal((await ask(berth.url, `127.0.0.1.attacker.test:${port}`, '/healthz')).status, 403);
  });

  test('loopback names and publicUrl host (any case, a trailing dot, any port) are served', async () => {
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `127.0.0.2:${port}`,
      `[::1]:${port}`,
      'app.localhost',
      'mcp.example.test',
      'MCP.EXAMPLE.TEST.:443',
    ]) {
      const r = await ask(berth.url, host, '/healthz');
      assert.equal(r.status, 200, `${host}: ${r.text}`);
    }
    // The official SDK client, through a loopback name: a whole session.
    const c = await connect(`http://localhost:${port}/mcp`);
    try {
      assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'by name' } })), 'by name');
    } finally {
      await c.client.close();
    }
  });
});

test('server.allowedHosts lists names: only those (and the listening address); "*" turns the check off', async () => {
  const listed = await serve({ allowedHosts: ['mcp.internal.test'] });
  const open = await serve({ allowedHosts: ['*'] });
  try {
    const port = new URL(listed.url).port;
    assert.equal((await ask(listed.url, `mcp.internal.test:${port}`, '/healthz')).status, 200);
    assert.equal((await ask(listed.url, `127.0.0.1:${port}`, '/healthz')).status, 200, 'the listening address');
    assert.equal((await ask(listed.url, `localhost:${port}`, '/healthz')).status, 403, 'loopback names only with "loopback" or "auto"');
    assert.equal((await ask(open.url, 'rebound.attacker.test', '/healthz')).status, 200);
  } finally {
    await Promise.all([listed.stop(), open.stop()]);
  }
});

test('auto on an address that is not loopback judges no name; an IPv6 loopback address is loopback', () => {
  const req = (host: string) => ({ headers: { host } }) as never;
  assert.doesNotThrow(() => hostCheck({ allowedHosts: ['auto'], listen: '0.0.0.0', urls: [] })(req('anything.test')));
  assert.doesNotThrow(() => hostCheck({ allowedHosts: ['auto'], listen: '10.1.2.3', urls: [] })(req('anything.test')));
  const v6 = hostCheck({ allowedHosts: ['auto'], listen: '::1', urls: [undefined, 'http://peer-a.test:9000'] });
  assert.doesNotThrow(() => v6(req('[::1]:8787')));
  for (const form of ['::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
    assert.doesNotThrow(() => hostCheck({ allowedHosts: ['auto'], listen: form, urls: [] })(req('[::1]')), `${form} is loopback`);
  assert.throws(() => hostCheck({ allowedHosts: ['auto'], listen: '::ffff:127.0.0.1', urls: [] })(req('rebound.test')));
  assert.doesNotThrow(() => v6(req('peer-a.test:9000')), 'cluster.advertiseUrl');
  assert.throws(() => v6(req('anything.test')), /403|not a name berth answers to/);
  // Listed bare, an IPv6 address is still that address; a Host with no name at all is no name on the list.
  const listed = hostCheck({ allowedHosts: ['::1', 'mcp.internal.test'], listen: '127.0.0.1', urls: [] });
  assert.doesNotThrow(() => listed(req('[::1]:8787')));
  for (const odd of [':80', '[x', '', '[]:80', 'localhost'])
    assert.throws(() => listed(req(odd)), /not a name berth answers to/, JSON.stringify(odd));
});
