// The burst scenarios of `npm run bench`, for issue 17's acceptance lines, on berth's default warm pool (a fixed 2)
// and on warmPool auto (min 2, max 16, window 30s, shrinkAfter 2m, burstGap 100ms):
//   repeat  16 sessions opened one after another on fresh berths, then 16 more after --idle (default 30s):
//           (a) "16 sessions opened one after another after 30 s idle, defaults: start p50 ≤ 25 ms, p99 ≤ 100 ms"
//   storm   8 live sessions call echo back to back while --storm N (100) new sessions arrive at an even rate over
//           --storm-over (5s): (b) "calls on 8 live sessions keep p99 ≤ 100 ms"; also with limits.lowerStarts
// Targets are printed, never asserted. Loopback only; every wait has a deadline.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Arrival } from './storm-arrivals.js';
import { settle, startBerth, type Target } from './targets.js';
import { connect, disconnect, dist, type Conn, type Dist } from './workloads.js';

export interface BurstOptions {
  probe: string;
  bin: string;
  isolation?: string;
  quick: boolean;
  idleMs: number;
  storm: number;
  stormOverMs: number;
  /** run.ts's list of running targets (stopped on SIGINT): ours are in it while they run. */
  started: Target[];
  log: (msg: string) => void;
}

const VARIANTS = [
  // Both said explicitly, so a change of berth's default does not silently change the bench. auto is the default since
  // 1a87996; a fixed 2 was before it.
  { id: 'fixed2', label: 'fixed 2 (old default)', warmPool: 2 as number | string },
  { id: 'auto', label: 'auto (default)', warmPool: 'auto' as number | string },
];
interface Variant {
  id: string;
  label: string;
  warmPool: number | string;
  /** limits.lowerStarts: starts at nice 10 until their server answers (off by default). */
  lowerStarts?: boolean;
  /** limits.maxConcurrentStarts, when not berth's auto (half the cores, at least 1; 2 for microvm and gvisor). */
  startsAtOnce?: number;
}
/** The storm also runs with starts lowered, the opt-in that trades start speed for live sessions' latency. */
const STORM_VARIANTS: Variant[] = [
  ...VARIANTS,
  { id: 'auto-lower', label: 'auto, lowerStarts', warmPool: 'auto', lowerStarts: true },
  // Two starts at once (auto's floor before the seventh session, still its value for microvm and gvisor): what a
  // second start at once costs the live sessions on a 2-core host, and what it buys the new ones.
  { id: 'auto-2starts', label: 'auto, 2 starts at once', warmPool: 'auto', startsAtOnce: 2 },
];

const SESSIONS = 16;
const LIVE = 8;
const ECHO = { name: 'echo', arguments: { text: 'hello from the bench' } };
/** Per request: a hung berth fails the scenario instead of stalling the bench. */
const CALL_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 60_000;
const CLOSE_TIMEOUT_MS = 30_000;
const BASELINE_MS = 5000;
/** Live calls before the baseline window, not counted: the first calls on a session run cold code. */
const WARMUP_MS = 500;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
/** Round r visits the variants in an order rotated by r, so neither always runs right after the other. */
const rotate = <T>(xs: T[], r: number) => xs.map((_, i) => xs[(i + r) % xs.length]!);

/** Sums the samples of a berth metric whose line starts with `prefix` and contains `has`. */
async function metric(t: Target, prefix: string, has = ''): Promise<number> {
  const text = await (await fetch(new URL('/metrics', t.url), { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) })).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix) && l.includes(has))
    .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
const warmStarts = (t: Target) => metric(t, 'berth_session_start_seconds_count{', 'warm="yes"');
const warmServers = (t: Target) => metric(t, 'berth_warm_servers{');
/** berth's event-loop delay since the last read, in ms (prom-client resets its histogram on every scrape). */
const loopDelay = async (t: Target) => {
  const text = await (await fetch(new URL('/metrics', t.url), { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) })).text();
  const read = (name: string) => Number(new RegExp(`\n${name} (\\S+)`).exec(text)?.[1] ?? NaN) * 1000;
  return { p99: read('berth_nodejs_eventloop_lag_p99_seconds'), max: read('berth_nodejs_eventloop_lag_max_seconds') };
};

