// Issue 5: who may open a session and who may use it. A real JWKS issuer on loopback (keys made with jose here),
// API keys, principal binding, quotas, the admin API, the audit log and the no-auth exposure guard.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { pino } from 'pino';
import { checkExposure } from '../src/app/preflight.ts';
import { parseConfig } from '../src/config/load.ts';
import { createAuthenticator } from '../src/security/auth.ts';
import { ACCEPT_BOTH, connect, initBody, PROBE, ROOT, runBerth, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { tempDir } from './helpers/temp.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A token issuer: a JWKS endpoint whose key set the test can rotate. */
class Issuer {
  readonly keys: Array<{ kid: string; priv: CryptoKey; jwk: JWK }> = [];
  private server!: Server;
  url = '';
  fetches = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: this.keys.map((k) => k.jwk) }));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async addKey(kid: string): Promise<CryptoKey> {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    this.keys.push({ kid, priv: privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
    return privateKey;
  }

  sign(
    claims: Record<string, unknown>,
    opts: { kid?: string; key?: CryptoKey; exp?: number | string; nbf?: number | string; iss?: string } = {},
  ): Promise<string> {
    const k = this.keys.find((x) => x.kid === (opts.kid ?? this.keys[0]!.kid));
    let jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? k!.kid })
      .setIssuer(opts.iss ?? this.url)
      .setSubject((claims.sub as string) ?? 'alice')
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m');
    if (opts.nbf !== undefined) jwt = jwt.setNotBefore(opts.nbf);
    return jwt.sign(opts.key ?? k!.priv);
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function post(url: string, headers: Record<string, string>, body: string) {
  return fetch(url, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-protocol-version': '2025-11-25', ...headers },
    body,
  });
}
const callBody = (id: number, name: string, args: Record<string, unknown>) =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

