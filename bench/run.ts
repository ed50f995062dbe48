// `npm run bench`: the same probe server and the same client load, measured side by side:
//   direct     the probe serving Streamable HTTP itself (SDK StreamableHTTPServerTransport, stateful), no gateway
//   stdio      berth stateful, server over stdio             (berth run -- node probe.mjs)
//   http       berth stateful, server serving HTTP on $PORT  (berth run --upstream http -- node probe.mjs --http)
//   stateless  berth stateless, a shared warm pool over stdio (berth run --stateless -- node probe.mjs)
//   supergateway, mcp-proxy: the peers users would otherwise pick (pinned devDependencies), hosting the same probe
//              over stdio on loopback: supergateway --stateful (one process per session), mcp-proxy (one for all)
// plus, for cold session start, stdio and http berths with --warm-pool 0; throughput at 8 and 16 sessions; and the
// burst scenarios (bench/bursts.ts, issue 17), on berth's default warm pool (a fixed 2) and on warmPool auto:
//   repeat     16 sessions opened one after another on fresh berths, then 16 more after --idle
//   storm      8 live sessions calling echo while --storm new sessions arrive over --storm-over
// Then, per sandbox driver (bench/drivers.ts), the bundled demo server: session start warm and cold, a tool call,
// memory per idle session, and how many idle sessions fit in this machine's memory.
//
// All targets run at once and every measurement is taken in rounds that rotate over the targets, so load from
// elsewhere on the machine (CI neighbours, other jobs) hits each target alike; samples are pooled over rounds.
//
// Flags: --quick (about half the time), --concurrency N[,M…] (default 8,16; memory is read at the first),
//        --only stdio,http,stateless,supergateway,mcpproxy (direct is always run), --no-burst, --warm-pool N (default 4), --out FILE (default .bench/results.json),
//        --berth-bin PATH (the berth launcher to measure; default bin/berth.js),
//        --isolation KIND (passed to berth; default: berth's default, auto),
//        --drivers process,namespace,namespace-limits,gvisor,microvm (the per-driver section; microvm-unbundled
//        only when named; none skips it), --drivers-only (skip the comparison), --capacity N (idle sessions),
//        --no-noisy (skip the noisy-neighbour scenario, bench/noisy.ts), --noisy-only (only it),
//        --no-cluster (skip the cluster figure: echo calls/s through the owner node vs a non-owner, bench/cluster.ts),
//        --idle DURATION (between the repeat scenario's bursts; default 30s), --storm N (new sessions; default 100),
//        --storm-over DURATION (default 5s), --bursts-only (only the burst scenarios), --no-storm (the repeat burst without the storm),
//        --rounds N, --load DURATION (the comparison's rounds and each target's measured window in a round; defaults 5 and
//        900ms, --quick 3 and 600ms), --no-floor (skip the byte relay floor, bench/floor-relay.mjs, in the throughput rounds)
// Output: a table on stdout, JSON in .bench/results.json. Targets are shown, never asserted.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { driverReport, driverTargets, runDrivers, VARIANTS, type DriverResult } from './drivers.js';
import { cpuMs, systemCpu } from './procfs.js';
import { runCluster, type ClusterResult } from './cluster.js';
import { burstReport, repeatScenario, stormScenario, type BurstResults } from './bursts.js';
import { noisyReport, noisyScenario, type NoisyResult } from './noisy.js';
import { parseDuration } from '../src/util/units.js';
import { compileProbe, ROOT, settle, startBerth, startDirect, startFloor, startPeer, type Target } from './targets.js';
import {
  connect,
  disconnect,
  dist,
  callsMade,
  elicitRound,
  isolationProbe,
  loadRound,
  memory,
  openSessions,
  sessionSample,
  summarize,
  type Conn,
  type ConnectSample,
  type Dist,
  type IsolationResult,
  type LoadResult,
  type LoadRound,
  type MemoryResult,
} from './workloads.js';

// ---- options ----------------------------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt;
};
const QUICK = flag('quick');
const CONCURRENCIES = opt('concurrency', '8,16').split(',').map(Number);
const CONCURRENCY = CONCURRENCIES[0]!;
const WARM = Number(opt('warm-pool', '4'));
const OUT = resolve(ROOT, opt('out', '.bench/results.json')); // an absolute --out is kept as given
const BERTH_BIN = opt('berth-bin', 'bin/berth.js');
const ISOLATION = opt('isolation', '') || undefined;
const ALL = ['direct', 'stdio', 'http', 'stateless', 'supergateway', 'mcpproxy'] as const;
type Id = (typeof ALL)[number];
const ONLY = new Set(opt('only', ALL.join(',')).split(',') as Id[]);
ONLY.add('direct'); // ratios need the baseline
const DRIVERS_ONLY = flag('drivers-only');
const BURSTS_ONLY = flag('bursts-only');
const NOISY_ONLY = flag('noisy-only');
const NO_FLOOR = flag('no-floor');
/** A duration flag: its unit is required (30s, 500ms), as in berth's config. */
const durationOpt = (name: string, dflt: string) => {
  try {
    return parseDuration(opt(name, dflt));
  } catch (e) {
    throw new Error(`--${name}: ${(e as Error).message}`, { cause: e });
  }
};
const IDLE_MS = durationOpt('idle', '30s');
const STORM = Number(opt('storm', '100'));
if (!Number.isInteger(STORM) || STORM < 1)
  throw new Error(`--storm: expected a whole number of new sessions ≥ 1, got "${opt('storm', '')}"`);
const STORM_OVER_MS = durationOpt('storm-over', '5s');
const DRIVER_IDS = opt(
  'drivers',
  VARIANTS.filter((v) => !v.optIn)
    .map((v) => v.id)
    .join(','),
)
  .split(',')
  .filter((x) => x && x !== 'none');
for (const d of DRIVER_IDS)
  if (!VARIANTS.some((v) => v.id === d))
    throw new Error(`--drivers: unknown driver "${d}"; expected ${VARIANTS.map((v) => v.id).join(', ')} or none`);