function why(e: unknown, t: Target): string {
  const exit = t.exitInfo();
  const said = t
    .stderrTail()
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('{'))
    .slice(0, 3)
    .join(' | ');
  return `${(e as Error).message}${exit ? `; berth ${exit}${said ? `: ${said}` : ''}` : ''}`;
}

/** Bounded: a close that hangs must not hold the bench. */
const closeAll = (conns: Conn[]) => Promise.race([Promise.allSettled(conns.map(disconnect)), sleep(CLOSE_TIMEOUT_MS)]);

/** Starts one berth per variant, all at once; a variant that does not start gets `failed`. */
async function startVariants<X extends Variant & { failed?: string }>(o: BurstOptions, xs: X[]): Promise<Map<X, Target>> {
  const ts = new Map<X, Target>();
  const starts = await Promise.allSettled(
    xs.map((x) =>
      startBerth(o.probe, {
        bin: o.bin,
        isolation: o.isolation,
        warmPool: 2,
        runtimeConfig: {
          warmPool: x.warmPool,
          limits: { ...(x.lowerStarts ? { lowerStarts: true } : {}), ...(x.startsAtOnce ? { maxConcurrentStarts: x.startsAtOnce } : {}) },
        },
      }),
    ),
  );
  starts.forEach((s, i) => {
    if (s.status === 'fulfilled') {
      ts.set(xs[i]!, s.value);
      o.started.push(s.value);
    } else xs[i]!.failed = `start: ${(s.reason as Error).message}`;
  });
  return ts;
}
async function stopTargets(o: BurstOptions, ts: Iterable<Target>): Promise<void> {
  for (const t of ts) {
    o.started.splice(o.started.indexOf(t), 1);
    await t.stop();
  }
}
/** Before a measurement: every berth's pool full (min 2) and its process tree quiet, so none competes for CPU. */
const quiet = (ts: Iterable<Target>) => settle([...ts].filter((t) => !t.exitInfo()).map((t) => ({ t, servers: 2 })));

// ---- repeat: 16 sessions after a fresh start, 16 more after idle ---------------------------------------------------
export interface BurstStats {
  /** client.connect() (initialize + notifications/initialized) of each session, pooled over rounds. */
  connectMs: Dist;
  /** Per round: sessions that found a warm server (berth_session_start_seconds_count{warm="yes"} delta), of 16. */
  warmHits: number[];
  /** Per round: warm servers waiting just before the burst (berth_warm_servers). */
  warmBefore: number[];
  /** The echo each session makes after connecting, failed or isError. */
  echoErrors: number;
}
export interface RepeatResult {
  id: string;
  label: string;
  warmPool: number | string;
  rounds: number;
  sessions: number;
  idleMs: number;
  /** On a berth just started, its pool full and quiet. */
  first: BurstStats;
  /** After idleMs without a session. */
  second: BurstStats;
  failed?: string;
}
type Acc = Omit<BurstStats, 'connectMs'> & { samples: number[] };
const acc = (): Acc => ({ samples: [], warmHits: [], warmBefore: [], echoErrors: 0 });
const stats = ({ samples, ...a }: Acc): BurstStats => ({ connectMs: dist(samples), ...a });