async function sdk(url: string, headers: Record<string, string>) {
  const client = new Client({ name: 'sec-test', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  return { client, transport };
}

describe('authentication, binding, quotas, admin', () => {
  const issuer = new Issuer();
  let berth: BerthProcess;
  let base: string;
  const at = (rt: string) => `${base}/runtimes/${rt}/mcp`;

  before(async () => {
    await issuer.start();
    await issuer.addKey('k1');
    const dir = tempDir('berth-sec-');
    const runtime = { command: PROBE, isolation: 'process', warmPool: 1 };
    const config = {
      server: { port: 0, admin: { tokenEnv: 'BERTH_TEST_ADMIN' } },
      runtimes: {
        jwt: { ...runtime, auth: { kind: 'jwt', jwksUrl: `${issuer.url}/jwks.json`, issuer: issuer.url, jwksCooldown: 0 } },
        scoped: {
          ...runtime,
          warmPool: 0,
          auth: { kind: 'jwt', jwksUrl: `${issuer.url}/jwks.json`, issuer: issuer.url, scopes: ['mcp:tools'], jwksCooldown: 0 },
        },
        keys: { ...runtime, auth: { kind: 'api-key', keys: [{ name: 'alice', sha256: sha('alice-key') }], keysEnv: 'BERTH_TEST_SECRET' } },
        quota: {
          ...runtime,
          auth: { kind: 'api-key', keys: [{ name: 'carol', sha256: sha('carol-key') }] },
          limits: { maxSessionsPerPrincipal: 2 },
        },
        rps: {
          ...runtime,
          warmPool: 0,
          auth: { kind: 'api-key', keys: [{ name: 'dan', sha256: sha('dan-key') }] },
          limits: { requestsPerSecond: 1, requestBurst: 2 },
        },
      },
    };
    const file = join(dir, 'berth.json');
    writeFileSync(file, JSON.stringify(config));
    // BERTH_TEST_SECRET holds bob's key: the probe's whoami tool reports whether the sandbox can see it.
    berth = await startBerth(['serve', '--config', file], { BERTH_TEST_ADMIN: 'admin-token', BERTH_TEST_SECRET: 'bob-key' });
    base = new URL(berth.url).origin;
  });
  after(async () => {
    await berth.stop();
    await issuer.close();
  });

  test('a valid token works with the official SDK client', async () => {
    const token = await issuer.sign({ aud: at('jwt') });
    const { client, transport } = await sdk(at('jwt'), { authorization: `Bearer ${token}` });
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
    await transport.terminateSession();
    await client.close();
  });

  test('missing and bad tokens get 401 with a WWW-Authenticate header pointing at the metadata, which berth serves', async () => {
    const aud = at('jwt');
    const { privateKey: stranger } = await generateKeyPair('ES256');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'mallory', iss: issuer.url, aud, exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url')}.`;
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['missing', undefined, /bearer token is required/],
      ['expired', await issuer.sign({ aud }, { exp: Math.floor(Date.now() / 1000) - 3600 }), /expired/],
      ['not yet valid', await issuer.sign({ aud }, { nbf: Math.floor(Date.now() / 1000) + 3600 }), /not valid yet/],
      ['wrong issuer', await issuer.sign({ aud }, { iss: 'https://evil.example' }), /wrong issuer/],
      ['wrong audience', await issuer.sign({ aud: 'https://other.example/mcp' }), /wrong audience/],
      ['bad signature', await issuer.sign({ aud }, { key: stranger }), /bad signature/],
      ['unknown kid', await issuer.sign({ aud }, { kid: 'ghost', key: stranger }), /no key/],
      ['alg none', none, /not valid/],
      ['garbage', 'not.a.token', /not valid/],
    ];
    const metadataUrl = `${base}/.well-known/oauth-protected-resource/runtimes/jwt/mcp`;
    for (const [name, token, why] of cases) {
      const r = await post(aud, token ? { authorization: `Bearer ${token}` } : {}, initBody());
      assert.equal(r.status, 401, name);
      const challenge = r.headers.get('www-authenticate') ?? '';
      assert.match(challenge, new RegExp(`^Bearer resource_metadata="${metadataUrl}"`), name);
      if (token) assert.match(challenge, /error="invalid_token"/, name);
      const body = (await r.json()) as { error: { code: number; message: string } };
      assert.equal(body.error.code, -32000);
      assert.match(body.error.message, why, name);
    }
    const meta = await fetch(metadataUrl);
    assert.equal(meta.status, 200);
    assert.deepEqual(await meta.json(), {
      resource: aud,
      authorization_servers: [issuer.url],
      scopes_supported: [],
      bearer_methods_supported: ['header'],
      resource_name: 'berth runtime jwt',
    });
  });

  test('a rotated key (new kid) works without a restart', async () => {
    await issuer.addKey('k2');
    const token = await issuer.sign({ aud: at('jwt') }, { kid: 'k2' });
    const r = await post(at('jwt'), { authorization: `Bearer ${token}` }, initBody());
    assert.equal(r.status, 200);
  });

  test('required scopes: a token without them gets 403 insufficient_scope', async () => {
    const aud = at('scoped');
    const without = await post(aud, { authorization: `Bearer ${await issuer.sign({ aud, scope: 'other' })}` }, initBody());
    assert.equal(without.status, 403);
    assert.match(without.headers.get('www-authenticate')!, /error="insufficient_scope".*scope="mcp:tools"/);
    const withScope = await post(aud, { authorization: `Bearer ${await issuer.sign({ aud, scope: 'other mcp:tools' })}` }, initBody());
    assert.equal(withScope.status, 200);
  });

  test('API keys from config (hashed) and from the environment work; wrong ones fail; the sandbox never sees them', async () => {
    for (const headers of [{ authorization: 'Bearer alice-key' }, { 'x-api-key': 'alice-key' }, { authorization: 'Bearer bob-key' }]) {
      const r = await post(at('keys'), headers, initBody());
      assert.equal(r.status, 200, JSON.stringify(headers));
    }
    for (const headers of [{}, { authorization: 'Bearer alice-kez' }, { 'x-api-key': '' }]) {
      const r = await post(at('keys'), headers, initBody());
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.headers.get('www-authenticate')!, /resource_metadata=/);
    }
    const { client, transport } = await sdk(at('keys'), { authorization: 'Bearer bob-key' });
    const who = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))) as { secret: unknown };
    assert.equal(who.secret, null, 'the API keys variable is not in the sandbox');
    await transport.terminateSession();
    await client.close();
  });

  test("another principal presenting a session's id gets 404, exactly as an unknown id; the owner goes on", async () => {
    const { client, transport } = await sdk(at('keys'), { authorization: 'Bearer alice-key' });
    const sid = transport.sessionId!;
    const steal = await post(at('keys'), { authorization: 'Bearer bob-key', 'mcp-session-id': sid }, callBody(2, 'echo', { text: 'x' }));
    const unknown = await post(
      at('keys'),
      { authorization: 'Bearer bob-key', 'mcp-session-id': 'x'.repeat(32) },
      callBody(2, 'echo', { text: 'x' }),
    );
    assert.equal(steal.status, 404);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await steal.json(), await unknown.json());
    for (const method of ['GET', 'DELETE']) {
      const r = await fetch(at('keys'), {
        method,
        headers: { accept: 'text/event-stream', authorization: 'Bearer bob-key', 'mcp-session-id': sid },
      });
      assert.equal(r.status, 404, method);
    }
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'mine' } })), 'mine');
    await transport.terminateSession();
    await client.close();
  });

  test('quotas: sessions per principal and requests per second answer 429 with Retry-After', async () => {
    const carol = { authorization: 'Bearer carol-key' };
    for (let i = 0; i < 2; i++) assert.equal((await post(at('quota'), carol, initBody())).status, 200);
    const third = await post(at('quota'), carol, initBody());
    assert.equal(third.status, 429);
    assert.ok(Number(third.headers.get('retry-after')) > 0);
    assert.match(((await third.json()) as { error: { message: string } }).error.message, /maxSessionsPerPrincipal/);

    const dan = { authorization: 'Bearer dan-key' };
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 4; i++) {
      const r = await fetch(at('rps'), { method: 'DELETE', headers: { ...dan, 'mcp-session-id': 'none' } });
      statuses.push(r.status);
      if (r.status === 429) retryAfter = r.headers.get('retry-after');
    }
    assert.deepEqual(statuses.slice(0, 2), [404, 404]);
    assert.ok(statuses.slice(2).includes(429), statuses.join());
    assert.ok(Number(retryAfter) >= 1);
  });

  test('the admin API refuses without its token, lists and ends sessions; the audit log records both ends', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }]) {
      const r = await fetch(`${base}/admin/sessions`, { headers });
      assert.equal(r.status, 401);
    }
    const admin = { authorization: 'Bearer admin-token' };
    const { client, transport } = await sdk(at('keys'), { authorization: 'Bearer alice-key' });
    const sid = transport.sessionId!;
    const list = (await (await fetch(`${base}/admin/sessions`, { headers: admin })).json()) as {
      sessions: Array<{ id: string; principal: { subject: string }; runtime: string }>;
    };
    const mine = list.sessions.find((s) => s.id === sid)!;
    assert.equal(mine.principal.subject, 'alice');
    assert.equal(mine.runtime, 'keys');
    const status = (await (await fetch(`${base}/admin/status`, { headers: admin })).json()) as {
      runtimes: Record<string, { auth: string }>;
    };
    assert.equal(status.runtimes.jwt!.auth, 'jwt');
    assert.equal((await fetch(`${base}/admin/sessions/${sid}`, { method: 'DELETE', headers: admin })).status, 204);
    await assert.rejects(client.callTool({ name: 'echo', arguments: { text: 'gone?' } }), /404|not found/i);
    await client.close();
    await sleep(200);
    const audit = berth
      .logs()
      .split('\n')
      .filter((l) => l.includes('"audit"'))
      .map((l) => JSON.parse(l) as { audit: string; principal: string; reason?: string; durationMs?: number; session: string });
    const created = audit.find((a) => a.audit === 'session.created' && a.session === sid.slice(0, 8))!;
    const ended = audit.find((a) => a.audit === 'session.ended' && a.session === sid.slice(0, 8))!;
    assert.equal(created.principal, 'alice');
    assert.equal(ended.reason, 'admin');
    assert.ok(ended.durationMs! >= 0);
  });
});