// firstWarmupMs: a load phase opens new sessions, and for every target that runs a server per session (berth,
// supergateway, the 1-process reference) new server processes, still unoptimised by V8 (at 0.5 s of warm-up each of
// 8 had answered ~30 calls). With 0.5 s every target's calls/s rose round after round (at 8 sessions, direct
// 424 → 730 → 1025, 390 → 544 → 652, 344 → 455 → 677 in three runs; berth 451 → 480 → 602, 503 → 311 → 576,
// 312 → 579 → 602), so the figures mixed warm-up into the steady state a session that lives minutes sees. With 2–3 s
// the shared direct process still rises (654 → 839 → 1125): one process answering every session keeps getting faster
// with their calls, each of berth's servers sees an eighth of them (docs/benchmarks.md, "Eighth session").
const P = QUICK
  ? { rounds: 3, firstWarmupMs: 2000, warmupMs: 150, latencyMs: 400, loadMs: 600, sessionSamples: 6, coldSamples: 3, elicitCalls: 30 }
  : { rounds: 5, firstWarmupMs: 3000, warmupMs: 150, latencyMs: 500, loadMs: 900, sessionSamples: 12, coldSamples: 5, elicitCalls: 60 };
// --rounds and --load lengthen the comparison: a target's calls/s moves by up to 1.7x between rounds of one run.
if (argv.includes('--rounds')) {
  P.rounds = Number(opt('rounds', ''));
  if (!Number.isInteger(P.rounds) || P.rounds < 1) throw new Error(`--rounds: expected a whole number ≥ 1, got "${opt('rounds', '')}"`);
}
if (argv.includes('--load')) P.loadMs = durationOpt('load', '');

const DP = QUICK
  ? {
      warmPool: WARM,
      rounds: 3,
      warmSamples: 8,
      coldSamples: 4,
      toolWarmupMs: 100,
      toolMs: 300,
      capacitySessions: Number(opt('capacity', '30')),
      openConcurrency: 4,
    }
  : {
      warmPool: WARM,
      rounds: 5,
      warmSamples: 16,
      coldSamples: 6,
      toolWarmupMs: 100,
      toolMs: 400,
      capacitySessions: Number(opt('capacity', '60')),
      openConcurrency: 4,
    };

const LABEL: Record<Id, string> = {
  direct: 'direct (SDK)',
  stdio: 'berth stdio',
  http: 'berth http',
  stateless: 'berth stateless',
  supergateway: 'supergateway',
  mcpproxy: 'mcp-proxy',
};
const PEER = (id: Id) => id === 'supergateway' || id === 'mcpproxy';
/** The peers' versions, as installed (pinned in package.json). */
const peerVersion = (pkg: string) =>
  (JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;

// fetch (undici) removes a request's abort listener from the SDK transport's shared AbortSignal only when the request
// is garbage-collected, so a few thousand calls on one client between two GCs trip Node's listener-leak warning
// (at undici's own limit of 1500). It is neither berth's nor the bench's leak: keep it off the output.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'MaxListenersExceededWarning') process.stderr.write(`${w.name}: ${w.message}\n`);
});

const T0 = performance.now();
function log(msg: string): void {
  process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
}

// ---- systems under test -------------------------------------------------------------------------------------------
interface Sut {
  id: Id;
  label: string;
  t: Target;
  /** Server processes it holds when idle and warm. */
  servers: number;
  /** berth --warm-pool 0, for cold session start (stateful berths only). */
  cold?: Target;
  coldFailed?: string;
  failed?: string;
}

interface SessionStartResult {
  connectMs: Dist;
  initializeMs: Dist;
  firstCallMs: Dist;
  /** Samples taken although the targets had not gone quiet in 15 s (should be 0). */
  unsettled: number;
}

interface SutResult {
  id: Id;
  label: string;
  /** The sandbox driver berth used for its servers. */
  isolation?: string;
  startedInMs: number;
  idle: { gatewayRssKb?: number; serverRssKb: number; serverPssKb?: number };
  sessionStartWarm?: SessionStartResult;
  sessionStartCold?: SessionStartResult & { note?: string };
  /** direct only: the first session of a freshly started (and quiet) server process. */
  sessionStartFresh?: SessionStartResult;
  /** direct only: the same N-client load on N direct server processes, one session each. */
  throughputProcessPerSession?: LoadResult;
  /** direct only: the same load through bench/floor-relay.mjs (node:http, a child per session, bytes only), by N. */
  throughputFloorAt?: Record<number, LoadResult>;
  latency?: LoadResult;
  /** Latencies of the calls that got the client's answer back; errors and the first error's text for the others. */
  elicitation?: { latencyMs: Dist; errors: number; firstError?: string };
  throughput?: LoadResult;
  /** The same load at every --concurrency (the first is `throughput`). */
  throughputAt?: Record<number, LoadResult>;
  sessionIsolation?: IsolationResult & { sessions: number; serverProcesses: number };
  /** The gateway process's CPU over the whole comparison, divided by every call the bench made to it. */
  gatewayCpuRun?: { cpuMs: number; calls: number; msPerCall: number };
  memory?: MemoryResult;
  failed?: string;
}

const started: Target[] = [];
async function stopAll(): Promise<void> {
  await Promise.all(started.splice(0).map((t) => t.stop()));
}
process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));

/** What a crashed target printed (not its JSON log lines). */
function crashText(t: Target): string {
  const lines = t
    .stderrTail()
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('{'));
  return lines
    .slice(0, 5)
    .map((l) => l.trim())
    .join(' | ');
}

function fail(s: Sut, e: unknown): void {
  const exit = s.t.exitInfo();
  s.failed = `${(e as Error).message}${exit ? `; stderr: ${crashText(s.t)}` : ''}`;
  log(`${s.label}: FAILED: ${s.failed}`);
}

const live = (suts: Sut[]) => suts.filter((s) => !s.failed);
/** Round r visits the targets in an order rotated by r, so none always runs right after another. */
const rotate = <T>(xs: T[], r: number) => xs.map((_, i) => xs[(i + r) % xs.length]!);