/** 16 sessions one after another, each calling echo once; all closed after the 16th has called. */
async function burst(t: Target, a: Acc): Promise<void> {
  const warmBefore = await warmServers(t);
  const hitsBefore = await warmStarts(t);
  const conns: Conn[] = [];
  try {
    for (let i = 0; i < SESSIONS; i++) {
      const t0 = performance.now();
      const c = await connect(t.url);
      a.samples.push(performance.now() - t0);
      conns.push(c);
      const ok = await c.client.callTool(ECHO, undefined, { timeout: CALL_TIMEOUT_MS }).then(
        (r) => !r.isError,
        () => false,
      );
      if (!ok) a.echoErrors++;
    }
  } finally {
    await closeAll(conns);
  }
  a.warmBefore.push(warmBefore);
  a.warmHits.push((await warmStarts(t)) - hitsBefore);
}

export async function repeatScenario(o: BurstOptions): Promise<RepeatResult[]> {
  const rounds = o.quick ? 2 : 3;
  const xs = VARIANTS.map((v) => ({ ...v, first: acc(), second: acc(), failed: undefined as string | undefined }));
  for (let r = 0; r < rounds; r++) {
    // Fresh berths each round, started together so that their idle periods overlap.
    const ts = await startVariants(
      o,
      xs.filter((x) => !x.failed),
    );
    try {
      const order = rotate([...ts.keys()], r);
      const firstEnded = new Map<(typeof xs)[number], number>();
      for (const x of order) {
        await quiet(ts.values());
        await burst(ts.get(x)!, x.first).catch((e: unknown) => (x.failed = `burst 1: ${why(e, ts.get(x)!)}`));
        firstEnded.set(x, performance.now());
      }
      for (const x of order.filter((y) => !y.failed)) {
        // Each variant idles --idle from the end of its own first burst (plus the wait for the others to go quiet).
        o.log(`burst: round ${r + 1}, ${x.label}: idle ${Math.round(o.idleMs / 1000)} s`);
        await sleep(firstEnded.get(x)! + o.idleMs - performance.now());
        await quiet(ts.values());
        await burst(ts.get(x)!, x.second).catch((e: unknown) => (x.failed = `burst 2: ${why(e, ts.get(x)!)}`));
      }
    } finally {
      await stopTargets(o, ts.values());
    }
  }
  return xs.map(({ first, second, ...x }) => ({
    ...x,
    rounds,
    sessions: SESSIONS,
    idleMs: o.idleMs,
    first: stats(first),
    second: stats(second),
  }));
}

// ---- storm: 8 live sessions at work while N new sessions arrive --------------------------------------------------
export interface LiveCalls {
  windowS: number;
  /** Calls that started in the window and were answered (not isError). */
  calls: number;
  callsPerS: number;
  errors: number;
  latencyMs: Dist;
}
export interface StormResult {
  id: string;
  label: string;
  warmPool: number | string;
  rounds: number;
  liveSessions: number;
  newSessions: number;
  overMs: number;
  /** The live calls over 5 s before the storm. */
  baseline: LiveCalls;
  /** The live calls from the first arrival until the last new session had its echo answer or failed. */
  storm: LiveCalls;
  /** client.connect() of each new session that got one. */
  newConnectMs: Dist;
  /** New sessions whose connect or echo failed, of which refused with 503 (berth's start queue full). */
  newFailed: number;
  newRefused503: number;
  /** The Retry-After of the first 503, as berth sent it. */
  retryAfter?: string;
  firstError?: string;
  /** Per round: warm servers waiting when the storm began, and how many new sessions found one. */
  warmBefore: number[];
  warmHits: number[];
  /** Per round: berth's own event-loop delay during the storm (prom-client's histogram, reset at its start), ms. */
  loopP99Ms: number[];
  loopMaxMs: number[];
  failed?: string;
}

interface Call {
  start: number;
  end: number;
  ok: boolean;
}