for (const driver of [namespaceDriver, gvisorDriver]) {
  describe(`berth's own config is not visible in a ${driver.name} sandbox`, async () => {
    const probe = await driver.probe(ROOT);
    if (!probe.ok) console.log(`# SKIP config hiding (${driver.name}): driver unavailable here: ${probe.reason}`);
    test('the config file in the runtime directory cannot be read inside the sandbox', { skip: !probe.ok && probe.reason }, async () => {
      const dir = tempDir('berth-hide-');
      chmodSync(dir, 0o755); // readable by the sandbox's uid, and so is the (0644) config: only the mask hides it
      const file = join(dir, 'berth.json');
      writeFileSync(join(dir, 'beside.txt'), 'visible');
      const config = {
        server: { port: 0, admin: { tokenSha256: sha('top-secret-admin') } },
        runtimes: { default: { command: PROBE, cwd: dir, mounts: [ROOT], isolation: driver.name, warmPool: 1 } },
      };
      writeFileSync(file, JSON.stringify(config));
      const berth = await startBerth(['serve', '--config', file]);
      try {
        const { client, transport } = await connect(berth.url);
        const read = async (path: string) => textOf(await client.callTool({ name: 'fs', arguments: { op: 'read', path } }));
        assert.equal(await read(join(dir, 'beside.txt')), 'visible', 'the runtime directory itself is visible');
        // Masked by a bind of /dev/null, which the sandbox (mounted nodev) may not even open: either way, nothing of it.
        const seen = await read(file);
        assert.ok(seen === '' || seen === 'error: EACCES', seen);
        await transport.terminateSession();
        await client.close();
      } finally {
        await berth.stop();
      }
    });
  });
}

