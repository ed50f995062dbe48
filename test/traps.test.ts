// The small traps an attacker (or an unlucky operator) walks into: each test drives a real berth process with the
// official SDK client or raw HTTP on loopback. Drivers this host cannot run are skipped with the reason printed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import {
  ACCEPT_BOTH,
  connect,
  PROBE,
  rawInit,
  ROOT,
  runBerth,
  serveBerth,
  startBerth,
  textOf,
  type BerthProcess,
} from './helpers/berth.ts';

/** False when the driver works here, else why not (printed as a skip). */
async function unavailable(d: typeof namespaceDriver): Promise<string | false> {
  const p = await d.probe(ROOT);
  if (p.ok) return false;
  console.log(`# SKIP ${d.name} traps: ${p.reason}`);
  return `${d.name} driver unavailable here: ${p.reason}`;
}

/** Polls until check() returns a value (not undefined), or fails with the last state after timeoutMs. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (${String(last ?? 'still waiting')})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const tmp = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(d, 0o755);
  return d;
};

for (const driver of [namespaceDriver, gvisorDriver]) {
  describe(`config masking (${driver.name})`, async () => {
    const skip = await unavailable(driver);
    test('a config file named through a symlink is masked by its real path', { skip }, async () => {
      const dir = tmp('berth-traps-cfg-');
      const elsewhere = tmp('berth-traps-link-');
      const real = join(dir, 'berth.json');
      const link = join(elsewhere, 'link.json');
      const config = {
        server: { port: 0, admin: { tokenSha256: '0'.repeat(64) } },
        runtimes: { default: { command: PROBE, cwd: dir, mounts: [ROOT], isolation: driver.name, network: 'none', warmPool: 1 } },
      };
      writeFileSync(real, JSON.stringify(config)); // 0644 in a 0755 directory the sandbox sees: only the mask hides it
      symlinkSync(real, link);
      const berth = await startBerth(['serve', '--config', link]);
      try {
        const { client } = await connect(berth.url);
        const seen = textOf(await client.callTool({ name: 'fs', arguments: { op: 'read', path: real } }));
        assert.ok(seen === '' || seen === 'error: EACCES', `the sandbox read berth's config: ${seen.slice(0, 80)}`);
        await client.close();
      } finally {
        await berth.stop();
        rmSync(dir, { recursive: true, force: true });
        rmSync(elsewhere, { recursive: true, force: true });
      }
    });
  });
}

describe('inheritEnv', () => {
  test('naming a variable berth reads a secret from is refused at validation, naming the variable', () => {
    const dir = tmp('berth-traps-env-');
    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      ['ADMIN_TOKEN_X', { admin: { tokenEnv: 'ADMIN_TOKEN_X' } }, {}],
      ['OTHER_RUNTIME_KEYS', {}, { keyed: { command: 'x', auth: { kind: 'api-key', keysEnv: 'OTHER_RUNTIME_KEYS' } } }],
      ['BERTH_CLUSTER_SECRET', {}, {}],
      ['REDIS_PW', {}, {}],
    ];
    try {
      for (const [name, server, more] of cases) {
        const file = join(dir, `${name}.json`);
        const cluster = { redis: 'redis://127.0.0.1:1', redisPasswordEnv: 'REDIS_PW' };
        writeFileSync(
          file,
          JSON.stringify({
            server,
            runtimes: { default: { command: 'x', inheritEnv: ['HOME', name] }, ...more },
            ...(name.includes('CLUSTER') || name.includes('REDIS') ? { cluster } : {}),
          }),
        );
        const r = spawnSync(process.execPath, ['bin/berth.js', 'check', '--config', file], { cwd: ROOT, encoding: 'utf8' });
        assert.equal(r.status, 2, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`runtimes\\.default\\.inheritEnv: inheritEnv must not pass ${name} into the sandbox`), name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Sends raw bytes; resolves with the status and body of the first response. */
function rawRequest(url: string, head: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host: hostname, port: Number(port) }, () => s.write(head));
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (!m) return reject(new Error(`no HTTP response: ${got.slice(0, 200)}`));
      resolve({ status: Number(m[1]), body: got.slice(got.indexOf('\r\n\r\n') + 4) });
    });
  });
}