/** Every connection calls echo back to back until stop(). */
function liveLoad(conns: Conn[]): { calls: Call[]; stop: () => Promise<void> } {
  const calls: Call[] = [];
  let stopped = false;
  const done = Promise.all(
    conns.map(async (c) => {
      while (!stopped) {
        const start = performance.now();
        const ok = await c.client.callTool(ECHO, undefined, { timeout: CALL_TIMEOUT_MS }).then(
          (r) => !r.isError,
          () => false,
        );
        calls.push({ start, end: performance.now(), ok });
        if (!ok) await sleep(10); // a dead berth must not spin
      }
    }),
  );
  return {
    calls,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

interface Phase {
  ms: number;
  latencies: number[];
  errors: number;
}
/** Calls that started in [from, to): a call slowed past the window's end still counts with its whole latency. */
function addPhase(p: Phase, calls: Call[], from: number, to: number): void {
  const inside = calls.filter((c) => c.start >= from && c.start < to);
  p.ms += to - from;
  p.latencies.push(...inside.filter((c) => c.ok).map((c) => c.end - c.start));
  p.errors += inside.filter((c) => !c.ok).length;
}
const liveCalls = (p: Phase): LiveCalls => ({
  windowS: Math.round(p.ms) / 1000,
  calls: p.latencies.length,
  callsPerS: Math.round((p.latencies.length / Math.max(1, p.ms)) * 1000),
  errors: p.errors,
  latencyMs: dist(p.latencies),
});

/** The storm's arrivals, run by bench/storm-arrivals.ts in a process of its own, started before the storm. */
async function arrivalsProcess(url: string, n: number, overMs: number) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./storm-arrivals.ts', import.meta.url)), url, String(n), String(overMs)],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
      detached: true, // its own session (and CPU share): clients elsewhere
    },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const lines = createInterface({ input: child.stdout! });
  const line = () =>
    Promise.race([
      new Promise<string>((r) => lines.once('line', r)),
      exited.then(() => Promise.reject(new Error('the storm process ended early'))),
      sleep(CONNECT_TIMEOUT_MS + CALL_TIMEOUT_MS + overMs).then(() => Promise.reject(new Error('the storm process did not answer'))),
    ]);
  if ((await line()) !== 'ready') throw new Error('the storm process did not start');
  return {
    /** Starts the arrivals; resolves with them once each has connected and echoed, or failed. */
    async go(): Promise<Arrival[]> {
      child.stdin!.write('go\n');
      return JSON.parse(await line()) as Arrival[];
    },
    /** Closes its sessions and waits for it to end. */
    async close(): Promise<void> {
      child.stdin!.end();
      await Promise.race([exited, sleep(CLOSE_TIMEOUT_MS)]);
      child.kill('SIGKILL');
    },
  };
}