describe('exposure', () => {
  test('binding a non-loopback address with auth none refuses to start, with a clear message', async () => {
    await assert.rejects(
      runBerth(['--host', '0.0.0.0', '--isolation', 'process']),
      /refusing to listen on 0\.0\.0\.0 without authentication.*--dangerously-allow-unauthenticated/s,
    );
  });

  test('jwt on every address without a public URL refuses to start: no token could name its default audience', async () => {
    // The JWKS URL is never fetched: berth refuses before it listens.
    const jwt = ['--auth', 'jwt', '--jwks-url', 'http://127.0.0.1:9/jwks.json', '--issuer', 'https://issuer.test'];
    await assert.rejects(
      runBerth(['--host', '0.0.0.0', '--isolation', 'process', '--warm-pool', '0', ...jwt]),
      /accept JWTs for their resource URL.*0\.0\.0\.0 names no address a token could: set server\.publicUrl \(--public-url\)/s,
    );
    // Either names what tokens carry, and the check passes (checked without listening on every address).
    const auth = { kind: 'jwt', jwksUrl: 'http://127.0.0.1:9/jwks.json', issuer: 'https://issuer.test' };
    const config = (server: object, audience?: string) =>
      parseConfig({ server: { host: '0.0.0.0', ...server }, runtimes: { default: { command: ['true'], auth: { ...auth, audience } } } });
    const log = pino({ level: 'silent' });
    assert.throws(() => checkExposure(config({}), log), /names no address a token could/);
    checkExposure(config({ publicUrl: 'https://mcp.example.test' }), log);
    checkExposure(config({}, 'berth-test'), log);
  });

  test('the admin API is off unless configured', async () => {
    const berth = await runBerth(['--isolation', 'process', '--warm-pool', '0']);
    try {
      const r = await fetch(new URL('/admin/sessions', berth.url), { headers: { authorization: 'Bearer x' } });
      assert.equal(r.status, 404);
    } finally {
      await berth.stop();
    }
  });
});

test("keysEnv keys are principals by their digest, not their place: reordering or removing keys re-binds no one's sessions", async () => {
  const info = { metadataUrl: () => 'http://127.0.0.1/.well-known/oauth-protected-resource', resourceUrls: () => [] };
  const as = async (keys: string, key: string) => {
    process.env.BERTH_TEST_ORDER_KEYS = keys;
    try {
      const auth = createAuthenticator({ kind: 'api-key', keys: [], keysEnv: 'BERTH_TEST_ORDER_KEYS' }, info);
      return (await auth.authenticate({ headers: { authorization: `Bearer ${key}` } } as IncomingMessage)).subject;
    } finally {
      delete process.env.BERTH_TEST_ORDER_KEYS;
    }
  };
  const bob = await as('alice-key,bob-key', 'bob-key');
  assert.equal(bob, `key-${createHash('sha256').update('bob-key').digest('hex').slice(0, 12)}`);
  assert.equal(await as('bob-key,alice-key', 'bob-key'), bob, 'reordered');
  assert.equal(await as('bob-key', 'bob-key'), bob, 'alice-key removed: bob does not become the first key');
  assert.notEqual(await as('bob-key,alice-key', 'alice-key'), bob);
});