async function quiet(suts: Sut[]): Promise<boolean> {
  const list = live(suts).flatMap((s) => [{ t: s.t, servers: s.servers }, ...(s.cold && !s.coldFailed ? [{ t: s.cold, servers: 0 }] : [])]);
  try {
    return await settle(list);
  } catch (e) {
    // Some target died: find it and mark it, then try again without it.
    let found = false;
    for (const s of live(suts)) {
      if (s.t.exitInfo()) {
        fail(s, new Error('the target process exited'));
        found = true;
      }
      if (s.cold && !s.coldFailed && s.cold.exitInfo()) {
        s.coldFailed = `the target process exited; stderr: ${crashText(s.cold)}`;
        found = true;
      }
    }
    if (!found) throw e;
    return quiet(suts);
  }
}

// ---- main ---------------------------------------------------------------------------------------------------------
mkdirSync(join(ROOT, '.bench'), { recursive: true });
const probe = compileProbe();

/** Cores busy over 0.5 s while none of our targets run: load that is not ours. */
async function background(): Promise<number> {
  const a = systemCpu();
  await new Promise((r) => setTimeout(r, 500));
  const b = systemCpu();
  return Math.round(((b.busy - a.busy) / Math.max(1, b.total - a.total)) * os.availableParallelism() * 100) / 100;
}
// Load that is not ours: measured before anything starts (and again before the per-driver section).
const backgroundCores = await background();
let driversBackgroundCores: number | undefined;
log(
  `${QUICK ? 'quick' : 'full'} run: ${CONCURRENCY} clients, warm pool ${WARM}, ${os.availableParallelism()} CPUs, background load ${backgroundCores} cores`,
);

