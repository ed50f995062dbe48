// Issue 8, cluster mode: real Redis, three real berth processes (each in its own network namespace when root can
// make them, else on 127.0.0.11-13), the official SDK client spraying one session's requests over every node.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { clusterKeys } from '../src/cluster/keys.ts';
import { mintSessionId, newIncarnation, sessionOwner } from '../src/cluster/ids.ts';
import { NonceCache, signForwarded, verifyForwarded } from '../src/cluster/forwarded.ts';
import { candidates, choose } from '../src/cluster/placement.ts';
import { ACCEPT_BOTH, initBody, listeningUrl, PROBE, readUntil, ROOT, sseEvents, sseMessages, textOf } from './helpers/berth.ts';
import { Redis } from 'ioredis';
import { redisAvailable, startRedis, type RedisServer } from './helpers/redis.ts';
import { makeNet, netnsAvailable, type Net } from './helpers/netns.ts';
import { tempDir } from './helpers/temp.ts';

const SECRET = 'cluster-secret-for-tests-0123456789abcdef';
const KEYS = { alice: 'alice-key-0123456789', bob: 'bob-key-0123456789' };
const ADMIN = 'admin-token-0123456789';
const V = '2025-11-25';
const MODERN = '2026-07-28';
const ENVELOPE = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const ownerOf = (sid: string) => sid.split('.')[1];

describe('cluster units', () => {
  const keys = clusterKeys(SECRET, 'X');
  test('session ids: decode to their owner; any tampered part is refused; rotation keeps old ids valid', () => {
    const inc = newIncarnation();
    const id = mintSessionId(keys, { nodeId: 'node-a', inc });
    assert.deepEqual(sessionOwner(keys, id), { nodeId: 'node-a', inc });
    assert.ok(id.length < 80 && /^[\x21-\x7e]+$/.test(id));
    const parts = id.split('.');
    for (let i = 1; i < parts.length; i++) {
      const p = [...parts];
      p[i] = i === 1 ? 'node-b' : p[i]!.slice(0, -1) + (p[i]!.endsWith('A') ? 'B' : 'A');
      assert.equal(sessionOwner(keys, p.join('.')), undefined, `part ${i} tampered`);
    }
    assert.equal(sessionOwner(keys, 'random-id'), undefined);
    const rotated = clusterKeys(`new-secret-0123456789abcdef-0123456789,${SECRET}`, 'X');
    assert.deepEqual(sessionOwner(rotated, id), { nodeId: 'node-a', inc }, 'an id minted with the old secret still verifies');
    assert.equal(sessionOwner(clusterKeys('another-secret-0123456789abcdef-0123', 'X'), id), undefined);
    assert.throws(() => clusterKeys('short', 'X'), /at least 32 bytes/);
    assert.throws(() => clusterKeys(undefined, 'X'), /empty or unset/);
  });

  test('Berth-Forwarded: verifies once, for its node, request and time only', () => {
    const claims = {
      from: 'a',
      to: 'b',
      inc: 'i1',
      p: { kind: 'api-key' as const, subject: 'alice' },
      rt: 'default',
      m: 'POST',
      sid: 's',
      b: '',
    };
    const want = { to: 'b', inc: 'i1', rt: 'default', m: 'POST', sid: 's' };
    const nonces = new NonceCache();
    const h = signForwarded(keys, claims);
    assert.equal((verifyForwarded(keys, h, want, nonces) as { p: { subject: string } }).p.subject, 'alice');
    assert.equal(verifyForwarded(keys, h, want, nonces), 'replayed');
    assert.equal(verifyForwarded(keys, signForwarded(keys, claims), { ...want, inc: 'i2' }, nonces), 'meant for another node');
    assert.equal(verifyForwarded(keys, signForwarded(keys, claims), { ...want, sid: 'x' }, nonces), 'meant for another request');
    assert.equal(verifyForwarded(keys, signForwarded(keys, claims, Date.now() - 60_000), want, nonces), 'expired');
    const [f, payload, mac] = signForwarded(keys, claims).split('.');
    const forged = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), p: { kind: 'api-key', subject: 'root' } }),
    ).toString('base64url');
    assert.equal(verifyForwarded(keys, `${f}.${forged}.${mac}`, want, nonces), 'bad signature');
  });

  test('placement: full, draining and stale nodes are skipped; the better of two wins; self is always sampled', () => {
    const now = Date.now();
    const node = (id: string, sessions: number, warm = 1, extra = {}) => ({
      id,
      inc: 'i',
      url: '',
      draining: false,
      updatedAt: now,
      load: { rt: { sessions, max: 10, warm } },
      ...extra,
    });
    const view = [
      node('a', 5),
      node('b', 10),
      node('c', 0, 1, { draining: true }),
      node('d', 0, 1, { updatedAt: now - 60_000 }),
      node('e', 2),
    ];
    assert.deepEqual(
      candidates(view, 'rt', now, 5000).map((c) => c.id),
      ['a', 'e'],
    );
    assert.equal(choose(candidates(view, 'rt', now, 5000), 'a'), 'e', 'the emptier of self and the other');
    assert.equal(choose(candidates([node('a', 1), node('b', 0, 0)], 'rt', now, 5000), 'b'), 'a', 'a warm server beats fewer sessions');
    assert.equal(choose([], 'a'), undefined);
    const mem = [node('a', 0, 1, { freeMem: 100 }), node('b', 0, 1, { freeMem: 5000 }), node('c', 0)];
    assert.deepEqual(
      candidates(mem, 'rt', now, 5000, 1000).map((c) => c.id),
      ['b', 'c'],
      'short of memory: skipped; unknown: kept',
    );
  });
});

