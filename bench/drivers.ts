// The per-driver section of `npm run bench`: the bundled demo server (`berth run` with no command, i.e.
// `node dist/demo/server.js`) under each sandbox driver, measured side by side:
//   - session start p50/p99 from the warm pool and cold (--warm-pool 0), plus the first tool call after it;
//   - a tool call (session_info) on a live session, p50/p99;
//   - host memory per idle session: PSS of all the session's processes (the server and any sandbox helpers);
//   - how many idle demo sessions fit in this machine's memory: up to a bounded count measured (all must keep
//     answering), the rest extrapolated from the measured cost per session and the memory still available.
// Start and tool-call samples rotate over the drivers in rounds, as the main section does, so background load hits
// every driver alike. The capacity runs take one driver at a time (they read the machine's MemAvailable).
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  childrenOf,
  descendantsOf,
  envOf,
  fdCount,
  machineTasks,
  openFilesLimit,
  processTable,
  pssKb,
  pteKb,
  rssKb,
  threads,
} from './procfs.js';
import { hostName } from '../src/sandbox/host.js';
import { buildTestImages, ImageToolsMissing } from '../test/fixtures/images/build.js';
import { settle, startBerth, type Target } from './targets.js';
import {
  connect,
  disconnect,
  dist,
  loadRound,
  sessionSample,
  summarize,
  type Conn,
  type ConnectSample,
  type Dist,
  type LoadResult,
  type LoadRound,
} from './workloads.js';

export interface Variant {
  id: string;
  label: string;
  isolation: 'process' | 'namespace' | 'gvisor' | 'microvm';
  /** Extra `berth run` flags. */
  flags: string[];
  /** Fewer samples, a smaller pool, fewer idle sessions: for drivers whose sandboxes take seconds to start. */
  params?: Partial<DriverParams>;
  /** How long to wait for its warm pool to fill and go quiet (default 15 s). */
  settleMs?: number;
  /** More environment for berth. */
  env?: Record<string, string>;
  /** Only run when named in `--drivers`. */
  optIn?: boolean;
  /**
   * Run the demo server from an OCI image (the test fixtures' `demo` tag: the same bundled server, node and its
   * libraries in one layer) instead of as a command on the host: the image column beside the command's.
   */
  image?: boolean;
}

/** Where the image variants unpack their image: kept across bench runs, apart from berth's system cache. */
const IMAGE_CACHE = join(tmpdir(), 'berth-bench-images');

/** The microVM runs under TCG emulation on hosts without usable KVM: a VM takes 10-30 s to boot. */
// Its first calls run cold code under emulation for seconds: longer warm-up and windows, or none would finish.
const MICROVM: Partial<DriverParams> = {
  warmPool: 2,
  rounds: 2,
  warmSamples: 4,
  coldSamples: 2,
  capacitySessions: 4,
  openConcurrency: 2,
  toolWarmupMs: 4000,
  toolMs: 4000,
};

/** What `--drivers` may name. */
export const VARIANTS: Variant[] = [
  { id: 'process', label: 'process', isolation: 'process', flags: [] },
  { id: 'namespace', label: 'namespace', isolation: 'namespace', flags: [] },
  // The locked-down production shape: no network, cgroup limits (v1 or v2) on every session.
  {
    id: 'namespace-limits',
    label: 'namespace+limits',
    isolation: 'namespace',
    flags: ['--network', 'none', '--memory', '256m', '--cpus', '1', '--pids', '256'],
  },
  // The same demo server from an OCI image: the image's root through a per-session overlay, its own user.
  { id: 'namespace-image', label: 'namespace image', isolation: 'namespace', flags: ['--upstream', 'stdio'], image: true },
  { id: 'gvisor', label: 'gvisor', isolation: 'gvisor', flags: [], params: { capacitySessions: 20, coldSamples: 4 }, settleMs: 30_000 },
  {
    id: 'gvisor-image',
    label: 'gvisor image',
    isolation: 'gvisor',
    flags: ['--upstream', 'stdio'],
    params: { capacitySessions: 20, coldSamples: 4 },
    settleMs: 30_000,
    image: true,
  },
  { id: 'microvm', label: 'microvm', isolation: 'microvm', flags: ['--startup-timeout', '300s'], params: MICROVM, settleMs: 240_000 },
  // The same without the driver's bundling of the server (BERTH_MICROVM_BUNDLE=0): what bundling buys.
  {
    id: 'microvm-unbundled',
    label: 'microvm unbundled',
    isolation: 'microvm',
    flags: ['--startup-timeout', '300s'],
    params: MICROVM,
    settleMs: 240_000,
    env: { BERTH_MICROVM_BUNDLE: '0' },
    optIn: true,
  },
];