/** The direct-vs-berth comparison (probe server): every target at once, in rotating rounds. */
async function compare(): Promise<Partial<Record<Id, SutResult>>> {
  const suts: Sut[] = [];
  try {
    // Start every target.
    for (const id of ALL) {
      if (!ONLY.has(id)) continue;
      const label = LABEL[id];
      try {
        const t =
          id === 'direct'
            ? await startDirect(probe)
            : PEER(id)
              ? await startPeer(id === 'mcpproxy' ? 'mcp-proxy' : 'supergateway', probe)
              : await startBerth(probe, {
                  bin: BERTH_BIN,
                  isolation: ISOLATION,
                  warmPool: WARM,
                  stateless: id === 'stateless',
                  upstream: id === 'http' ? 'http' : 'stdio',
                });
        started.push(t);
        const s: Sut = { id, label, t, servers: id === 'direct' ? 1 : PEER(id) ? 0 : WARM };
        suts.push(s);
        if (id === 'stdio' || id === 'http') {
          try {
            s.cold = await startBerth(probe, { bin: BERTH_BIN, isolation: ISOLATION, warmPool: 0, upstream: id });
            started.push(s.cold);
          } catch (e) {
            s.coldFailed = (e as Error).message;
          }
        }
        log(`${label}: up in ${t.startedInMs.toFixed(0)} ms`);
      } catch (e) {
        if (id === 'direct') throw e;
        suts.push({ id, label, t: undefined as unknown as Target, servers: 0, failed: (e as Error).message });
        log(`${label}: FAILED to start: ${(e as Error).message}`);
      }
    }
    log('waiting for warm pools to fill and go quiet');
    await quiet(suts);
    const cpuAtStart = new Map(live(suts).map((s) => [s, s.t.gatewayPid ? cpuMs(s.t.gatewayPid) : 0]));
    const callsAtStart = new Map(live(suts).map((s) => [s, callsMade.get(s.t.url) ?? 0]));
    const idle = new Map<Sut, SutResult['idle']>();
    for (const s of live(suts)) {
      const m = memory(s.t, []);
      idle.set(s, { gatewayRssKb: m.gatewayRssKb, serverRssKb: m.serverRssKb, serverPssKb: m.serverPssKb });
    }

    // ---- session start: sequential sessions, each after every target has gone quiet (warm pools full) -----------
    log(`session start: ${P.sessionSamples} warm and ${P.coldSamples} cold samples per target`);
    const warmSamples = new Map<Sut, ConnectSample[]>();
    const coldSamples = new Map<Sut, ConnectSample[]>();
    const unsettled = new Map<Sut, number>();
    for (let i = 0; i < P.sessionSamples; i++) {
      for (const s of rotate(live(suts), i)) {
        const subjects: Array<[Target, Map<Sut, ConnectSample[]>]> = [[s.t, warmSamples]];
        if (s.cold && !s.coldFailed && i < P.coldSamples) subjects.push([s.cold, coldSamples]);
        for (const [t, into] of subjects) {
          if (s.failed) break;
          if (!(await quiet(suts))) unsettled.set(s, (unsettled.get(s) ?? 0) + 1);
          try {
            const x = await sessionSample(t);
            into.set(s, [...(into.get(s) ?? []), x]);
          } catch (e) {
            if (t === s.t) fail(s, e);
            else s.coldFailed = `${(e as Error).message}${t.exitInfo() ? `; stderr: ${crashText(t)}` : ''}`;
          }
        }
      }
    }
    // Direct, for reference: "cold" = spawn the server process, wait until it answers, connect; "fresh" = the first
    // session of a process that has just started and gone quiet, which is what every berth session gets (a new
    // server process per session, its code not yet warmed up by earlier requests).
    const directCold: ConnectSample[] = [];
    const directFresh: ConnectSample[] = [];
    for (let i = 0; i < P.coldSamples; i++) {
      const t0 = performance.now();
      const a = await startDirect(probe);
      started.push(a);
      const c = await connect(a.url);
      directCold.push({ connect: performance.now() - t0, initialize: NaN, firstCall: NaN });
      await disconnect(c);
      const b = await startDirect(probe);
      started.push(b);
      await settle([{ t: b, servers: 1 }]);
      directFresh.push(await sessionSample(b));
      for (const t of [a, b]) {
        started.splice(started.indexOf(t), 1);
        await t.stop();
      }
    }
    const sessionResult = (xs: ConnectSample[] | undefined, s: Sut): SessionStartResult | undefined =>
      xs?.length
        ? {
            connectMs: dist(xs.map((x) => x.connect)),
            initializeMs: dist(xs.map((x) => x.initialize).filter((x) => !Number.isNaN(x))),
            firstCallMs: dist(xs.map((x) => x.firstCall).filter((x) => !Number.isNaN(x))),
            unsettled: unsettled.get(s) ?? 0,
          }
        : undefined;

    // ---- latency, one client; then elicitation on the same session ----------------------------------------------
    log(`echo latency, 1 client: ${P.rounds} rounds of ${P.latencyMs} ms per target`);
    const single = new Map<Sut, Conn[]>();
    for (const s of live(suts)) {
      try {
        single.set(s, await openSessions(s.t, 1));
      } catch (e) {
        fail(s, e);
      }
    }
    const latRounds = new Map<Sut, LoadRound[]>();
    for (let r = 0; r < P.rounds; r++) {
      for (const s of rotate(live(suts), r)) {
        await quiet(suts);
        try {
          latRounds.set(s, [
            ...(latRounds.get(s) ?? []),
            await loadRound(s.t, single.get(s)!, r ? P.warmupMs : P.firstWarmupMs, P.latencyMs),
          ]);
        } catch (e) {
          fail(s, e);
        }
      }
    }
    log(`elicitation round trip: ${P.elicitCalls} calls per target`);
    const elicit = new Map<Sut, { latencies: number[]; errors: number; firstError?: string }>();
    const stateful = () => live(suts).filter((s) => s.id !== 'stateless');
    for (const s of stateful()) await elicitRound(single.get(s)![0]!, 10).catch((e) => fail(s, e)); // warm-up
    for (let r = 0; r < P.rounds; r++) {
      for (const s of rotate(stateful(), r)) {
        try {
          const x = await elicitRound(single.get(s)![0]!, Math.ceil(P.elicitCalls / P.rounds));
          const prev = elicit.get(s) ?? { latencies: [], errors: 0 };
          elicit.set(s, {
            latencies: [...prev.latencies, ...x.latencies],
            errors: prev.errors + x.errors,
            firstError: prev.firstError ?? x.firstError,
          });
        } catch (e) {
          fail(s, e);
        }
      }
    }
    for (const conns of single.values()) for (const c of conns) await disconnect(c);

    // ---- isolation: what one session leaves behind, as the next session sees it ---------------------------------
    log('isolation: state_set in one session, state_get in the next');
    const isolation = new Map<Sut, IsolationResult>();
    for (const s of live(suts).filter((x) => x.id !== 'stateless')) {
      try {
        isolation.set(s, await isolationProbe(s.t));
      } catch (e) {
        fail(s, e);
      }
    }

    // ---- throughput, N clients (N sessions) per target, at each --concurrency -------------------------------------
    const loadAt = new Map<number, Map<Sut, LoadRound[]>>();
    const many = new Map<Sut, Conn[]>();
    const refRounds: LoadRound[] = [];
    const floorRoundsAt = new Map<number, LoadRound[]>();
    for (const n of CONCURRENCIES) {
      log(`echo throughput, ${n} clients: ${P.rounds} rounds of ${P.loadMs} ms per target`);
      const open = new Map<Sut, Conn[]>();
      for (const s of live(suts)) {
        try {
          open.set(s, await openSessions(s.t, n));
        } catch (e) {
          fail(s, e);
        }
      }
      const withRef = n === CONCURRENCY;
      // Reference: the direct server with one process per session — what berth's stateful mode runs, minus berth.
      // Each started one is kept for stopAll even when another fails to start (a loaded machine); then no reference.
      const refStarts = withRef ? await Promise.allSettled(Array.from({ length: n }, () => startDirect(probe))) : [];
      const refProcs = refStarts.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
      started.push(...refProcs);
      if (refProcs.length < refStarts.length) {
        log(
          `the 1-process-per-session reference: ${refStarts.length - refProcs.length} of ${n} direct processes did not start; no reference`,
        );
        for (const t of refProcs.splice(0)) {
          started.splice(started.indexOf(t), 1);
          await t.stop();
        }
      }
      const ref: Target | undefined = refProcs.length
        ? { ...refProcs[0]!, serverPids: () => refProcs.map((t) => t.pid), gatewayPid: undefined }
        : undefined;
      const refConns = (await Promise.all(refProcs.map((t) => openSessions(t, 1)))).flat();
      // The floor: node:http relaying bytes to one child per session (bench/floor-relay.mjs), what any Node.js relay
      // that isolates sessions by process is bounded by, measured in the same rounds. A floor that fails is left out.
      const floor = NO_FLOOR
        ? undefined
        : await startFloor(probe, 'relay').catch((e: unknown) => void log(`the byte relay floor did not start: ${(e as Error).message}`));
      if (floor) started.push(floor);
      const floorConns = floor
        ? await openSessions(floor, n).catch((e: unknown) => void log(`the byte relay floor: ${(e as Error).message}`))
        : undefined;
      const floorRounds: LoadRound[] = [];
      if (floorConns) floorRoundsAt.set(n, floorRounds);
      const loadRounds = new Map<Sut, LoadRound[]>();
      loadAt.set(n, loadRounds);
      for (let r = 0; r < P.rounds; r++) {
        const refs = [...(ref ? (['ref'] as const) : []), ...(floorConns ? (['floor'] as const) : [])];
        for (const s of rotate<Sut | 'ref' | 'floor'>([...live(suts), ...refs], r)) {
          await quiet(suts);
          const warmup = r ? P.warmupMs : P.firstWarmupMs;
          if (s === 'ref') {
            refRounds.push(await loadRound(ref!, refConns, warmup, P.loadMs));
            continue;
          }
          if (s === 'floor') {
            floorRounds.push(await loadRound(floor!, floorConns!, warmup, P.loadMs));
            continue;
          }
          try {
            loadRounds.set(s, [...(loadRounds.get(s) ?? []), await loadRound(s.t, open.get(s)!, warmup, P.loadMs)]);
          } catch (e) {
            fail(s, e);
          }
        }
      }
      for (const c of [...refConns, ...(floorConns ?? [])]) await disconnect(c);
      if (floor) {
        started.splice(started.indexOf(floor), 1);
        await floor.stop();
      }
      for (const t of refProcs) {
        started.splice(started.indexOf(t), 1);
        await t.stop();
      }
      // Memory is read with the first concurrency's sessions open; the others' sessions end now.
      if (n === CONCURRENCY) for (const [s, conns] of open) many.set(s, conns);
      else for (const conns of open.values()) for (const c of conns) await disconnect(c);
    }
    const loadRounds = loadAt.get(CONCURRENCY)!;
    const gatewayCpuRun = new Map<Sut, SutResult['gatewayCpuRun']>();
    for (const s of live(suts)) {
      if (!s.t.gatewayPid) continue;
      const cpu = cpuMs(s.t.gatewayPid) - cpuAtStart.get(s)!;
      const calls = (callsMade.get(s.t.url) ?? 0) - callsAtStart.get(s)!;
      gatewayCpuRun.set(s, { cpuMs: Math.round(cpu), calls, msPerCall: Math.round((cpu / Math.max(1, calls)) * 1000) / 1000 });
    }
    const mem = new Map<Sut, MemoryResult>();
    for (const s of live(suts))
      mem.set(
        s,
        memory(
          s.t,
          many.get(s)!.map((c) => c.sessionId),
        ),
      );
    for (const conns of many.values()) for (const c of conns) await disconnect(c);

    // ---- results ------------------------------------------------------------------------------------------------
    const results: Partial<Record<Id, SutResult>> = {};
    for (const s of suts) {
      if (!s.t) {
        results[s.id] = { id: s.id, label: s.label, startedInMs: NaN, idle: { serverRssKb: NaN }, failed: s.failed };
        continue;
      }
      const cold = s.id === 'direct' ? directCold : coldSamples.get(s);
      results[s.id] = {
        id: s.id,
        label: s.label,
        isolation: s.t.isolation(),
        startedInMs: Math.round(s.t.startedInMs),
        idle: idle.get(s)!,
        sessionStartWarm: sessionResult(warmSamples.get(s), s),
        sessionStartCold:
          s.id === 'stateless' || PEER(s.id)
            ? undefined
            : {
                ...sessionResult(cold, s)!,
                ...(s.id === 'direct' ? { note: 'spawn the server process, wait until it answers, then connect' } : {}),
              },
        sessionStartFresh: s.id === 'direct' ? sessionResult(directFresh, s) : undefined,
        latency: latRounds.get(s)?.length ? summarize(1, latRounds.get(s)!) : undefined,
        elicitation: elicit.get(s)
          ? { latencyMs: dist(elicit.get(s)!.latencies), errors: elicit.get(s)!.errors, firstError: elicit.get(s)!.firstError }
          : undefined,
        throughput: loadRounds.get(s)?.length ? summarize(CONCURRENCY, loadRounds.get(s)!) : undefined,
        throughputAt: Object.fromEntries([...loadAt].filter(([, m]) => m.get(s)?.length).map(([n, m]) => [n, summarize(n, m.get(s)!)])),
        sessionIsolation: isolation.get(s) && {
          ...isolation.get(s)!,
          sessions: many.get(s)?.length ?? 0,
          serverProcesses: new Set(many.get(s)?.map((c) => c.instance)).size,
        },
        gatewayCpuRun: gatewayCpuRun.get(s),
        throughputProcessPerSession: s.id === 'direct' && refRounds.length ? summarize(CONCURRENCY, refRounds) : undefined,
        throughputFloorAt:
          s.id === 'direct'
            ? Object.fromEntries([...floorRoundsAt].filter(([, x]) => x.length).map(([n, x]) => [n, summarize(n, x)]))
            : undefined,
        memory: mem.get(s),
        failed: s.failed ?? (s.coldFailed ? `cold start (--warm-pool 0): ${s.coldFailed}` : undefined),
      };
      if (!results[s.id]!.sessionStartCold?.connectMs) delete results[s.id]!.sessionStartCold;
    }
    return results;
  } finally {
    await stopAll();
  }
}