interface Node {
  name: string;
  url: string;
  mcp: string;
  proc: ChildProcess;
  logs: () => string;
  exited: Promise<number | null>;
}

const nodeProcs = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of nodeProcs) p.kill('SIGKILL');
});

async function startNode(
  name: string,
  host: string,
  redis: RedisServer,
  prefix: string[],
  cluster: Record<string, unknown> = {},
): Promise<Node> {
  const dir = tempDir(`berth-cluster-${name}-`);
  const file = join(dir, 'berth.yaml');
  const config = {
    server: { host, port: 0, admin: { tokenEnv: 'BERTH_ADMIN_TOKEN' }, drainTimeout: '2s' },
    runtimes: {
      default: {
        command: PROBE,
        isolation: 'process',
        // Not what this test is about: a network namespace, nft and slirp4netns per session (egress, the default) add
        // process spawns to every start, and a loaded machine then delays lease renewals into failovers.
        network: 'host',
        warmPool: 2,
        auth: { kind: 'api-key', keys: Object.entries(KEYS).map(([n, k]) => ({ name: n, sha256: sha(k) })) },
        limits: { requestsPerSecond: 1000, requestBurst: 1000, startQueueTimeout: '120s' },
      },
      // A stateless runtime: its 2026 clients' bridged calls live in one node's pool too.
      pool: {
        command: PROBE,
        mode: 'stateless',
        isolation: 'process',
        network: 'host',
        warmPool: 1,
        auth: { kind: 'api-key', keys: Object.entries(KEYS).map(([n, k]) => ({ name: n, sha256: sha(k) })) },
        limits: { requestsPerSecond: 1000, requestBurst: 1000, startQueueTimeout: '120s' },
      },
      // A principal may hold one of its sessions per node: a runtime session past that is refused after its claim.
      capped: {
        command: PROBE,
        isolation: 'process',
        network: 'host',
        warmPool: 0,
        auth: { kind: 'api-key', keys: Object.entries(KEYS).map(([n, k]) => ({ name: n, sha256: sha(k) })) },
        limits: { requestsPerSecond: 1000, requestBurst: 1000, startQueueTimeout: '10s', maxSessionsPerPrincipal: 1 },
      },
    },
    cluster: {
      redis: redis.url,
      nodeId: name,
      leaseTtl: '3s',
      renewInterval: '1s',
      viewInterval: '500ms',
      ...(redis.password ? { redisPasswordEnv: 'BERTH_REDIS_PASSWORD' } : {}),
      ...cluster,
    },
  };
  writeFileSync(file, JSON.stringify(config));
  const env = { ...process.env, BERTH_CLUSTER_SECRET: SECRET, BERTH_ADMIN_TOKEN: ADMIN, BERTH_REDIS_PASSWORD: redis.password ?? '' };
  const argv = [...prefix, process.execPath, 'bin/berth.js', 'serve', '--config', file];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  nodeProcs.add(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const mcp = await listeningUrl(proc, { timeoutMs: 30_000, what: `node ${name}`, context: () => err });
  return { name, mcp, url: new URL(mcp).origin, proc, logs: () => err, exited };
}

function auth(who: keyof typeof KEYS = 'alice') {
  return { authorization: `Bearer ${KEYS[who]}` };
}

async function init(node: Node, who: keyof typeof KEYS = 'alice'): Promise<string> {
  const r = await fetch(node.mcp, {
    method: 'POST',
    headers: { ...auth(who), accept: ACCEPT_BOTH, 'content-type': 'application/json' },
    body: initBody(),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `initialize through ${node.name}: ${text}`);
  const sid = r.headers.get('mcp-session-id')!;
  const n = await fetch(node.mcp, {
    method: 'POST',
    headers: { ...auth(who), accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  await n.text();
  return sid;
}

function call(
  node: Node,
  sid: string,
  id: number,
  name: string,
  args: Record<string, unknown>,
  extra: { signal?: AbortSignal; who?: keyof typeof KEYS; headers?: Record<string, string> } = {},
) {
  return fetch(node.mcp, {
    method: 'POST',
    headers: {
      ...auth(extra.who),
      accept: ACCEPT_BOTH,
      'content-type': 'application/json',
      'mcp-session-id': sid,
      'mcp-protocol-version': V,
      ...extra.headers,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }),
    signal: extra.signal,
  });
}

/** The text of a tools/call answered as JSON or SSE. */
async function resultText(r: Response): Promise<string> {
  const body = await r.text();
  assert.equal(r.status, 200, body);
  const msgs = (r.headers.get('content-type') ?? '').includes('event-stream') ? sseMessages(body) : [JSON.parse(body)];
  const res = msgs.find((m) => (m as { result?: unknown }).result) as { result: unknown } | undefined;
  assert.ok(res, body);
  return textOf(res.result);
}

async function admin(node: Node, path: string, method = 'GET', body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : undefined };
}

/** A 2026-07-28 tools/call in runtime session `rs`; the result's text. */
async function rsCall(node: Node, rs: string, n: number, name: string, args: Record<string, unknown>): Promise<string> {
  return resultText(await rsPost(node, rs, n, name, args));
}

/** The same call's response, to runtime `runtime` (default: the one at /mcp). */
function rsPost(node: Node, rs: string, n: number, name: string, args: Record<string, unknown>, runtime?: string): Promise<Response> {
  return fetch(runtime ? `${node.url}/runtimes/${runtime}/mcp` : node.mcp, {
    method: 'POST',
    headers: {
      ...auth(),
      accept: ACCEPT_BOTH,
      'content-type': 'application/json',
      'mcp-protocol-version': MODERN,
      'mcp-method': 'tools/call',
      'mcp-name': name,
      'berth-runtime-session': rs,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: n, method: 'tools/call', params: { name, arguments: args, _meta: ENVELOPE } }),
  });
}

/** An SDK client whose every HTTP request goes to the next node in turn. */
async function rotatingClient(nodes: Node[]): Promise<{ client: Client; transport: StreamableHTTPClientTransport; hits: string[] }> {
  let i = 0;
  const hits: string[] = [];
  const rotate = (input: string | URL | Request, init?: RequestInit) => {
    const node = nodes[i++ % nodes.length]!;
    hits.push(node.name);
    const u = new URL(input instanceof Request ? input.url : String(input));
    const target = new URL(u.pathname + u.search, node.url);
    return fetch(target, init);
  };
  const client = new Client({ name: 'cluster-test', version: '1.0.0' }, { capabilities: { elicitation: {} } });
  const transport = new StreamableHTTPClientTransport(new URL(nodes[0]!.mcp), {
    fetch: rotate as typeof fetch,
    requestInit: { headers: auth() },
  });
  await client.connect(transport, { timeout: 60_000 });
  return { client, transport, hits };
}

const HAVE_REDIS = redisAvailable();

describe('cluster: three nodes on one Redis', { skip: !HAVE_REDIS && 'redis-server is not installed' }, () => {
  let net: Net | undefined;
  let redis: RedisServer;
  let nodes: Node[] = [];
  let A: Node, B: Node, C: Node;
  let hosts: string[] = [];

  before(async () => {
    // BERTH_TEST_NETNS=0 forces the loopback fallback (what a non-root run gets).
    const useNetns = process.env.BERTH_TEST_NETNS !== '0' && netnsAvailable();
    if (useNetns) net = makeNet(3);
    redis = await startRedis(net ? { host: net.hostAddress, password: 'redis-test-password' } : undefined);
    hosts = net ? net.nodes.map((n) => n.address) : ['127.0.0.11', '127.0.0.12', '127.0.0.13'];
    nodes = await Promise.all(['a', 'b', 'c'].map((n, i) => startNode(n, hosts[i]!, redis, net ? net.exec(i) : [])));
    [A, B, C] = nodes as [Node, Node, Node];
    // Every node sees the other two.
    for (let t = 0; t < 50; t++) {
      const views = await Promise.all(nodes.map((n) => admin(n, '/admin/status')));
      if (views.every((v) => v.json.cluster.nodes.length === 3)) break;
      await sleep(200);
    }
    // Every node ready (warm pool filled, lease held).
    for (let t = 0; t < 100; t++) {
      const st = await Promise.all(nodes.map((n) => fetch(`${n.url}/readyz`).then((r) => r.status)));
      if (st.every((x) => x === 200)) break;
      await sleep(200);
    }
    console.log(`cluster test mode: ${net ? 'network namespaces' : 'loopback addresses'}`);
  });

  after(async () => {
    // Every node started, even when before() failed half-way.
    const procs = [...nodeProcs];
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
    await redis?.dispose();
    net?.cleanup();
  });

  test('/healthz and /readyz report cluster state', async () => {
    for (const n of nodes) {
      const h = await (await fetch(`${n.url}/healthz`)).json();
      assert.equal(h.cluster.node, n.name);
      assert.equal(h.cluster.lease, 'held');
      const r = await fetch(`${n.url}/readyz`);
      const body = await r.json();
      assert.equal(r.status, 200, JSON.stringify(body));
    }
  });

  test('placement: sessions created through A land on all three nodes; each node lists exactly its own', async () => {
    const sids = await Promise.all(Array.from({ length: 24 }, () => init(A)));
    const owners = new Set(sids.map(ownerOf));
    assert.deepEqual([...owners].sort(), ['a', 'b', 'c'], `owners: ${sids.map(ownerOf).join(',')}`);
    for (const n of nodes) {
      const listed = new Set(((await admin(n, '/admin/sessions')).json.sessions as { id: string }[]).map((s) => s.id));
      for (const sid of sids) assert.equal(listed.has(sid), ownerOf(sid) === n.name, `${sid} on ${n.name}`);
    }
    await Promise.all(
      sids.map((sid) =>
        fetch(A.mcp, { method: 'DELETE', headers: { ...auth(), 'mcp-session-id': sid, 'mcp-protocol-version': V } }).then((r) =>
          assert.equal(r.status, 204),
        ),
      ),
    );
  });

  test('a 2025 initialize at a URL naming a runtime session is placed on any node (the owner checks what its edge signed)', async () => {
    const url = `${A.url}/sessions/${'r'.repeat(22)}/mcp`;
    const sids = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const r = await fetch(url, {
          method: 'POST',
          headers: { ...auth(), accept: ACCEPT_BOTH, 'content-type': 'application/json' },
          body: initBody(),
        });
        const text = await r.text();
        assert.equal(r.status, 200, `initialize through A at ${url}: ${text}`);
        return r.headers.get('mcp-session-id')!;
      }),
    );
    assert.ok(new Set(sids.map(ownerOf)).size > 1, `placed on more than one node: ${sids.map(ownerOf).join(',')}`);
    for (const sid of sids) {
      const r = await fetch(A.mcp, { method: 'DELETE', headers: { ...auth(), 'mcp-session-id': sid, 'mcp-protocol-version': V } });
      assert.equal(r.status, 204);
    }
  });

  test('any node, every request: calls, state, elicitation, progress and logging through rotating nodes', async () => {
    const { client, transport, hits } = await rotatingClient(nodes);
    client.setRequestHandler(ElicitRequestSchema, async (r) => ({ action: 'accept', content: { answer: `yes to ${r.params.message}` } }));
    const logs: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params.data));
    for (let i = 0; i < 6; i++) assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: `m${i}` } })), `m${i}`);
    await client.callTool({ name: 'state_set', arguments: { value: 'kept' } });
    for (let i = 0; i < 3; i++)
      assert.equal(textOf(await client.callTool({ name: 'state_get', arguments: {} })), 'kept', 'one sandbox behind every node');
    for (let i = 0; i < 3; i++) {
      const ask = JSON.parse(textOf(await client.callTool({ name: 'ask', arguments: { question: `q${i}` } })));
      assert.deepEqual(ask, { action: 'accept', content: { answer: `yes to q${i}` } });
    }
    const progress: number[] = [];
    assert.equal(
      textOf(
        await client.callTool({ name: 'progress', arguments: { steps: 4 } }, undefined, {
          onprogress: (p) => void progress.push(p.progress),
        }),
      ),
      'done 4',
    );
    await client.callTool({ name: 'log', arguments: { message: 'hello-cluster' } });
    await sleep(100);
    assert.ok(progress.length >= 3, `progress: ${progress}`);
    assert.ok(logs.includes('hello-cluster'));
    assert.deepEqual(new Set(hits), new Set(['a', 'b', 'c']));
    await transport.terminateSession();
    await client.close();
  });

  test('resume across nodes: a stream cut on B is resumed through A; the elicitation and the result arrive once', async () => {
    // A session owned by C (placed until one lands there).
    let sid = '';
    for (let t = 0; t < 30 && ownerOf(sid) !== 'c'; t++) sid = await init(A);
    assert.equal(ownerOf(sid), 'c');
    const ac = new AbortController();
    const r = await call(B, sid, 7, 'ask_later', { question: 'colour?', delayMs: 400 }, { signal: ac.signal });
    const primed = sseEvents(await readUntil(r, (ev) => ev.length >= 1));
    ac.abort();
    await sleep(700);
    const again = await fetch(A.mcp, {
      headers: {
        ...auth(),
        accept: 'text/event-stream',
        'mcp-session-id': sid,
        'mcp-protocol-version': V,
        'last-event-id': primed[0]!.id!,
      },
    });
    assert.equal(again.status, 200);
    const text = await readUntil(again, (ev) => ev.some((e) => e.data.includes('elicitation/create')));
    const ask = sseMessages(text).find((m) => (m as { method?: string }).method === 'elicitation/create') as {
      id: number;
      params: { message: string };
    };
    assert.equal(ask.params.message, 'colour?');
    const answer = await fetch(B.mcp, {
      method: 'POST',
      headers: { ...auth(), accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': sid, 'mcp-protocol-version': V },
      body: JSON.stringify({ jsonrpc: '2.0', id: ask.id, result: { action: 'accept', content: { answer: 'teal' } } }),
    });
    assert.equal(answer.status, 202);
    const more = await readUntil(again, (ev) => ev.some((e) => e.data.includes('"id":7')));
    const all = sseMessages(text + more) as Array<{ id?: number; method?: string; result?: unknown }>;
    assert.equal(all.filter((m) => m.method === 'elicitation/create').length, 1, 'asked once');
    assert.equal(all.filter((m) => m.id === 7).length, 1, 'one result');
    assert.match(textOf(all.find((m) => m.id === 7)!.result), /teal/);
  });

  test('runtime sessions (2026 clients): one sandbox whichever node each request hits; DELETE through any node', async () => {
    const id = randomBytes(16).toString('base64url');
    const post = (node: Node, n: number, name: string, args: Record<string, unknown>) => rsCall(node, id, n, name, args);
    await post(A, 1, 'state_set', { value: 'rs-kept' });
    const seen = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const node = nodes[i % 3]!;
      assert.equal(await post(node, 10 + i, 'state_get', {}), 'rs-kept', `via ${node.name}`);
      seen.add(JSON.parse(await post(node, 20 + i, 'whoami', {})).pid);
    }
    assert.equal(seen.size, 1, 'one sandbox');
    const del = (node: Node) => fetch(node.mcp, { method: 'DELETE', headers: { ...auth(), 'berth-runtime-session': id } });
    assert.equal((await del(B)).status, 204);
    assert.equal((await del(C)).status, 404, 'gone, whichever node is asked');
    assert.notEqual(await post(C, 30, 'state_get', {}), 'rs-kept', 'the id names a fresh sandbox after DELETE');
    assert.equal((await del(A)).status, 204);
  });

  test("a runtime session's Redis record lives for the session's lifetime once it exists; a refused one's lapses within its placing time", async () => {
    const db = redis.url.startsWith('redis://') ? new Redis(redis.url, { password: redis.password }) : new Redis({ path: redis.url });
    const created: string[] = [];
    const call = (rs: string) => rsPost(A, rs, 1, 'echo', { text: 'x' }, 'capped');
    try {
      const records = async () => new Set(await db.keys('{berth}:rs:*'));
      const seen = { served: 0, refused: 0 };
      // One session per node for this principal: of four new ids, at least one is refused (429) after its claim.
      for (let i = 0; i < 4; i++) {
        const before = await records();
        const rs = randomBytes(16).toString('base64url');
        const r = await call(rs);
        const body = await r.text();
        const added = [...(await records())].filter((k) => !before.has(k));
        assert.equal(added.length, 1, `one new record for id ${i}: ${added.join(', ')}`);
        const key = added[0]!;
        if (r.status === 429) {
          seen.refused++;
          // startQueueTimeout 10 s + startupTimeout 30 s + 60 s. Before, it stood for maxLifetime (8 h).
          const lapses = await db.pttl(key);
          assert.ok(lapses > 0 && lapses <= 100_000, `the refused one's record lapses within 100 s: ${lapses} ms`);
          continue;
        }
        assert.equal(r.status, 200, body);
        seen.served++;
        created.push(rs);
        // Its owner extends it to maxLifetime (8 h) + 60 s once the session exists.
        for (let t = 0; (await db.pttl(key)) <= 100_000; t++) {
          assert.ok(t < 200, 'the owner extends the record');
          await sleep(50);
        }
        assert.ok((await db.pttl(key)) > 8 * 3_600_000 - 60_000, 'lives for the session');
      }
      assert.ok(seen.refused >= 1 && seen.served >= 1, JSON.stringify(seen));
    } finally {
      for (const rs of created)
        await fetch(`${A.url}/runtimes/capped/mcp`, { method: 'DELETE', headers: { ...auth(), 'berth-runtime-session': rs } });
      db.disconnect();
    }
  });

  test('bridged multi-round-trip calls (2026 client, no runtime session; stateful and stateless runtimes): the retry finds its call through any node', async () => {
    const rawCall = async (node: Node, id: number, extra: Record<string, unknown> = {}, runtime?: string) => {
      const r = await fetch(runtime ? `${node.url}/runtimes/${runtime}/mcp` : node.mcp, {
        method: 'POST',
        headers: {
          ...auth(),
          accept: ACCEPT_BOTH,
          'content-type': 'application/json',
          'mcp-protocol-version': MODERN,
          'mcp-method': 'tools/call',
          'mcp-name': 'ask',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: {
            name: 'ask',
            arguments: { question: 'q' },
            ...extra,
            _meta: { ...ENVELOPE, 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } },
          },
        }),
      });
      const text = await r.text();
      assert.equal(r.status, 200, text);
      // JSON, or SSE when the answer took longer than streams.jsonWindow (a loaded machine).
      const msgs = (r.headers.get('content-type') ?? '').includes('event-stream') ? sseMessages(text) : [JSON.parse(text)];
      return msgs.find((m) => (m as { id?: unknown }).id === id) as any;
    };
    for (const [first, retry, runtime] of [
      [A, B],
      [B, C],
      [C, A],
      [A, C, 'pool'],
      [B, A, 'pool'],
    ] as const) {
      const asked = await rawCall(first, 1, {}, runtime);
      assert.equal(asked.result?.resultType, 'input_required', JSON.stringify(asked));
      const [key] = Object.keys(asked.result.inputRequests);
      const inputResponses = { [key!]: { action: 'accept', content: { answer: `via ${retry.name}` } } };
      const done = await rawCall(retry, 2, { inputResponses, requestState: asked.result.requestState }, runtime);
      assert.equal(done.result?.resultType, 'complete', JSON.stringify(done));
      assert.deepEqual(JSON.parse(done.result.content[0].text), { action: 'accept', content: { answer: `via ${retry.name}` } });
    }
  });

  test('forgery: mutated ids 404 without a hop, forged or replayed Berth-Forwarded 403, another principal 404', async () => {
    const sid = await init(A);
    const owner = nodes.find((n) => n.name === ownerOf(sid))!;
    const edge = nodes.find((n) => n !== owner)!;
    const before = (await admin(edge, '/admin/status')).json.cluster.forwarded;
    const mutated = sid.slice(0, -2) + (sid.endsWith('AA') ? 'BB' : 'AA');
    const bad = await call(edge, mutated, 1, 'echo', { text: 'x' });
    assert.equal(bad.status, 404);
    assert.equal((await bad.json()).error.code, -32001);
    const otherNode = sid.replace(`.${owner.name}.`, `.${edge.name}.`);
    assert.equal((await call(edge, otherNode, 1, 'echo', { text: 'x' })).status, 404, 'an id re-pointed at another node');
    assert.equal((await admin(edge, '/admin/status')).json.cluster.forwarded, before, 'no hop for a bad id');
    const forged = await call(owner, sid, 2, 'echo', { text: 'x' }, { headers: { 'berth-forwarded': 'f1.eyJ9.AAAA' } });
    assert.equal(forged.status, 403);
    assert.match((await forged.json()).error.message, /Berth-Forwarded/);
    assert.equal((await call(edge, sid, 3, 'echo', { text: 'x' }, { who: 'bob' })).status, 404, "another principal's session");
    assert.equal(await resultText(await call(edge, sid, 4, 'echo', { text: 'ok' })), 'ok');
  });

  test('drain: new sessions through C go to A and B; C keeps its own sessions; undrain takes it back', async () => {
    let mine = '';
    for (let t = 0; t < 30 && ownerOf(mine) !== 'c'; t++) mine = await init(A);
    assert.equal(ownerOf(mine), 'c');
    const d = await admin(C, '/admin/drain', 'POST', {});
    assert.equal(d.status, 200);
    assert.equal(d.json.draining, true);
    const ready = await fetch(`${C.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.ok((await ready.json()).reasons.includes('draining'));
    await sleep(800); // peers see it at their next view refresh
    const sids = await Promise.all(Array.from({ length: 12 }, () => init(C)));
    assert.ok(
      sids.every((s) => ownerOf(s) !== 'c'),
      `owners: ${sids.map(ownerOf)}`,
    );
    const viaA = await Promise.all(Array.from({ length: 6 }, () => init(A)));
    assert.ok(viaA.every((s) => ownerOf(s) !== 'c'));
    assert.equal(await resultText(await call(C, mine, 1, 'echo', { text: 'still here' })), 'still here');
    assert.equal(await resultText(await call(A, mine, 2, 'echo', { text: 'via a' })), 'via a');
    // The CLI undoes it.
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['bin/berth.js', 'drain', '--url', C.url, '--undo'], {
      cwd: ROOT,
      env: { ...process.env, BERTH_ADMIN_TOKEN: ADMIN },
    }).toString();
    assert.match(out, /node c taking new sessions/);
    assert.equal((await fetch(`${C.url}/readyz`)).status, 200);
    // With a deadline, the node's remaining sessions end when it passes.
    const out2 = execFileSync(process.execPath, ['bin/berth.js', 'drain', '--url', C.url, '--deadline', '500ms'], {
      cwd: ROOT,
      env: { ...process.env, BERTH_ADMIN_TOKEN: ADMIN },
    }).toString();
    assert.match(out2, /node c draining \(sessions end at/);
    await sleep(1200);
    assert.equal((await call(A, mine, 3, 'echo', { text: 'x' })).status, 404, 'ended at the drain deadline');
    await admin(C, '/admin/drain', 'DELETE');
    await sleep(800);
  });

  test('Redis down: new sessions 503 with a clear message, live ones keep working; Redis back: sessions again', async () => {
    const sids = await Promise.all(Array.from({ length: 6 }, () => init(A)));
    const rs = randomBytes(16).toString('base64url');
    await rsCall(B, rs, 1, 'state_set', { value: 'survives' });
    for (const n of nodes) await rsCall(n, rs, 1, 'state_get', {}); // every node has seen its route
    await redis.stop();
    await sleep(2000); // 1.5 renewals without success
    for (const n of nodes) {
      const r = await fetch(n.mcp, {
        method: 'POST',
        headers: { ...auth(), accept: ACCEPT_BOTH, 'content-type': 'application/json' },
        body: initBody(9),
      });
      assert.equal(r.status, 503);
      const body = await r.json();
      assert.match(body.error.message, /Redis\) is unreachable/);
      assert.equal(body.id, 9);
      assert.equal((await fetch(`${n.url}/readyz`)).status, 503);
    }
    for (const sid of sids)
      for (const n of nodes)
        assert.equal(await resultText(await call(n, sid, 1, 'echo', { text: 'alive' })), 'alive', `${ownerOf(sid)} via ${n.name}`);
    for (const n of nodes)
      assert.equal(await rsCall(n, rs, 2, 'state_get', {}), 'survives', `runtime session via ${n.name}, from the last route seen`);
    await assert.rejects(
      rsCall(A, randomBytes(16).toString('base64url'), 2, 'state_get', {}),
      /503[\s\S]*Redis\) is unreachable|Redis\) is unreachable[\s\S]*503/,
      'a new runtime session cannot be placed',
    );
    await redis.start();
    // While the nodes reclaim their leases (Redis came back empty), no live session may be declared gone: a 404 is
    // final for a client. Every session is called through every node until a full renewal after all are ready.
    const lost: string[] = [];
    const probe = () =>
      Promise.all(
        sids.flatMap((sid) =>
          nodes.map(async (n) => {
            const r = await call(n, sid, 7, 'echo', { text: 'alive' });
            if (r.status === 404) lost.push(`${ownerOf(sid)} via ${n.name}`);
            await r.text();
          }),
        ),
      );
    let ok = false;
    for (let t = 0; t < 40 && !ok; t++) {
      await probe();
      await sleep(100);
      ok = (await Promise.all(nodes.map((n) => fetch(`${n.url}/readyz`).then((r) => r.status)))).every((s) => s === 200);
    }
    assert.ok(ok, 'every node ready again');
    for (const end = Date.now() + 2500; Date.now() < end;) await probe();
    assert.deepEqual(lost, [], 'live sessions answered 404 while Redis recovered');
    await sleep(600);
    // Redis came back empty: the owner restored the runtime session's record, so no node places it anew.
    for (const n of nodes)
      assert.equal(await rsCall(n, rs, 3, 'state_get', {}), 'survives', `runtime session via ${n.name} after Redis restarted empty`);
    const again = await Promise.all(Array.from({ length: 9 }, () => init(B)));
    assert.deepEqual(new Set(again.map(ownerOf)).size > 1, true);
  });

  test('partition: a forwarded request to a cut-off node fails fast with a JSON-RPC error; healed, it works', async () => {
    let sid = '';
    for (let t = 0; t < 30 && ownerOf(sid) !== 'b'; t++) sid = await init(A);
    assert.equal(ownerOf(sid), 'b');
    if (net) net.partition(1);
    else B.proc.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      const r = await call(A, sid, 5, 'echo', { text: 'x' });
      const ms = Date.now() - t0;
      assert.equal(r.status, 502);
      const body = await r.json();
      assert.equal(body.id, 5);
      assert.equal(body.error.data.node, 'b');
      assert.match(body.error.message, /Bad Gateway: session owner b/);
      assert.ok(ms < 6500, `failed after ${ms} ms`);
    } finally {
      if (net) net.heal(1);
      else B.proc.kill('SIGCONT');
    }
    // Back (its lease reclaimed if it lapsed meanwhile).
    let status = 0;
    for (let t = 0; t < 40 && status !== 200; t++) {
      await sleep(250);
      status = (await call(A, sid, 6, 'echo', { text: 'y' })).status;
    }
    assert.equal(status, 200);
  });

  test("kill: a SIGKILLed node's sessions fail fast (502), then answer 404 within the lease; others keep working", async () => {
    const sids = await Promise.all(Array.from({ length: 12 }, () => init(A)));
    const onB = sids.filter((s) => ownerOf(s) === 'b');
    const others = sids.filter((s) => ownerOf(s) !== 'b');
    assert.ok(onB.length > 0 && others.length > 0);
    B.proc.kill('SIGKILL');
    await B.exited;
    const killedAt = Date.now();
    // New sessions meanwhile: B is still in the view, so an edge may pick it; it then tries another node. They run
    // beside the polling below (cold starts queue for start slots, and must not eat the 404 window).
    const meanwhileP = Promise.all(Array.from({ length: 6 }, () => init(A)));
    let got404 = 0;
    while (Date.now() - killedAt < 3000 + 500 + 2000) {
      const t0 = Date.now();
      const r = await call(A, onB[0]!, 1, 'echo', { text: 'x' });
      assert.ok(Date.now() - t0 < 2000, 'never hangs');
      assert.ok(r.status === 502 || r.status === 404, `status ${r.status}`);
      const body = await r.json();
      assert.equal(body.jsonrpc, '2.0');
      if (r.status === 404) {
        got404 = Date.now() - killedAt;
        break;
      }
      await sleep(200);
    }
    assert.ok(got404 > 0, "B's session answers 404 within leaseTtl + viewInterval + 2 s");
    let viaC = 0;
    for (let t = 0; t < 10 && viaC !== 404; t++) {
      viaC = (await call(C, onB[0]!, 2, 'echo', { text: 'x' })).status;
      if (viaC !== 404) await sleep(200);
    }
    assert.equal(viaC, 404, 'C drops B from its view at its next refresh');
    assert.ok(Date.now() - killedAt < 3000 + 500 + 3000, 'everywhere within leaseTtl + viewInterval + 3 s');
    const meanwhile = await meanwhileP;
    assert.ok(
      meanwhile.every((s) => ownerOf(s) !== 'b'),
      `owners: ${meanwhile.map(ownerOf)}`,
    );
    for (const sid of others) assert.equal(await resultText(await call(A, sid, 3, 'echo', { text: 'on' })), 'on');
    const fresh = await Promise.all(Array.from({ length: 6 }, () => init(C)));
    assert.ok(
      fresh.every((s) => ownerOf(s) !== 'b'),
      'no new session on the dead node',
    );
  });

  test("restart: a node restarted under the same name waits out its predecessor's lease; the old ids stay dead", async () => {
    let old = '';
    for (let t = 0; t < 30 && ownerOf(old) !== 'c'; t++) old = await init(A);
    assert.equal(ownerOf(old), 'c');
    C.proc.kill('SIGKILL');
    await C.exited;
    const killedAt = Date.now();
    const C2 = await startNode('c', hosts[2]!, redis, net ? net.exec(2) : []);
    nodes[2] = C2;
    // It listens only once it holds the lease, which it did not take over from the killed process.
    assert.ok(Date.now() - killedAt >= 1500, `started after ${Date.now() - killedAt} ms, before the old lease (3 s) lapsed`);
    assert.equal((await (await fetch(`${C2.url}/healthz`)).json()).cluster.lease, 'held');
    await sleep(800);
    for (const n of [A, C2]) assert.equal((await call(n, old, 1, 'echo', { text: 'x' })).status, 404, `old id via ${n.name}`);
    let landed = false;
    for (let t = 0; t < 30 && !landed; t++) landed = ownerOf(await init(A)) === 'c';
    assert.ok(landed, 'new sessions reach the restarted node');
  });

  test('SIGTERM: a stopping node leaves the cluster; peers answer 404 for its sessions at their next refresh', async () => {
    const C2 = nodes[2]!;
    let mine = '';
    for (let t = 0; t < 30 && ownerOf(mine) !== 'a'; t++) mine = await init(C2);
    assert.equal(ownerOf(mine), 'a');
    A.proc.kill('SIGTERM');
    assert.equal(await A.exited, 0);
    const stoppedAt = Date.now();
    let status = 0;
    while (status !== 404 && Date.now() - stoppedAt < 2000) {
      status = (await call(C2, mine, 1, 'echo', { text: 'x' })).status;
      if (status !== 404) await sleep(100);
    }
    assert.equal(status, 404, 'within a view refresh, not the lease time');
    assert.ok(Date.now() - stoppedAt < 1500, `${Date.now() - stoppedAt} ms`);
  });
});