export async function stormScenario(o: BurstOptions): Promise<StormResult[]> {
  const rounds = o.quick ? 1 : 2;
  const xs = STORM_VARIANTS.map((v) => ({
    ...v,
    baseline: { ms: 0, latencies: [], errors: 0 } as Phase,
    storm: { ms: 0, latencies: [], errors: 0 } as Phase,
    connects: [] as number[],
    newFailed: 0,
    newRefused503: 0,
    retryAfter: undefined as string | undefined,
    firstError: undefined as string | undefined,
    warmBefore: [] as number[],
    warmHits: [] as number[],
    loopP99Ms: [] as number[],
    loopMaxMs: [] as number[],
    failed: undefined as string | undefined,
  }));
  // One berth per variant for all rounds (auto's pool, grown by a storm, shows in warmBefore of the next round).
  const ts = await startVariants(o, xs);
  try {
    for (let r = 0; r < rounds; r++) {
      for (const x of rotate(
        xs.filter((y) => ts.has(y) && !y.failed),
        r,
      )) {
        const t = ts.get(x)!;
        const live: Conn[] = [];
        let load: ReturnType<typeof liveLoad> | undefined;
        let storm: Awaited<ReturnType<typeof arrivalsProcess>> | undefined;
        try {
          await quiet(ts.values());
          for (let i = 0; i < LIVE; i++) live.push(await connect(t.url));
          // The live sessions took warm servers: wait for the refill (a quiet tree alone may precede its start).
          const deadline = performance.now() + 30_000;
          while (performance.now() < deadline && !((await warmServers(t)) >= 2 && (await quiet(ts.values())))) await sleep(100);
          x.warmBefore.push(await warmServers(t));
          storm = await arrivalsProcess(t.url, o.storm, o.stormOverMs);
          const hitsBefore = await warmStarts(t);
          load = liveLoad(live);
          await sleep(WARMUP_MS);
          const b0 = performance.now();
          await sleep(BASELINE_MS);
          await loopDelay(t); // reading the histogram resets it: what the next read shows is the storm's
          const s0 = performance.now();
          o.log(`storm: round ${r + 1}, ${x.label}: ${o.storm} new sessions over ${o.stormOverMs / 1000} s`);
          const got = await storm.go();
          const s1 = s0 + Math.max(...got.map((a) => a.doneAt));
          const loop = await loopDelay(t);
          x.loopP99Ms.push(loop.p99);
          x.loopMaxMs.push(loop.max);
          await load.stop();
          addPhase(x.baseline, load.calls, b0, s0);
          addPhase(x.storm, load.calls, s0, s1);
          for (const a of got) {
            if (a.connectMs !== undefined) x.connects.push(a.connectMs);
            if (!a.error) continue;
            x.newFailed++;
            if (a.status === 503) x.newRefused503++;
            x.retryAfter ??= a.retryAfter;
            x.firstError ??= a.error;
          }
          x.warmHits.push((await warmStarts(t)) - hitsBefore);
        } catch (e) {
          x.failed = why(e, t);
        } finally {
          await load?.stop();
          await storm?.close();
          await closeAll(live);
        }
      }
    }
  } finally {
    await stopTargets(o, ts.values());
  }
  return xs.map((x) => ({
    id: x.id,
    label: x.label,
    warmPool: x.warmPool,
    rounds,
    liveSessions: LIVE,
    newSessions: o.storm,
    overMs: o.stormOverMs,
    baseline: liveCalls(x.baseline),
    storm: liveCalls(x.storm),
    newConnectMs: dist(x.connects),
    newFailed: x.newFailed,
    newRefused503: x.newRefused503,
    retryAfter: x.retryAfter,
    firstError: x.firstError,
    warmBefore: x.warmBefore,
    warmHits: x.warmHits,
    loopP99Ms: x.loopP99Ms,
    loopMaxMs: x.loopMaxMs,
    failed: x.failed,
  }));
}

// ---- report --------------------------------------------------------------------------------------------------------
export interface BurstResults {
  repeat?: RepeatResult[];
  storm?: StormResult[];
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(rows[0]!), w.map((x) => '-'.repeat(x)).join('  '), ...rows.slice(1).map(line)].join('\n') + '\n';
}
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
const met = (ok: boolean) => (ok ? 'met' : 'MISSED');