const compared = DRIVERS_ONLY || BURSTS_ONLY || NOISY_ONLY ? {} : await compare();
// The burst scenarios (bench/bursts.ts): issue 17's acceptance lines (a) and (b).
const burst: BurstResults = {};
if (!DRIVERS_ONLY && !NOISY_ONLY && !flag('no-burst')) {
  const o = {
    probe,
    bin: BERTH_BIN,
    isolation: ISOLATION,
    quick: QUICK,
    idleMs: IDLE_MS,
    storm: STORM,
    stormOverMs: STORM_OVER_MS,
    started,
    log,
  };
  log(`burst: 16 sessions one after another on fresh berths, then again after ${IDLE_MS / 1000} s idle; default pool vs auto`);
  try {
    burst.repeat = await repeatScenario(o);
  } catch (e) {
    log(`burst: FAILED: ${(e as Error).message}`); // the other results are still reported
  }
  if (!flag('no-storm')) {
    log(`storm: ${STORM} new sessions over ${STORM_OVER_MS / 1000} s beside 8 live sessions; default pool vs auto`);
    try {
      burst.storm = await stormScenario(o);
    } catch (e) {
      log(`storm: FAILED: ${(e as Error).message}`);
    }
  }
}
// The noisy neighbour (bench/noisy.ts): other sessions' calls while one server floods its stdout with large messages.
let noisy: NoisyResult[] = [];
if (!DRIVERS_ONLY && !BURSTS_ONLY && !flag('no-noisy')) {
  log('noisy neighbour: 4 sessions calling while a fifth server writes 30 MiB messages; outputTime default vs off');
  try {
    noisy = await noisyScenario({ bin: BERTH_BIN, quick: QUICK, started, log });
  } catch (e) {
    log(`noisy: FAILED: ${(e as Error).message}`);
  }
}
let drivers: DriverResult[] = [];
if (DRIVER_IDS.length && !BURSTS_ONLY && !NOISY_ONLY) {
  driversBackgroundCores = await background();
  log(
    `per-driver section: ${DRIVER_IDS.join(', ')}; the bundled demo server; ${DP.capacitySessions} idle sessions per driver; background load ${driversBackgroundCores} cores`,
  );
  try {
    drivers = await runDrivers(
      { bin: BERTH_BIN, log, started },
      VARIANTS.filter((v) => DRIVER_IDS.includes(v.id)),
      DP,
    );
  } finally {
    await stopAll();
  }
}
// The cluster figure: one forwarding hop's cost, owner vs non-owner in the same run (needs redis-server).
let cluster: ClusterResult | { skipped: string } | undefined;
if (!flag('no-cluster') && !DRIVERS_ONLY && !BURSTS_ONLY && !NOISY_ONLY) {
  log('cluster section: two nodes on one Redis; echo through the owner vs through the other node');
  try {
    cluster = await runCluster({ probe: compileProbe(), concurrency: CONCURRENCY, rounds: P.rounds, windowMs: P.loadMs, log });
  } catch (e) {
    cluster = { skipped: `failed: ${(e as Error).message}` };
    log(`cluster: FAILED: ${(e as Error).message}`);
  }
}
report(compared, drivers, burst);

