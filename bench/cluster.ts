// The cluster figure of `npm run bench`: two berth nodes on one Redis (loopback addresses 127.0.0.21/.22, Redis on
// a unix socket), sessions owned by node 1, and the same echo load sent to the owner and through the other node
// (one forwarding hop), in alternating rounds of the same run. Shown, never asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { listeningUrl } from '../test/helpers/berth.js';
import { redisAvailable, startRedis } from '../test/helpers/redis.js';
import { ROOT } from './targets.js';

export interface ClusterResult {
  concurrency: number;
  rounds: number;
  /** echo calls/s with every client talking to the session's owner node. */
  ownerCallsPerS: number;
  /** the same, each request entering at the other node and forwarded to the owner. */
  forwardedCallsPerS: number;
  ownerP50Ms: number;
  forwardedP50Ms: number;
  errors: number;
}

const SECRET = 'bench-cluster-secret-0123456789abcdef';

async function node(name: string, host: string, redis: string, probe: string): Promise<{ url: string; proc: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), `berth-bench-cluster-${name}-`));
  const file = join(dir, 'berth.yaml');
  const config = {
    server: { host, port: 0 },
    runtimes: {
      default: {
        command: [process.execPath, probe],
        isolation: 'process',
        warmPool: 4,
        limits: { requestsPerSecond: 100000, requestBurst: 100000 },
      },
    },
    cluster: { redis, nodeId: name, placement: 'local' },
  };
  writeFileSync(file, JSON.stringify(config));
  const proc = spawn(process.execPath, ['bin/berth.js', 'serve', '--config', file], {
    cwd: ROOT,
    env: { ...process.env, BERTH_CLUSTER_SECRET: SECRET },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const url = await listeningUrl(proc, { timeoutMs: 30_000, what: `cluster node ${name}` });
  return { url, proc };
}

/** A client of a session on `owner`; with `via`, every request enters at that node instead. */
async function client(owner: string, via?: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport; sid: string }> {
  const c = new Client({ name: 'bench-cluster', version: '1' });
  const t = new StreamableHTTPClientTransport(new URL(owner));
  await c.connect(t);
  if (!via) return { client: c, transport: t, sid: t.sessionId! };
  // A second transport on the same session, whose requests go to the other node.
  const redirect = (input: string | URL | Request, init?: RequestInit) =>
    fetch(new URL(new URL(String(input instanceof Request ? input.url : input)).pathname, via), init);
  const t2 = new StreamableHTTPClientTransport(new URL(owner), { sessionId: t.sessionId, fetch: redirect as typeof fetch });
  const c2 = new Client({ name: 'bench-cluster', version: '1' });
  // Already initialized: attach without a new initialize (the SDK skips it when the transport has a session id).
  await c2.connect(t2);
  return { client: c2, transport: t2, sid: t.sessionId! };
}

async function load(clients: Client[], ms: number): Promise<{ calls: number; lat: number[]; errors: number }> {
  const end = performance.now() + ms;
  const lat: number[] = [];
  let errors = 0;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await c.callTool({ name: 'echo', arguments: { text: 'hello from the bench' } });
          lat.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { calls: lat.length, lat, errors };
}

const p50 = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

export async function runCluster(o: {
  probe: string;
  concurrency: number;
  rounds: number;
  windowMs: number;
  log: (m: string) => void;
}): Promise<ClusterResult | { skipped: string }> {
  if (!redisAvailable()) return { skipped: 'redis-server is not installed' };
  const redis = await startRedis();
  const procs: ChildProcess[] = [];
  try {
    const a = await node('bench-a', '127.0.0.21', redis.url, o.probe);
    procs.push(a.proc);
    const b = await node('bench-b', '127.0.0.22', redis.url, o.probe);
    procs.push(b.proc);
    await new Promise((r) => setTimeout(r, 1500)); // both in each other's view
    const direct = await Promise.all(Array.from({ length: o.concurrency }, () => client(a.url)));
    const hop = await Promise.all(direct.map(() => client(a.url, new URL(b.url).origin).then((x) => x)));
    const owner = { calls: 0, lat: [] as number[], errors: 0, ms: 0 };
    const fwd = { calls: 0, lat: [] as number[], errors: 0, ms: 0 };
    await load(
      direct.map((d) => d.client),
      300,
    ); // warm-up
    await load(
      hop.map((d) => d.client),
      300,
    );
    for (let r = 0; r < o.rounds; r++) {
      for (const [acc, cs] of (r % 2
        ? [
            [fwd, hop],
            [owner, direct],
          ]
        : [
            [owner, direct],
            [fwd, hop],
          ]) as [typeof owner, typeof direct][]) {
        const x = await load(
          cs.map((d) => d.client),
          o.windowMs,
        );
        acc.calls += x.calls;
        acc.lat.push(...x.lat);
        acc.errors += x.errors;
        acc.ms += o.windowMs;
      }
    }
    for (const d of direct) await d.transport.terminateSession().catch(() => undefined);
    const res: ClusterResult = {
      concurrency: o.concurrency,
      rounds: o.rounds,
      ownerCallsPerS: Math.round((owner.calls / owner.ms) * 1000),
      forwardedCallsPerS: Math.round((fwd.calls / fwd.ms) * 1000),
      ownerP50Ms: Math.round(p50(owner.lat) * 100) / 100,
      forwardedP50Ms: Math.round(p50(fwd.lat) * 100) / 100,
      errors: owner.errors + fwd.errors,
    };
    o.log(`cluster: owner ${res.ownerCallsPerS} calls/s, through a non-owner ${res.forwardedCallsPerS} calls/s`);
    return res;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
    await redis.dispose();
  }
}
