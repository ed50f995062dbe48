// The noisy-neighbour scenario of `npm run bench`: 4 sessions call a tool back to back while a fifth session's server
// writes large valid JSON-RPC messages on stdout as fast as its pipe takes them (the hostile fixture's `spew`: 12
// notifications of 30 MiB, read by a client in another process). What the victims' calls cost, before and during
// the flood, on berth as it is (limits.outputTime 250ms of each second) and with the pacing off (outputTime 0).
// A review saw one such server take another session's p99 from 19 ms to 941 ms (before pass-through and pacing).
// Printed, never asserted. Loopback only; every wait has a deadline; the flood is bounded and stopped at the window's end.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { compileFixture, startBerth, type Target } from './targets.js';
import { connect, disconnect, dist, type Conn, type Dist } from './workloads.js';

export interface NoisyOptions {
  bin: string;
  quick: boolean;
  started: Target[];
  log: (msg: string) => void;
}

const VARIANTS = [
  { id: 'paced', label: 'outputTime 250ms (default)', limits: {} },
  { id: 'unpaced', label: 'outputTime 0 (off)', limits: { outputTime: 0 } },
];
const VICTIMS = 4;
const LINES = 12;
const LINE_BYTES = 30 * 1024 * 1024;
const CALL_TIMEOUT_MS = 30_000;

export interface NoisyResult {
  id: string;
  label: string;
  rounds: number;
  quiet: Dist;
  flood: Dist;
  /** MiB of the flood the flooding client read within the windows (all rounds). */
  floodMiB: number;
  /** berth's peak RSS (VmHWM), MiB, largest over rounds. */
  peakRssMiB: number;
  errors: number;
  failed?: string;
}

/** Victims call whoami back to back for `ms`; their latencies. */
async function victimsFor(victims: Conn[], ms: number, errors: { n: number }): Promise<number[]> {
  const lat: number[] = [];
  const end = performance.now() + ms;
  await Promise.all(
    victims.map(async (v) => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await v.client.callTool({ name: 'whoami', arguments: {} }, undefined, { timeout: CALL_TIMEOUT_MS });
          lat.push(performance.now() - t);
        } catch {
          errors.n++;
        }
      }
    }),
  );
  return lat;
}

/** A raw session whose `spew` call is read (and dropped) by a child process; resolves to the bytes it read. */
async function startFlood(url: string): Promise<{ stop: () => Promise<number> }> {
  const headers = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
  const init = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'flood', version: '1' } },
    }),
  });
  await init.text();
  const sid = init.headers.get('mcp-session-id')!;
  const session = { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  await (await fetch(url, { method: 'POST', headers: session, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' })).text();
  const call = JSON.stringify({
    jsonrpc: '2.0',
    id: 2,
    method: 'tools/call',
    params: { name: 'spew', arguments: { count: LINES, lineBytes: LINE_BYTES } },
  });
  // The flood's reader in its own process: its parsing must not slow the victims' client.
  const reader = `let n=0;process.on('SIGTERM',()=>{process.stdout.write(String(n));process.exit(0)});fetch(${JSON.stringify(url)},{method:'POST',headers:${JSON.stringify(session)},body:${JSON.stringify(call)}}).then(async r=>{for await(const c of r.body)n+=c.length}).catch(()=>{}).finally(()=>{process.stdout.write(String(n));process.exit(0)})`;
  const child = spawn(process.execPath, ['-e', reader], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    stop: async () => {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      await fetch(url, { method: 'DELETE', headers: session }).catch(() => undefined);
      return Number(out) || 0;
    },
  };
}

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

export async function noisyScenario(o: NoisyOptions): Promise<NoisyResult[]> {
  const server = compileFixture('hostile-server');
  const rounds = o.quick ? 2 : 3;
  const windowMs = o.quick ? 4000 : 6000;
  const acc = VARIANTS.map((v) => ({
    ...v,
    quiet: [] as number[],
    flood: [] as number[],
    bytes: 0,
    rss: 0,
    errors: { n: 0 },
    failed: undefined as string | undefined,
  }));
  for (let round = 0; round < rounds; round++) {
    // Rotating: the variant that goes first changes each round.
    for (const a of round % 2 ? [...acc].reverse() : acc) {
      let t: Target | undefined;
      try {
        t = await startBerth(server, { bin: o.bin, warmPool: VICTIMS + 2, isolation: 'process', runtimeConfig: { limits: a.limits } });
        o.started.push(t);
        const victims = await Promise.all(Array.from({ length: VICTIMS }, () => connect(t!.url)));
        await victimsFor(victims, 500, a.errors); // warm-up, not counted
        a.quiet.push(...(await victimsFor(victims, windowMs / 2, a.errors)));
        const flood = await startFlood(t.url);
        a.flood.push(...(await victimsFor(victims, windowMs, a.errors)));
        a.bytes += await flood.stop();
        a.rss = Math.max(a.rss, peakRss(t.pid));
        await Promise.all(victims.map(disconnect));
      } catch (e) {
        a.failed = (e as Error).message;
        o.log(`noisy ${a.label}: FAILED: ${a.failed}`);
      } finally {
        await t?.stop();
      }
    }
  }
  return acc.map((a) => ({
    id: a.id,
    label: a.label,
    rounds,
    quiet: dist(a.quiet),
    flood: dist(a.flood),
    floodMiB: Math.round(a.bytes / 1048576),
    peakRssMiB: Math.round(a.rss),
    errors: a.errors.n,
    failed: a.failed,
  }));
}

export function noisyReport(xs: NoisyResult[], f1: (x: number | undefined) => string): string {
  if (!xs.length) return '';
  const rows = [
    [
      `noisy neighbour: ${VICTIMS} sessions call whoami; a fifth's server writes ${LINES} × ${LINE_BYTES / 1048576} MiB messages`,
      ...xs.map((x) => x.label),
    ],
    ['before the flood: p50 ms', ...xs.map((x) => f1(x.quiet.p50))],
    ['  p99 ms', ...xs.map((x) => f1(x.quiet.p99))],
    ['during the flood: p50 ms', ...xs.map((x) => f1(x.flood.p50))],
    ['  p99 ms', ...xs.map((x) => f1(x.flood.p99))],
    ['  max ms', ...xs.map((x) => f1(x.flood.max))],
    ['flood MiB relayed in the windows (all rounds)', ...xs.map((x) => String(x.floodMiB))],
    ["berth's peak RSS MiB", ...xs.map((x) => String(x.peakRssMiB))],
    ['failed calls', ...xs.map((x) => String(x.errors))],
  ];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  let out = `\n${[line(rows[0]!), w.map((x) => '-'.repeat(x)).join('  '), ...rows.slice(1).map(line)].join('\n')}\n`;
  out += `(${xs[0]!.rounds} rounds, a fresh berth per variant and round, rotating; process isolation)\n`;
  for (const x of xs) if (x.failed) out += `FAILED noisy ${x.label}: ${x.failed}\n`;
  return out;
}