/**
 * The commit measured, and whether its src/ had uncommitted changes: of the checkout that holds the berth launcher
 * (--berth-bin may point into another checkout or worktree; `npm run bench` builds this one).
 */
function gitState(): { commit?: string; srcDirty?: boolean; checkout?: string } {
  const dir = dirname(dirname(resolve(ROOT, BERTH_BIN)));
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: dir }).toString().trim() !== '';
    return { commit, srcDirty: dirty, checkout: relative(ROOT, dir) || '.' };
  } catch {
    return {};
  }
}

// ---- report -------------------------------------------------------------------------------------------------------
function report(results: Partial<Record<Id, SutResult>>, drivers: DriverResult[], burst: BurstResults): void {
  const d = results.direct ?? ({} as SutResult);
  const ids = ALL.filter((id) => results[id]);
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? Math.round((a / b) * 1000) / 1000 : undefined);
  const ratios = Object.fromEntries(
    ids
      .filter((id) => id !== 'direct' && !results[id]!.failed?.startsWith('the target') && results[id]!.throughput)
      .map((id) => {
        const r = results[id]!;
        return [
          id,
          {
            throughput: ratio(r.throughput?.callsPerS, d.throughput?.callsPerS),
            latencyP50Loaded: ratio(r.throughput?.latencyMs.p50, d.throughput?.latencyMs.p50),
            latencyP50Single: ratio(r.latency?.latencyMs.p50, d.latency?.latencyMs.p50),
            sessionStartWarmP50: ratio(r.sessionStartWarm?.connectMs.p50, d.sessionStartWarm?.connectMs.p50),
            sessionStartWarmP50VsDirectFreshProcess:
              id === 'stateless' ? undefined : ratio(r.sessionStartWarm?.connectMs.p50, d.sessionStartFresh?.connectMs.p50),
            elicitationP50: ratio(r.elicitation?.latencyMs.p50, d.elicitation?.latencyMs.p50),
            throughputVsDirectProcessPerSession:
              id === 'stateless' ? undefined : ratio(r.throughput?.callsPerS, d.throughputProcessPerSession?.callsPerS),
          },
        ];
      }),
  );
  // The byte relay floor against direct, and berth stdio against the floor, at each concurrency that measured it.
  const floorRatios = Object.fromEntries(
    Object.entries(d.throughputFloorAt ?? {}).map(([n, f]) => [
      n,
      {
        floorVsDirect: ratio(f.callsPerS, d.throughputAt?.[Number(n)]?.callsPerS),
        stdioVsFloor: ratio(results.stdio?.throughputAt?.[Number(n)]?.callsPerS, f.callsPerS),
      },
    ]),
  );
  const targets = Object.fromEntries(
    Object.keys(ratios)
      .filter((id) => !PEER(id as Id))
      .map((id) => [
        id,
        {
          throughputAtLeast0_9xDirect: (ratios[id]!.throughput ?? 0) >= 0.9,
          warmSessionStartP50AtMost15ms: (results[id as Id]!.sessionStartWarm?.connectMs.p50 ?? Infinity) <= 15,
          berthCpuPerRelayedCallAtMost0_05ms: (results[id as Id]!.throughput?.cpuMsPerCall.gateway ?? Infinity) <= 0.05,
        },
      ]),
  );
  const durationS = Math.round((performance.now() - T0) / 100) / 10;
  const out = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      sdk: (JSON.parse(readFileSync(join(ROOT, 'node_modules/@modelcontextprotocol/sdk/package.json'), 'utf8')) as { version: string })
        .version,
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model,
      memTotalMb: Math.round(os.totalmem() / 2 ** 20),
      backgroundCores,
      quick: QUICK,
      concurrency: CONCURRENCY,
      concurrencies: CONCURRENCIES,
      warmPool: WARM,
      peers: { supergateway: peerVersion('supergateway'), 'mcp-proxy': peerVersion('mcp-proxy') },
      berthBin: BERTH_BIN,
      isolation: ISOLATION ?? 'auto',
      git: gitState(),
      params: P,
      durationS,
    },
    scenarios: results,
    ratios,
    floorRatios,
    targets,
    burst,
    noisy,
    cluster,
    drivers: {
      server: 'the bundled demo server (berth run with no command: node dist/demo/server.js)',
      backgroundCores: driversBackgroundCores,
      params: DP,
      results: drivers,
      targets: driverTargets(drivers),
    },
  };
  writeFileSync(OUT, JSON.stringify(out, null, 2) + '\n');

  const f1 = (x: number | undefined) =>
    x === undefined || Number.isNaN(x) ? '–' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  const mb = (kb: number | undefined) => (kb === undefined || Number.isNaN(kb) ? '–' : (kb / 1024).toFixed(1));
  // ratio: 'direct' = berth / direct; 'ref' = berth / the direct column's reference value (stateful berths only)
  // An optional fifth element prints the cell itself (no ratio).
  type Row = [
    string,
    (r: SutResult) => number | undefined,
    'direct' | 'ref' | 'floor' | 'none',
    ((x: number | undefined) => string)?,
    ((r: SutResult) => string)?,
  ];
  const busy = (x: LoadResult | undefined) => (x ? `${f1(x.coresBusy)} / ${f1(x.coresOther)}` : '–');
  const rows: Row[] = [
    [`echo calls/s, ${CONCURRENCY} clients`, (r) => r.throughput?.callsPerS, 'direct'],
    [`  latency p50 ms`, (r) => r.throughput?.latencyMs.p50, 'direct'],
    [`  latency p99 ms`, (r) => r.throughput?.latencyMs.p99, 'direct'],
    [`  CPU ms/call: client`, (r) => r.throughput?.cpuMsPerCall.client, 'direct'],
    [`  CPU ms/call: gateway (berth, peer)`, (r) => r.throughput?.cpuMsPerCall.gateway || undefined, 'none'],
    [`  CPU ms/call: server(s)`, (r) => r.throughput?.cpuMsPerCall.servers, 'direct'],
    [`  CPU ms/call: total`, (r) => r.throughput?.cpuMsPerCall.total, 'direct'],
    [`  cores busy / of it not ours`, (r) => r.throughput?.coresBusy, 'none', f1, (r) => busy(r.throughput)],
    [`  vs direct, 1 process/session: calls/s`, (r) => (r === d ? d.throughputProcessPerSession : r.throughput)?.callsPerS, 'ref'],
    [`    server CPU ms/call`, (r) => (r === d ? d.throughputProcessPerSession : r.throughput)?.cpuMsPerCall.servers, 'ref'],
    [
      `  vs the byte relay floor (in direct's column): calls/s`,
      (r) => (r === d ? d.throughputFloorAt?.[CONCURRENCY] : r.throughputAt?.[CONCURRENCY])?.callsPerS,
      'floor',
    ],
    ...CONCURRENCIES.slice(1).flatMap((n): Row[] => [
      [`echo calls/s, ${n} clients`, (r) => r.throughputAt?.[n]?.callsPerS, 'direct'],
      [`  latency p50 ms`, (r) => r.throughputAt?.[n]?.latencyMs.p50, 'direct'],
      [`  latency p99 ms`, (r) => r.throughputAt?.[n]?.latencyMs.p99, 'direct'],
      [`  CPU ms/call: gateway (berth, peer)`, (r) => r.throughputAt?.[n]?.cpuMsPerCall.gateway || undefined, 'none'],
      [`  CPU ms/call: total`, (r) => r.throughputAt?.[n]?.cpuMsPerCall.total, 'direct'],
      [`  cores busy / of it not ours`, (r) => r.throughputAt?.[n]?.coresBusy, 'none', f1, (r) => busy(r.throughputAt?.[n])],
      [
        `  vs the byte relay floor (in direct's column): calls/s`,
        (r) => (r === d ? d.throughputFloorAt?.[n] : r.throughputAt?.[n])?.callsPerS,
        'floor',
      ],
    ]),
    [`gateway CPU ms per call, whole run`, (r) => r.gatewayCpuRun?.msPerCall, 'none'],
    [
      `isolation: server processes for ${CONCURRENCY} sessions`,
      (r) => r.sessionIsolation?.serverProcesses,
      'none',
      f1,
      (r) => (r.sessionIsolation ? `${r.sessionIsolation.serverProcesses} of ${r.sessionIsolation.sessions}` : '–'),
    ],
    [
      `  a file session A wrote, read by B`,
      (r) => (r.sessionIsolation ? Number(r.sessionIsolation.stateSeenByNextSession) : undefined),
      'none',
      f1,
      (r) =>
        r.sessionIsolation
          ? r.sessionIsolation.stateSeenByNextSession
            ? 'yes (shared)'
            : `no: ${r.sessionIsolation.nextSessionRead}`
          : '–',
    ],
    [`echo calls/s, 1 client`, (r) => r.latency?.callsPerS, 'direct'],
    [`  latency p50 ms`, (r) => r.latency?.latencyMs.p50, 'direct'],
    [`  latency p99 ms`, (r) => r.latency?.latencyMs.p99, 'direct'],
    [`  cores busy / of it not ours`, (r) => r.latency?.coresBusy, 'none', f1, (r) => busy(r.latency)],
    [`session start warm p50 ms`, (r) => r.sessionStartWarm?.connectMs.p50, 'direct'],
    [`  p99 ms`, (r) => r.sessionStartWarm?.connectMs.p99, 'direct'],
    [`  initialize part p50 ms`, (r) => r.sessionStartWarm?.initializeMs.p50, 'direct'],
    [`  first echo after it p50 ms`, (r) => r.sessionStartWarm?.firstCallMs.p50, 'direct'],
    [`  vs direct, 1st session of a new process`, (r) => (r === d ? d.sessionStartFresh : r.sessionStartWarm)?.connectMs.p50, 'ref'],
    [`session start cold p50 ms`, (r) => r.sessionStartCold?.connectMs.p50, 'direct'],
    [`  p99 ms`, (r) => r.sessionStartCold?.connectMs.p99, 'direct'],
    [`elicitation call p50 ms`, (r) => r.elicitation?.latencyMs.p50, 'direct'],
    [`  p99 ms`, (r) => r.elicitation?.latencyMs.p99, 'direct'],
    [`berth RSS idle MB`, (r) => r.idle?.gatewayRssKb, 'none', mb],
    [`berth RSS, ${CONCURRENCY} sessions MB`, (r) => r.memory?.gatewayRssKb, 'none', mb],
    [`server RSS per session MB`, (r) => r.memory?.serverRssKb, 'none', mb],
    [`server PSS per session MB`, (r) => r.memory?.serverPssKb, 'none', mb],
    [
      `server sandboxes × processes each`,
      (r) => r.memory?.serverProcesses,
      'none',
      f1,
      (r) => (r.memory ? `${r.memory.serverProcesses} × ${r.memory.processesPerSandbox}` : '–'),
    ],
  ];
  const cols = ids.filter((id) => results[id]!.sessionStartWarm || results[id]!.throughput);
  const cells: string[][] = [['', ...cols.map((c) => LABEL[c])]];
  for (const [name, get, mode, fmt = f1, cell] of rows) {
    const base = get(d);
    cells.push([
      name,
      ...cols.map((c) => {
        const r = results[c]!;
        if (mode === 'ref' && (c === 'stateless' || c === 'mcpproxy')) return '–';
        const v = get(r);
        let s = fmt(v);
        if (cell) return cell(r);
        if (c !== 'direct' && mode !== 'none' && v !== undefined && base !== undefined && base > 0) s += ` (${(v / base).toFixed(2)}×)`;
        return s;
      }),
    ]);
  }
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const w = (s: string) => process.stdout.write(s);
  w(
    `\nberth benchmark — node ${process.version}, SDK ${out.meta.sdk}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), ${QUICK ? 'quick' : 'full'} run in ${durationS} s\n`,
  );
  const iso = [...new Set(ids.map((id) => results[id]!.isolation).filter(Boolean))].join(', ') || ISOLATION || 'auto';
  const g = out.meta.git;
  w(
    `berth ${g.commit ?? '?'}${g.srcDirty ? ' + uncommitted src/ changes' : ''}${g.checkout && g.checkout !== '.' ? ` (checkout ${g.checkout})` : ''}, isolation ${iso}; ${CONCURRENCY} clients = ${CONCURRENCY} sessions; warm pool ${WARM}\n`,
  );
  w(`client, berth and servers share this machine${results.direct ? '; (×) = berth / direct' : ''}\n`);
  if (ids.some(PEER))
    w(
      `peers on loopback, the same probe over stdio: supergateway ${out.meta.peers.supergateway} --stateful (one server process per session), mcp-proxy ${out.meta.peers['mcp-proxy']} (one server process for all sessions)\n`,
    );
  w('\n');
  if (results.direct) {
    w([line(cells[0]!), widths.map((x) => '-'.repeat(x)).join('  '), ...cells.slice(1).map(line)].join('\n') + '\n');
    w(`"vs direct" rows: the direct column shows the same probe with one process per session (no gateway), and the ratio\n`);
    w(`compares berth with that instead of with the single shared direct process. "vs the byte relay floor" rows: the direct\n`);
    w(`column shows bench/floor-relay.mjs (node:http passing bytes to one child per session, nothing else) and the ratio\n`);
    w(`compares each target with it. See docs/benchmarks.md.\n\n`);
    for (const [n, x] of Object.entries(floorRatios))
      w(
        `byte relay floor, ${n} sessions: ${f1(d.throughputFloorAt?.[Number(n)]?.callsPerS)} calls/s = ${x.floorVsDirect?.toFixed(2)}× direct` +
          ` (node:http and pipes, nothing else)${x.stdioVsFloor === undefined ? '' : `; berth stdio = ${x.stdioVsFloor.toFixed(2)}× the floor`}\n`,
      );
    if (Object.keys(floorRatios).length) w('\n');
  }
  for (const [id, t] of Object.entries(targets)) {
    w(
      `target ${LABEL[id as Id].padEnd(16)} throughput ≥ 0.9× direct: ${t.throughputAtLeast0_9xDirect ? 'met   ' : 'MISSED'} (${ratios[id]!.throughput?.toFixed(2)}×)` +
        `   warm session start p50 ≤ 15 ms: ${t.warmSessionStartP50AtMost15ms ? 'met   ' : 'MISSED'} (${f1(results[id as Id]!.sessionStartWarm?.connectMs.p50)} ms)` +
        `   berth CPU per relayed call ≤ 0.05 ms: ${t.berthCpuPerRelayedCallAtMost0_05ms ? 'met   ' : 'MISSED'} (${f1(results[id as Id]!.throughput?.cpuMsPerCall.gateway)} ms)\n`,
    );
  }
  if (backgroundCores > 0.2)
    w(`warning: ${backgroundCores} cores were busy before the bench started; absolute numbers are noisy (ratios less so)\n`);
  for (const id of ids) {
    const r = results[id]!;
    const e = (r.throughput?.errors ?? 0) + (r.latency?.errors ?? 0) + (r.elicitation?.errors ?? 0);
    if (e) w(`warning: ${r.label}: ${e} failed calls${r.elicitation?.firstError ? ` (elicitation: "${r.elicitation.firstError}")` : ''}\n`);
    if (r.sessionStartWarm?.unsettled)
      w(`warning: ${r.label}: ${r.sessionStartWarm.unsettled} session samples taken before the targets went quiet\n`);
    if (r.failed) w(`FAILED ${r.label}: ${r.failed}\n`);
  }
  w(burstReport(burst, f1));
  w(noisyReport(noisy, f1));
  if (cluster && 'skipped' in cluster) w(`\ncluster: skipped (${cluster.skipped})\n`);
  else if (cluster) {
    w(`\ncluster (2 nodes, one Redis; ${cluster.concurrency} clients, echo, ${cluster.rounds} alternating rounds)\n`);
    w(`  through the owner node      ${String(cluster.ownerCallsPerS).padStart(7)} calls/s   p50 ${f1(cluster.ownerP50Ms)} ms\n`);
    w(
      `  through a non-owner (1 hop) ${String(cluster.forwardedCallsPerS).padStart(7)} calls/s   p50 ${f1(cluster.forwardedP50Ms)} ms   (${(cluster.forwardedCallsPerS / Math.max(1, cluster.ownerCallsPerS)).toFixed(2)}× owner)\n`,
    );
    if (cluster.errors) w(`warning: cluster: ${cluster.errors} failed calls\n`);
  }
  if (drivers.length) {
    w(`\n${driverReport(drivers, f1)}`);
    if ((driversBackgroundCores ?? 0) > 0.2)
      w(`warning: ${driversBackgroundCores} cores were busy before the per-driver section started; its timings are noisy\n`);
  }
  w(`\nJSON: ${OUT}\n`);
}