export function burstReport(b: BurstResults, f1: (x: number | undefined) => string): string {
  let out = '';
  if (b.repeat?.length) {
    const xs = b.repeat;
    const idle = `${xs[0]!.idleMs / 1000} s`;
    const part = (name: string, get: (x: RepeatResult) => BurstStats): string[][] => [
      [name, ...xs.map(() => '')],
      ['  session start p50 ms', ...xs.map((x) => f1(get(x).connectMs.p50))],
      ['  p99 ms', ...xs.map((x) => f1(get(x).connectMs.p99))],
      ['  mean ms', ...xs.map((x) => f1(get(x).connectMs.mean))],
      [`  found a warm server, of ${SESSIONS} (mean of rounds)`, ...xs.map((x) => f1(mean(get(x).warmHits)))],
      ['  warm servers waiting before (mean)', ...xs.map((x) => f1(mean(get(x).warmBefore)))],
    ];
    out += `\n${table([
      [`burst: ${SESSIONS} sessions one after another, each echo once`, ...xs.map((x) => x.label)],
      ...part('burst 1, on a berth just started', (x) => x.first),
      ...part(`burst 2, after ${idle} idle`, (x) => x.second),
    ])}`;
    out += `(${xs[0]!.rounds} rounds, fresh berths each, rotating)\n`;
    for (const x of xs) {
      const c = x.second.connectMs;
      out += `target (a) ${x.label}, burst 2: start p50 ≤ 25 ms: ${met(c.p50 <= 25)} (${f1(c.p50)} ms)   p99 ≤ 100 ms: ${met(c.p99 <= 100)} (${f1(c.p99)} ms)${x.idleMs === 30_000 ? '' : `   (idle ${idle}, the line says 30 s)`}\n`;
      if (x.first.echoErrors + x.second.echoErrors)
        out += `warning: burst ${x.label}: ${x.first.echoErrors + x.second.echoErrors} failed echo calls\n`;
      if (x.failed) out += `FAILED burst ${x.label}: ${x.failed}\n`;
    }
  }
  if (b.storm?.length) {
    const xs = b.storm;
    const n = xs[0]!.newSessions;
    const over = `${xs[0]!.overMs / 1000} s`;
    const live = (name: string, get: (x: StormResult) => LiveCalls): string[][] => [
      [name, ...xs.map(() => '')],
      ['  p50 ms', ...xs.map((x) => f1(get(x).latencyMs.p50))],
      ['  p99 ms', ...xs.map((x) => f1(get(x).latencyMs.p99))],
      ['  max ms', ...xs.map((x) => f1(get(x).latencyMs.max))],
      ['  calls/s (failed)', ...xs.map((x) => `${get(x).callsPerS} (${get(x).errors})`)],
    ];
    out += `\n${table([
      [`storm: ${LIVE} live sessions calling echo; ${n} new sessions over ${over}`, ...xs.map((x) => x.label)],
      ...live(`live calls, ${BASELINE_MS / 1000} s before`, (x) => x.baseline),
      ...live('live calls, during the storm', (x) => x.storm),
      ['  storm lasted s (first arrival to last echo)', ...xs.map((x) => f1(x.storm.windowS / x.rounds))],
      ['new sessions: connect p50 ms', ...xs.map((x) => f1(x.newConnectMs.p50))],
      ['  p99 ms', ...xs.map((x) => f1(x.newConnectMs.p99))],
      [`  failed, of ${n} (503 start queue full)`, ...xs.map((x) => `${x.newFailed} (${x.newRefused503})`)],
      ['  found a warm server (mean of rounds)', ...xs.map((x) => f1(mean(x.warmHits)))],
      ['  warm servers waiting before (mean)', ...xs.map((x) => f1(mean(x.warmBefore)))],
      ["berth's event-loop delay during the storm: p99 ms", ...xs.map((x) => f1(mean(x.loopP99Ms)))],
      ['  max ms', ...xs.map((x) => f1(Math.max(...x.loopMaxMs)))],
    ])}`;
    out += `(${xs[0]!.rounds} round${xs[0]!.rounds > 1 ? 's' : ''}, one berth per variant, rotating)\n`;
    for (const x of xs) {
      const p99 = x.storm.latencyMs.p99;
      out += `target (b) ${x.label}: live calls p99 ≤ 100 ms during the storm: ${met(p99 <= 100)} (${f1(p99)} ms)${n === 100 && x.overMs === 5000 ? '' : `   (${n} over ${over}, the line says 100 over 5 s)`}\n`;
      if (x.firstError)
        out += `storm ${x.label}: first failure: ${x.firstError.slice(0, 300)}${x.retryAfter ? ` (Retry-After: ${x.retryAfter})` : ''}\n`;
      if (x.failed) out += `FAILED storm ${x.label}: ${x.failed}\n`;
    }
  }
  return out;
}