export interface DriverParams {
  warmPool: number;
  rounds: number;
  warmSamples: number;
  coldSamples: number;
  toolWarmupMs: number;
  toolMs: number;
  /** Idle sessions opened per driver for the memory and capacity measurement. */
  capacitySessions: number;
  /** Sessions opened at once while filling up. */
  openConcurrency: number;
}

export interface DriverMemory {
  /** Idle sessions measured (asked for, opened, and still answering after the measurement). */
  asked: number;
  opened: number;
  answered: number;
  /** Seconds it took to open them (warm pool refilling as it goes). */
  openS: number;
  /** Means per session, KiB: PSS of every process of the session's sandbox, split into the server and the helpers. */
  pssKb: number;
  serverPssKb: number;
  helperPssKb: number;
  rssKb: number;
  /** Page tables of the session's processes (kernel memory outside PSS). */
  pageTablesKb: number;
  processesPerSession: number;
  /** Command names of the helper processes (e.g. bwrap), if any. */
  helpers: string[];
  berthRssIdleKb: number;
  berthRssKb: number;
  /** berth's own RSS growth, per session. */
  berthKbPerSession: number;
  /**
   * Kernel memory per session: the machine-wide growth of unreclaimable slab, kernel stacks and page tables over the
   * N sessions, / N. It holds what PSS cannot see (namespaces, mounts, cgroups, sockets), and anything other
   * processes did meanwhile.
   */
  kernelKbPerSession: number;
  /**
   * The machine's MemAvailable drop per session, minus the bench client's own growth. Not a superset of PSS: file
   * pages (the node binary) count in PSS but as reclaimable cache in MemAvailable. Kept for reference.
   */
  memAvailableDropKbPerSession: number;
  memTotalKb: number;
  memAvailableAfterKb: number;
  /** Threads of the session's processes (each takes a pid), and file descriptors berth holds per session. */
  threadsPerSession: number;
  berthFdsPerSession: number;
}

export interface DriverCapacity {
  measured: number;
  /**
   * The cost per session the extrapolation divides by: sandbox PSS, plus kernel memory (the larger of the
   * session's own page tables and the machine-wide kernel growth per session), plus berth's growth per session.
   */
  costKbPerSession: number;
  /** measured + MemAvailable left / cost: an extrapolation, not a measurement. */
  fitHereExtrapolated: number;
  /** The same for a machine with 24 GiB of RAM and this machine's base use. */
  fit24GiBExtrapolated: number;
  /** For reference: the same with the MemAvailable drop per session as the cost. */
  fit24GiBByMemAvailable: number;
  /** Bounds other than memory, extrapolated the same way: kernel.pid_max (threads), berth's open-file soft limit. */
  fitByPids: number;
  fitByFds: number;
}

export interface DriverResult {
  id: string;
  label: string;
  isolation: string;
  flags: string[];
  env?: Record<string, string>;
  /** The samples, pool and idle sessions this driver was measured with. */
  params: DriverParams;
  /** Processes per session's sandbox and their command names, as seen in the process table. */
  sandbox?: { processes: number; commands: string[] };
  startWarm?: { connectMs: Dist; firstCallMs: Dist; unsettled: number };
  startCold?: { connectMs: Dist; firstCallMs: Dist };
  toolCall?: LoadResult;
  memory?: DriverMemory;
  capacity?: DriverCapacity;
  skipped?: string;
  failed?: string;
}

export interface DriverTargets {
  warmStartP50AtMost15ms: boolean;
  /** namespace only: helper PSS per session ≤ 5 MiB. */
  helperPssAtMost5MiB?: boolean;
  /** namespace only: ≥ 500 idle demo sessions on 24 GiB (extrapolated from PSS, as the target defines). */
  atLeast500On24GiB?: boolean;
}

const TOOL = { name: 'session_info', arguments: {} };
const GiB_KB = 1024 * 1024;
/**
 * Sandbox machinery rather than the server: bubblewrap, and gVisor's runsc, gofer and Sentry (the server's own
 * memory is in the Sentry's stub processes). A microVM is one QEMU process holding the guest kernel and the server
 * alike; it counts as the server.
 */