describe('refusals that say what happened', () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--network', 'host', '--warm-pool', '0']);
  });
  after(async () => {
    await berth.stop();
  });

  test('2,000 headers get 431 with a JSON-RPC error, not "must carry a Host header"', async () => {
    const many = Array.from({ length: 2000 }, (_, i) => `x-h${i}: v\r\n`).join('');
    const r = await rawRequest(berth.url, `GET /healthz HTTP/1.1\r\n${many}host: 127.0.0.1\r\nconnection: close\r\n\r\n`);
    assert.equal(r.status, 431, r.body);
    const body = JSON.parse(r.body) as { jsonrpc: string; error: { code: number; message: string } };
    assert.equal(body.jsonrpc, '2.0');
    assert.match(body.error.message, /Request Header Fields Too Large: more than 100 header fields/);
    // A request at the limit is served.
    const fine = Array.from({ length: 98 }, (_, i) => `x-h${i}: v\r\n`).join('');
    assert.equal((await rawRequest(berth.url, `GET /healthz HTTP/1.1\r\n${fine}host: 127.0.0.1\r\nconnection: close\r\n\r\n`)).status, 200);
  });

  test("a server's oversized stdout line fails the client's calls naming maxMessageSize, not SIGKILL", async () => {
    const dir = tmp('berth-traps-big-');
    const file = join(dir, 'berth.json');
    writeFileSync(
      file,
      JSON.stringify({
        server: { port: 0 },
        runtimes: { default: { command: PROBE, isolation: 'process', network: 'host', warmPool: 1, limits: { maxMessageSize: '1MiB' } } },
      }),
    );
    const flooding = await startBerth(['serve', '--config', file]);
    try {
      const { client } = await connect(flooding.url);
      const err = await client.callTool({ name: 'flood', arguments: { mb: 4 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, 'the call failed');
      assert.match(err.message, /maxMessageSize \(1 MiB\)/);
      assert.doesNotMatch(err.message, /SIGKILL/);
      await client.close().catch(() => undefined);
    } finally {
      await flooding.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("a server's answer nested too deep to re-serialise fails that call with a clear error, a large one passes as its bytes; the session keeps working", async () => {
  const berth = await runBerth(['--isolation', 'process', '--network', 'host', '--warm-pool', '1']);
  try {
    const { client, transport } = await connect(berth.url);
    // 20 KB of nesting: berth re-serialises a message this short, and JSON.stringify runs out of stack.
    const err = await client.callTool({ name: 'deep_answer', arguments: { depth: 10_000 } }).then(
      (r) => new Error(`answered: ${Object.keys(r).join(',')}`),
      (e: Error) => e,
    );
    assert.match(err.message, /the server's answer could not be passed on/);
    // 200 KB of it passes through as the bytes it came as (src/wire/raw-json.ts): valid JSON, delivered as sent.
    const deep = (await client.callTool({ name: 'deep_answer', arguments: { depth: 100_000 } })) as { deep?: unknown };
    let depth = 0;
    for (let v: unknown = deep.deep; Array.isArray(v); v = v[0]) depth++;
    assert.equal(depth, 100_000);
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here');
    await transport.terminateSession();
    await client.close();
  } finally {
    await berth.stop();
  }
});

test('a client that stops reading its answers has its connection closed after stalledWriteTimeout; berth serves the rest', async () => {
  const dir = tmp('berth-traps-stall-');
  const file = join(dir, 'berth.json');
  writeFileSync(
    file,
    JSON.stringify({
      server: { port: 0, stalledWriteTimeout: '1s' },
      runtimes: { default: { command: PROBE, isolation: 'process', network: 'host', warmPool: 1 } },
    }),
  );
  const berth = await startBerth(['serve', '--config', file]);
  try {
    const sid = await rawInit(berth.url);
    // 48 MiB asked for over a raw connection that reads nothing: more than loopback's socket buffers hold.
    const bytes = 48 * 2 ** 20;
    const call = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'big', arguments: { bytes } } });
    const u = new URL(berth.url);
    const socket = tcpConnect(Number(u.port), u.hostname);
    socket.pause();
    socket.write(
      `POST ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\naccept: ${ACCEPT_BOTH}\r\ncontent-type: application/json\r\n` +
        `mcp-session-id: ${sid}\r\nmcp-protocol-version: 2025-11-25\r\ncontent-length: ${Buffer.byteLength(call)}\r\n\r\n${call}`,
    );
    // berth says when it cuts the connection; then whatever the socket still holds is read, short of the answer.
    for (let i = 0; i < 600 && !berth.logs().includes('closed a connection whose client read none of its answers'); i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(berth.logs(), /closed a connection whose client read none of its answers for stalledWriteTimeout/);
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => undefined); // the reset berth's close may cause
    socket.resume();
    await once(socket, 'close');
    assert.ok(received < bytes, `the whole answer arrived (${received} bytes): the connection was not cut`);
    // Another client is served as before.
    const { client, transport } = await connect(berth.url);
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'served' } })), 'served');
    await transport.terminateSession();
    await client.close();
  } finally {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

type Health = { status: string; runtimes: Record<string, { starts: { consecutiveFailures: number; lastError: string | null } }> };
type Ready = { ready: boolean; reasons: string[] };

describe('a runtime whose servers cannot start', () => {
  for (const warmPool of ['1', '0']) {
    test(`shows it in /healthz and /readyz (warm pool ${warmPool})`, async () => {
      // serve, not run: berth run would refuse to go on when its first server cannot start (test/first-run.test.ts).
      const berth = await serveBerth({
        command: [process.execPath, '-e', 'process.exit(3)'],
        isolation: 'process',
        network: 'host',
        warmPool: Number(warmPool),
      });
      try {
        if (warmPool === '0') {
          // Nothing starts until a client asks; its initialize fails.
          await assert.rejects(connect(berth.url));
        }
        const health = await until('a failed start in /healthz', async () => {
          const h = (await (await fetch(new URL('/healthz', berth.url))).json()) as Health;
          return h.runtimes.default!.starts.consecutiveFailures > 0 ? h : undefined;
        });
        assert.equal(health.status, 'degraded');
        assert.match(health.runtimes.default!.starts.lastError!, /exited during start-up \(code 3/);
        const r = await fetch(new URL('/readyz', berth.url));
        assert.equal(r.status, 503);
        const ready = (await r.json()) as Ready;
        assert.ok(
          ready.reasons.some((x) => /runtime default: its servers fail to start \(\d+ in a row; last: .*code 3/.test(x)),
          ready.reasons.join('; '),
        );
      } finally {
        await berth.stop();
      }
    });
  }
});

describe('SIGTERM while servers are starting', async () => {
  const gvisor = await unavailable(gvisorDriver);
  for (const [driver, skip, network] of [
    ['process', false, 'host'],
    ['gvisor', gvisor, 'none'],
  ] as const) {
    test(`ends at once instead of waiting out startupTimeout (${driver})`, { skip }, async () => {
      // Servers that never answer the ready ping: every start waits for its startupTimeout (60 s here).
      const berth = await serveBerth({
        command: ['/usr/bin/sleep', '1000'],
        isolation: driver,
        network,
        warmPool: 2,
        limits: { startupTimeout: '60s' },
      });
      const t0 = Date.now();
      const code = await berth.stop('SIGTERM');
      const took = Date.now() - t0;
      assert.equal(code, 0);
      assert.ok(took < 20_000, `SIGTERM took ${took} ms`);
    });
  }
});

describe('gVisor --pids', async () => {
  const skip = await unavailable(gvisorDriver);
  test("limits the server's processes; runsc's own threads do not count", { skip }, async () => {
    // Bundled (no tsx): a node server's threads are then fixed at start, so the count below is the children's.
    const hostile = await compiledFixture('hostile-server');
    const berth = await runBerth(['--isolation', 'gvisor', '--network', 'none', '--pids', '64', '--warm-pool', '1'], hostile);
    try {
      const { client } = await connect(berth.url);
      const r = JSON.parse(textOf(await client.callTool({ name: 'fork', arguments: { count: 200, sleepS: 5 } }))) as {
        started: number;
        failed: string;
      };
      // 64 tasks in all: node's own threads (about 11) and its children.
      assert.ok(r.started >= 32 && r.started < 64, JSON.stringify(r));
      assert.equal(r.failed, 'EAGAIN');
      // The server lives on within its limit.
      assert.equal(JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).port, null);
      await client.close();
    } finally {
      await berth.stop();
    }
  });
});