const HELPERS = new Set(['bwrap', 'setpriv', 'runsc', 'runsc-gofer', 'runsc-sandbox']);

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  return undefined;
}

/** Kernel memory that no process's PSS shows: unreclaimable slab, kernel stacks, page tables. */
function kernelKb(): number {
  return meminfoKb('SUnreclaim') + meminfoKb('KernelStack') + meminfoKb('PageTables');
}

function meminfoKb(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Each sandbox under a berth: its root process (a child of berth) and everything below it. */
function sandboxGroups(berthPid: number): number[][] {
  const table = processTable();
  return childrenOf(berthPid, table).map((root) => [root, ...descendantsOf(root, table)]);
}

/** The program's name as it was started (runsc's processes are all `exe` in /proc/PID/comm). */
const comm = (pid: number) => {
  try {
    const argv0 = cmdline(pid).split('\0')[0]!;
    return argv0 ? argv0.split('/').pop()! : readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
};

/**
 * Whether a process is part of a session's sandbox: the server carries BERTH_SESSION_ID in its environment;
 * runsc names its container after the session (hashed); QEMU shares the session's working directory.
 */
function servesSession(pid: number, c: Conn): boolean {
  if (!c.sessionId) return false;
  if (envOf(pid, 'BERTH_SESSION_ID') === c.sessionId) return true;
  const cmd = cmdline(pid);
  return cmd.includes(`\0${hostName(c.sessionId)}`) || (c.cwd !== undefined && cmd.includes(`path=${c.cwd},`));
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

/** The demo server's image, built locally (no registry) once per set of inputs; a skip when umoci/skopeo are missing. */
async function demoImage(): Promise<{ ref: string } | { skipped: string }> {
  try {
    return { ref: (await buildTestImages()).demo };
  } catch (e) {
    if (e instanceof ImageToolsMissing) return { skipped: e.message };
    throw e;
  }
}

interface Run {
  v: Variant;
  r: DriverResult;
  warm?: Target;
  cold?: Target;
}

export interface DriverContext {
  bin: string;
  log: (msg: string) => void;
  /** Targets the caller stops on SIGINT. */
  started: Target[];
}

const rotate = <T>(xs: T[], r: number) => xs.map((_, i) => xs[(i + r) % xs.length]!);

export async function runDrivers(ctx: DriverContext, variants: Variant[], P: DriverParams): Promise<DriverResult[]> {
  const { log, started } = ctx;
  const runs: Run[] = variants.map((v) => ({
    v,
    r: { id: v.id, label: v.label, isolation: v.isolation, flags: v.flags, env: v.env, params: { ...P, ...v.params } },
  }));
  const params = (x: Run): DriverParams => x.r.params;
  const bwrap = which('bwrap');
  const stop = async (t: Target | undefined) => {
    if (!t) return;
    const i = started.indexOf(t);
    if (i >= 0) started.splice(i, 1);
    await t.stop();
  };
  const live = () => runs.filter((x) => x.warm && !x.r.failed && !x.r.skipped);
  const fail = (x: Run, what: string, e: unknown) => {
    const t = x.warm?.exitInfo() ? x.warm : x.cold?.exitInfo() ? x.cold : undefined;
    const tail = t
      ? `; berth ${t.exitInfo()}: ${t
          .stderrTail()
          .split('\n')
          .filter((l) => l.trim())
          .slice(-3)
          .join(' | ')
          .slice(0, 400)}`
      : '';
    x.r.failed = `${what}: ${(e as Error).message.split('\n')[0]}${tail}`;
    log(`driver ${x.v.label}: FAILED ${x.r.failed}`);
  };
  const quiet = async () => {
    const list = live().flatMap((x) => [{ t: x.warm!, servers: params(x).warmPool }, ...(x.cold ? [{ t: x.cold, servers: 0 }] : [])]);
    try {
      return await settle(list, Math.max(15_000, ...live().map((x) => x.v.settleMs ?? 0)));
    } catch {
      for (const x of live()) if (x.warm!.exitInfo() || x.cold?.exitInfo()) fail(x, 'berth exited', new Error('the target process exited'));
      return false;
    }
  };

  try {
    // ---- start one warm and one cold berth per driver ----------------------------------------------------------
    for (const x of runs) {
      if (x.v.isolation === 'namespace' && !bwrap) {
        x.r.skipped = 'bwrap (bubblewrap) is not on PATH';
        log(`driver ${x.v.label}: skipped: ${x.r.skipped}`);
        continue;
      }
      try {
        const image = x.v.image ? await demoImage() : undefined;
        if (image && 'skipped' in image) {
          x.r.skipped = image.skipped;
          log(`driver ${x.v.label}: skipped: ${x.r.skipped}`);
          continue;
        }
        const flags = image ? [...x.v.flags, '--image', image.ref] : x.v.flags;
        const env = image ? { ...x.v.env, BERTH_IMAGE_CACHE: IMAGE_CACHE } : x.v.env;
        const o = { bin: ctx.bin, isolation: x.v.isolation, flags, env };
        x.warm = await startBerth(null, { ...o, warmPool: params(x).warmPool });
        started.push(x.warm);
        x.cold = await startBerth(null, { ...o, warmPool: 0 });
        started.push(x.cold);
        log(`driver ${x.v.label}: berth up in ${x.warm.startedInMs.toFixed(0)} ms`);
      } catch (e) {
        // An explicit --isolation that cannot run here makes berth exit at once, saying why: a skip, not a failure.
        const why = /cannot run on this host: ([^\n"]+)/.exec((e as Error).message)?.[1];
        if (why) {
          x.r.skipped = `berth says: ${why}`;
          log(`driver ${x.v.label}: skipped: ${x.r.skipped}`);
          for (const t of [x.warm, x.cold]) await stop(t);
          x.warm = x.cold = undefined;
        } else fail(x, 'berth did not start', e);
      }
    }
    log(
      `drivers: waiting for warm pools of the demo server (${live()
        .map((x) => `${x.v.label} ${params(x).warmPool}`)
        .join(', ')}) to fill and go quiet`,
    );
    await quiet();
    for (const x of live()) {
      const g = sandboxGroups(x.warm!.pid)[0] ?? [];
      x.r.sandbox = { processes: g.length, commands: g.map(comm) };
    }

    // ---- session start, warm and cold, rotating over the drivers ------------------------------------------------
    log(
      `drivers: session start, ${live()
        .map((x) => `${x.v.label} ${params(x).warmSamples} warm + ${params(x).coldSamples} cold`)
        .join(', ')}`,
    );
    const warm = new Map<Run, ConnectSample[]>();
    const cold = new Map<Run, ConnectSample[]>();
    const unsettled = new Map<Run, number>();
    const most = Math.max(0, ...runs.map((x) => params(x).warmSamples));
    for (let i = 0; i < most; i++) {
      for (const x of rotate(live(), i)) {
        const subjects: Array<[Target, Map<Run, ConnectSample[]>]> = [];
        if (i < params(x).warmSamples) subjects.push([x.warm!, warm]);
        if (i < params(x).coldSamples) subjects.push([x.cold!, cold]);
        for (const [t, into] of subjects) {
          if (x.r.failed) break;
          if (!(await quiet()) && into === warm) unsettled.set(x, (unsettled.get(x) ?? 0) + 1);
          try {
            into.set(x, [...(into.get(x) ?? []), await sessionSample(t, TOOL)]);
          } catch (e) {
            fail(x, `session start (${into === warm ? 'warm' : 'cold'})`, e);
          }
        }
      }
    }
    for (const x of runs) {
      const w = warm.get(x);
      const c = cold.get(x);
      if (w?.length)
        x.r.startWarm = {
          connectMs: dist(w.map((s) => s.connect)),
          firstCallMs: dist(w.map((s) => s.firstCall)),
          unsettled: unsettled.get(x) ?? 0,
        };
      if (c?.length) x.r.startCold = { connectMs: dist(c.map((s) => s.connect)), firstCallMs: dist(c.map((s) => s.firstCall)) };
    }
    for (const x of runs) {
      await stop(x.cold);
      x.cold = undefined;
    }

    // ---- a tool call inside each sandbox ------------------------------------------------------------------------
    log(`drivers: tool call (${TOOL.name}), up to ${P.rounds} rounds of ${P.toolMs} ms per driver`);
    const conns = new Map<Run, Conn>();
    for (const x of live()) {
      try {
        conns.set(x, await connect(x.warm!.url));
      } catch (e) {
        fail(x, 'connect', e);
      }
    }
    const rounds = new Map<Run, LoadRound[]>();
    for (let r = 0; r < P.rounds; r++) {
      for (const x of rotate(live(), r)) {
        if (r >= params(x).rounds) continue;
        await quiet();
        try {
          rounds.set(x, [
            ...(rounds.get(x) ?? []),
            await loadRound(x.warm!, [conns.get(x)!], r ? params(x).toolWarmupMs : 3 * params(x).toolWarmupMs, params(x).toolMs, TOOL),
          ]);
        } catch (e) {
          fail(x, 'tool call', e);
        }
      }
    }
    for (const [x, c] of conns) {
      await disconnect(c);
      if (rounds.get(x)?.length) x.r.toolCall = summarize(1, rounds.get(x)!);
    }

    // ---- idle sessions: memory per session, and how many fit -----------------------------------------------------
    for (const x of live()) {
      log(`drivers: ${x.v.label}: opening ${params(x).capacitySessions} idle sessions`);
      try {
        await capacity(x, params(x), quiet);
      } catch (e) {
        fail(x, 'idle sessions', e);
      }
      await stop(x.warm); // ends its sessions; the next driver's measurement starts from a machine without them
      x.warm = undefined;
    }
  } catch (e) {
    // A bench error (not a target's): keep what was measured, mark the rest.
    for (const x of runs) if (!x.r.skipped && !x.r.failed && !x.r.memory) fail(x, 'bench error', e);
  } finally {
    for (const x of runs) {
      await stop(x.cold);
      await stop(x.warm);
    }
  }
  return runs.map((x) => x.r);
}

async function capacity(x: Run, P: DriverParams, quiet: () => Promise<boolean>): Promise<void> {
  const t = x.warm!;
  await quiet();
  const berthRssIdleKb = rssKb(t.pid);
  const availBefore = meminfoKb('MemAvailable');
  const kernelBefore = kernelKb();
  const fdsBefore = fdCount(t.pid);
  const clientBefore = process.memoryUsage().rss / 1024;
  const conns: Conn[] = [];
  let next = 0;
  let failures = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: P.openConcurrency }, async () => {
      while (next < P.capacitySessions && failures < 3) {
        next++;
        try {
          const c = await connect(t.url);
          conns.push(c);
          const r = (await c.client.callTool(TOOL)) as { structuredContent?: { sessionId?: string; cwd?: string } };
          c.sessionId = r.structuredContent?.sessionId ?? undefined;
          c.cwd = r.structuredContent?.cwd;
        } catch (e) {
          failures++;
          firstError ??= (e as Error).message;
        }
      }
    }),
  );
  const openS = (performance.now() - t0) / 1000;
  try {
    // Idle: the warm pool is refilled and nothing burns CPU any more.
    await settle([{ t, servers: conns.length + P.warmPool }], Math.max(30_000, x.v.settleMs ?? 0), 300);
    const groups = sandboxGroups(t.pid).filter((g) => g.some((p) => conns.some((c) => servesSession(p, c))));
    const n = groups.length;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const mean = (xs: number[]) => sum(xs) / Math.max(1, xs.length);
    const pssOf = (p: number) => pssKb(p) ?? 0;
    const isHelper = (p: number) => HELPERS.has(comm(p));
    const helperPss = mean(groups.map((g) => sum(g.filter(isHelper).map(pssOf))));
    const serverPss = mean(groups.map((g) => sum(g.filter((p) => !isHelper(p)).map(pssOf))));
    const rss = mean(groups.map((g) => sum(g.map(rssKb))));
    const pte = mean(groups.map((g) => sum(g.map(pteKb))));
    const thr = mean(groups.map((g) => sum(g.map(threads))));
    const fds = fdCount(t.pid);
    const tasks = machineTasks();
    const helpers = [...new Set(groups.flat().filter(isHelper).map(comm))];
    const berthRssKb = rssKb(t.pid);
    const availAfter = meminfoKb('MemAvailable');
    const kernelAfter = kernelKb();
    const clientGrowth = Math.max(0, process.memoryUsage().rss / 1024 - clientBefore);
    // Every session still answers (idle is not dead).
    let answered = 0;
    await Promise.all(
      conns.map(async (c) => {
        try {
          await c.client.callTool(TOOL);
          answered++;
        } catch {
          // counted as not answering
        }
      }),
    );
    const memTotal = meminfoKb('MemTotal');
    const mem: DriverMemory = {
      asked: P.capacitySessions,
      opened: conns.length,
      answered,
      openS: Math.round(openS * 10) / 10,
      pssKb: Math.round(helperPss + serverPss),
      serverPssKb: Math.round(serverPss),
      helperPssKb: Math.round(helperPss),
      rssKb: Math.round(rss),
      pageTablesKb: Math.round(pte),
      processesPerSession: Math.round((groups.flat().length / Math.max(1, n)) * 10) / 10,
      helpers,
      berthRssIdleKb,
      berthRssKb,
      berthKbPerSession: Math.round(Math.max(0, berthRssKb - berthRssIdleKb) / Math.max(1, n)),
      kernelKbPerSession: Math.round((kernelAfter - kernelBefore) / Math.max(1, n)),
      memAvailableDropKbPerSession: Math.round((availBefore - availAfter - clientGrowth) / Math.max(1, n)),
      memTotalKb: memTotal,
      memAvailableAfterKb: availAfter,
      threadsPerSession: Math.round(thr * 10) / 10,
      berthFdsPerSession: Math.round(((fds - fdsBefore) / Math.max(1, n)) * 10) / 10,
    };
    x.r.memory = mem;
    if (firstError) x.r.failed = `${failures} of ${P.capacitySessions} sessions did not open: ${firstError.split('\n')[0]}`;
    if (n) {
      const cost = mem.pssKb + Math.max(mem.pageTablesKb, mem.kernelKbPerSession) + mem.berthKbPerSession;
      const fit = (costKb: number, availKb: number) => (costKb > 0 ? n + Math.floor(Math.max(0, availKb) / costKb) : NaN);
      const avail24 = availAfter + 24 * GiB_KB - memTotal;
      x.r.capacity = {
        measured: n,
        costKbPerSession: cost,
        fitHereExtrapolated: fit(cost, availAfter),
        fit24GiBExtrapolated: fit(cost, avail24),
        fit24GiBByMemAvailable: fit(mem.memAvailableDropKbPerSession, avail24),
        fitByPids: fit(mem.threadsPerSession, tasks.pidMax - tasks.tasks),
        fitByFds: fit(mem.berthFdsPerSession, openFilesLimit(t.pid) - fds),
      };
    }
  } finally {
    await Promise.all(conns.map((c) => c.client.close().catch(() => undefined))); // berth's stop ends the sessions
  }
}

export function driverTargets(results: DriverResult[]): Record<string, DriverTargets> {
  const out: Record<string, DriverTargets> = {};
  for (const r of results) {
    if (!r.startWarm && !r.memory) continue;
    const t: DriverTargets = { warmStartP50AtMost15ms: (r.startWarm?.connectMs.p50 ?? Infinity) <= 15 };
    if (r.isolation === 'namespace') {
      t.helperPssAtMost5MiB = r.memory ? r.memory.helperPssKb <= 5 * 1024 : false;
      t.atLeast500On24GiB = r.capacity ? r.capacity.fit24GiBExtrapolated >= 500 : false;
    }
    out[r.id] = t;
  }
  return out;
}

/** The per-driver table and its target lines. */
export function driverReport(results: DriverResult[], f1: (x: number | undefined) => string): string {
  const mb = (kb: number | undefined) => (kb === undefined || Number.isNaN(kb) ? '–' : (kb / 1024).toFixed(1));
  const cols = results.filter((r) => r.startWarm || r.memory);
  type Row = [string, (r: DriverResult) => string];
  const rows: Row[] = [
    ['session start from warm pool p50 ms', (r) => f1(r.startWarm?.connectMs.p50)],
    ['  p99 ms', (r) => f1(r.startWarm?.connectMs.p99)],
    ['  first tool call after it p50 ms', (r) => f1(r.startWarm?.firstCallMs.p50)],
    ['session start cold p50 ms', (r) => f1(r.startCold?.connectMs.p50)],
    ['  p99 ms', (r) => f1(r.startCold?.connectMs.p99)],
    [`tool call (${TOOL.name}) p50 ms`, (r) => f1(r.toolCall?.latencyMs.p50)],
    ['  p99 ms', (r) => f1(r.toolCall?.latencyMs.p99)],
    ['  CPU ms/call: berth + server', (r) => (r.toolCall ? f1(r.toolCall.cpuMsPerCall.gateway + r.toolCall.cpuMsPerCall.servers) : '–')],
    ['  cores busy / of it not ours', (r) => (r.toolCall ? `${f1(r.toolCall.coresBusy)} / ${f1(r.toolCall.coresOther)}` : '–')],
    ['idle session PSS MB (all its processes)', (r) => mb(r.memory?.pssKb)],
    ['  of it the server', (r) => mb(r.memory?.serverPssKb)],
    [
      '  of it sandbox helpers',
      (r) => (r.memory ? `${mb(r.memory.helperPssKb)}${r.memory.helpers.length ? ` (${r.memory.helpers.join(', ')})` : ''}` : '–'),
    ],
    ['  RSS MB', (r) => mb(r.memory?.rssKb)],
    ['  page tables MB (not in PSS)', (r) => mb(r.memory?.pageTablesKb)],
    ['  processes per session', (r) => f1(r.memory?.processesPerSession)],
    ['  berth RSS growth per session MB', (r) => mb(r.memory?.berthKbPerSession)],
    ['  kernel memory per session MB (machine Δ)', (r) => mb(r.memory?.kernelKbPerSession)],
    ['idle sessions measured: open / answering', (r) => (r.memory ? `${r.memory.opened}/${r.memory.asked} / ${r.memory.answered}` : '–')],
    ['  time to open them s', (r) => f1(r.memory?.openS)],
    ['fit in this machine, extrapolated', (r) => (r.capacity ? `~${r.capacity.fitHereExtrapolated}` : '–')],
    ['fit in 24 GiB, extrapolated', (r) => (r.capacity ? `~${r.capacity.fit24GiBExtrapolated}` : '–')],
    [
      '  threads / berth fds per session',
      (r) => (r.memory ? `${f1(r.memory.threadsPerSession)} / ${f1(r.memory.berthFdsPerSession)}` : '–'),
    ],
    ['  fit by pid_max / by berth fd limit', (r) => (r.capacity ? `~${r.capacity.fitByPids} / ~${r.capacity.fitByFds}` : '–')],
  ];
  const cells: string[][] = [['demo server, per driver', ...cols.map((r) => r.label)]];
  for (const [name, get] of rows) cells.push([name, ...cols.map(get)]);
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  let s = [line(cells[0]!), widths.map((x) => '-'.repeat(x)).join('  '), ...cells.slice(1).map(line)].join('\n') + '\n';
  const limited = cols.filter((r) => r.flags.length);
  for (const r of limited) s += `${r.label}: ${r.flags.join(' ')}\n`;
  s += `Per session: means over the measured idle sessions. Kernel memory: growth of unreclaimable slab + kernel stacks +\n`;
  s += `page tables over the whole machine / sessions (noisy if other processes are busy). "Extrapolated": measured sessions\n`;
  s += `+ MemAvailable left / (PSS + the larger of page tables and kernel memory + berth's growth, per session); "24 GiB":\n`;
  s += `the same with MemAvailable shifted to a 24 GiB machine.\n\n`;
  const targets = driverTargets(results);
  for (const r of results) {
    if (r.skipped) {
      s += `driver ${r.label}: skipped: ${r.skipped}\n`;
      continue;
    }
    const t = targets[r.id];
    if (t) {
      const ok = (b: boolean | undefined) => (b ? 'met   ' : 'MISSED');
      s += `target ${r.label.padEnd(17)} warm start p50 ≤ 15 ms: ${ok(t.warmStartP50AtMost15ms)} (${f1(r.startWarm?.connectMs.p50)} ms)`;
      if (t.helperPssAtMost5MiB !== undefined)
        s += `   helpers ≤ 5 MiB/session: ${ok(t.helperPssAtMost5MiB)} (${mb(r.memory?.helperPssKb)} MiB)`;
      if (t.atLeast500On24GiB !== undefined)
        s += `   ≥ 500 idle sessions on 24 GiB: ${ok(t.atLeast500On24GiB)} (~${r.capacity?.fit24GiBExtrapolated ?? '–'}, extrapolated from ${r.capacity?.measured ?? 0})`;
      s += '\n';
    }
    if (r.startWarm?.unsettled)
      s += `warning: driver ${r.label}: ${r.startWarm.unsettled} warm samples taken before the berths went quiet\n`;
    if (r.toolCall?.errors) s += `warning: driver ${r.label}: ${r.toolCall.errors} failed tool calls\n`;
    if (r.failed) s += `FAILED driver ${r.label}: ${r.failed}\n`;
  }
  return s;
}
