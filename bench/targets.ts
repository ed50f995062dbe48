// The systems under test, each a separate OS process started by the bench:
//   direct  - the probe server serving Streamable HTTP itself (the SDK's StreamableHTTPServerTransport), no gateway
//   berth   - `berth run` (the built CLI) hosting the probe server over stdio or http, stateful or stateless, or
//             `berth serve` of a config file (options `berth run` has no flag for, such as warmPool {min, max})
//   peers   - the gateways users would otherwise pick, hosting the same probe over stdio (pinned devDependencies):
//             supergateway 4.0.0 --stateful (one server process per session) and mcp-proxy 6.7.19 (one for all)
import { listeningUrl } from '../test/helpers/berth.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../src/util/free-port.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { alive, childrenOf, cpuMs, descendantsOf, processTable, startTime } from './procfs.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * The probe server, precompiled so server start-up is what a deployment sees (no tsx). Its own files are bundled (it
 * shares serve-fixture.ts with the other fixtures); packages stay external, so it loads the SDK from node_modules
 * exactly as the .ts source does.
 */
export function compileProbe(): string {
  return compileFixture('probe-server');
}

/** A server of test/fixtures (NAME.ts) bundled to .bench/NAME.mjs: run by node alone, no tsx at start-up. */
export function compileFixture(name: string): string {
  const out = join(ROOT, '.bench', `${name}.mjs`);
  mkdirSync(join(ROOT, '.bench'), { recursive: true });
  buildSync({
    entryPoints: [join(ROOT, `test/fixtures/${name}.ts`)],
    outfile: out,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    bundle: true,
    packages: 'external',
    logLevel: 'warning',
  });
  return out;
}

export interface Target {
  kind: 'direct' | 'stateful' | 'stateless' | 'peer';
  /** The process clients talk to: berth, or the direct server. */
  pid: number;
  url: string;
  /** One pid per server sandbox: berth's direct children, or the direct server itself. */
  sandboxes(): number[];
  /** Every process that runs server code or its sandbox: berth's descendants, or the direct server itself. */
  serverPids(): number[];
  /** The gateway process (berth), or undefined for direct. */
  gatewayPid: number | undefined;
  /** Set once the target process has exited (it should not, before stop()). */
  exitInfo(): string | undefined;
  /** The sandbox driver berth chose (from its log), if it said. */
  isolation(): string | undefined;
  /** Milliseconds from spawn until the endpoint answered. */
  startedInMs: number;
  stop(): Promise<void>;
  stderrTail(): string;
}

/** How long a target may take to answer after its spawn. */
const START_TIMEOUT_MS = 60_000;

function exitWatch(proc: ChildProcess): () => string | undefined {
  let info: string | undefined;
  proc.once('exit', (code, signal) => (info = signal ? `killed by ${signal}` : `exit code ${code}`));
  return () => info;
}

function tail(proc: ChildProcess, onText?: (s: string) => void): () => string {
  let buf = '';
  proc.stderr?.on('data', (d: Buffer) => {
    buf += d.toString();
    onText?.(buf);
    if (buf.length > 64_000) buf = buf.slice(-32_000);
  });
  return () => buf.slice(-4000);
}

/**
 * Every server process a target was seen to hold (pid -> start time), so none outlives the bench even when berth
 * itself dies: berth starts servers in their own process groups, and a crashed berth leaves them running.
 */
type Seen = Map<number, number | undefined>;
function remember(seen: Seen, pids: number[]): void {
  for (const p of pids) if (!seen.has(p)) seen.set(p, startTime(p));
}

async function stopProc(proc: ChildProcess, pid: number, seen: Seen = new Map(), watch?: NodeJS.Timeout): Promise<void> {
  clearInterval(watch);
  remember(seen, descendantsOf(pid));
  if (proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
  // berth ends its servers on SIGTERM; reap any that it did not (only pids we saw below it).
  for (const [c, started] of [...seen]) {
    if (alive(c) && startTime(c) === started) {
      try {
        process.kill(c, 'SIGKILL');
      } catch {
        // gone
      }
    }
    seen.delete(c);
  }
}

async function waitHttp(url: string, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`server exited with code ${proc.exitCode}`);
    try {
      const r = await fetch(url, { method: 'GET', headers: { accept: 'text/event-stream' } });
      await r.body?.cancel();
      return;
    } catch {
      if (performance.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

export async function startDirect(probe: string): Promise<Target> {
  const port = await freePort();
  const t0 = performance.now();
  const cwd = scratchDir('direct');
  const proc = spawn(process.execPath, [probe, '--http'], {
    cwd,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true, // its own session, as a service runs (see startBerth)
  });
  const stderrTail = tail(proc);
  const exitInfo = exitWatch(proc);
  const url = `http://127.0.0.1:${port}/mcp`;
  // A loaded machine (other jobs on 2 cores) can take tens of seconds; one that never answers is stopped, not left.
  await waitHttp(url, proc, START_TIMEOUT_MS).catch(async (e: unknown) => {
    await stopProc(proc, proc.pid!).finally(() => rmSync(cwd, { recursive: true, force: true }));
    throw e;
  });
  const startedInMs = performance.now() - t0;
  return {
    kind: 'direct',
    pid: proc.pid!,
    url,
    gatewayPid: undefined,
    sandboxes: () => [proc.pid!],
    serverPids: () => [proc.pid!],
    startedInMs,
    exitInfo,
    isolation: () => undefined,
    stop: () => stopProc(proc, proc.pid!).finally(() => rmSync(cwd, { recursive: true, force: true })),
    stderrTail,
  };
}

/** A directory of its own for a server that shares one between sessions (the probe's state_set writes there). */
function scratchDir(what: string): string {
  return mkdtempSync(join(tmpdir(), `berth-bench-${what}-`));
}

/** Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6), hex as the kernel writes them. */
function listenersOn(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (state === '0A' && local?.endsWith(`:${hexPort}`)) out.push(local.slice(0, local.lastIndexOf(':')));
    }
  }
  return out;
}
const LOOPBACK = new Set(['0100007F', '00000000000000000000000001000000']); // 127.0.0.1, ::1

/**
 * A gateway process as a target (berth, a peer, the floor): the server processes it starts are remembered as they
 * appear, so stop() reaps every one even when the gateway itself dies first; `cleanup` runs after the stop.
 */
function gatewayTarget(
  proc: ChildProcess,
  o: {
    kind?: Target['kind'];
    /** The isolation it gives its servers, as far as known when asked. */
    isolation?: () => string | undefined;
    cleanup?: () => void;
    /** Sees its stderr so far, each time more comes. */
    onStderr?: (text: string) => void;
    /** When the start began (default: now, just after the spawn). */
    t0?: number;
  } = {},
) {
  const pid = proc.pid!;
  const t0 = o.t0 ?? performance.now();
  const stderrTail = tail(proc, o.onStderr);
  const exitInfo = exitWatch(proc);
  const seen: Seen = new Map();
  const watch = setInterval(() => remember(seen, descendantsOf(pid)), 250);
  watch.unref();
  const stop = () => stopProc(proc, pid, seen, watch).finally(() => o.cleanup?.());
  /** The target, once `url` answers. */
  const at = (url: string): Target => ({
    kind: o.kind ?? 'peer',
    pid,
    url,
    gatewayPid: pid,
    sandboxes: () => childrenOf(pid),
    serverPids: () => {
      const d = descendantsOf(pid);
      remember(seen, d);
      return d;
    },
    startedInMs: performance.now() - t0,
    exitInfo,
    isolation: o.isolation ?? (() => undefined),
    stop,
    stderrTail,
  });
  return { stop, stderrTail, at };
}

export type PeerKind = 'supergateway' | 'mcp-proxy';

/**
 * A peer gateway hosting the probe over stdio, on loopback only: mcp-proxy is told --host 127.0.0.1; supergateway has
 * no host option, so bench/loopback-only.mjs makes its listen() bind 127.0.0.1. Refused if it listens anywhere else.
 */
export async function startPeer(kind: PeerKind, probe: string): Promise<Target> {
  const port = await freePort();
  const cwd = scratchDir(kind);
  const bin = (p: string) => join(ROOT, 'node_modules', p);
  const argv =
    kind === 'supergateway'
      ? [
          '--import',
          join(ROOT, 'bench/loopback-only.mjs'),
          bin('supergateway/dist/index.js'),
          '--stdio',
          `${process.execPath} ${probe}`,
          '--outputTransport',
          'streamableHttp',
          '--stateful',
          '--port',
          String(port),
          '--logLevel',
          'none',
        ]
      : [
          bin('mcp-proxy/dist/bin/mcp-proxy.mjs'),
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--server',
          'stream',
          '--',
          process.execPath,
          probe,
        ];
  const proc = spawn(process.execPath, argv, { cwd, env: process.env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const g = gatewayTarget(proc, { cleanup: () => rmSync(cwd, { recursive: true, force: true }) });
  const url = `http://127.0.0.1:${port}/mcp`;
  try {
    await waitHttp(url, proc, START_TIMEOUT_MS);
    const wide = listenersOn(port).filter((a) => !LOOPBACK.has(a));
    if (wide.length) throw new Error(`${kind} listens on a non-loopback address (${wide.join(', ')}): refusing to measure it`);
  } catch (e) {
    await g.stop();
    throw e;
  }
  return g.at(url);
}

/**
 * bench/floor-relay.mjs hosting the probe: the least a Node.js process does to relay Streamable HTTP to one stdio
 * server per session (`relay`), or to answer over node:http at all (`http`, no child). Its sessions' children start at
 * initialize, so there is no pool. A yardstick, never a gateway: what any relay with a server per session is bounded by.
 */
export async function startFloor(probe: string, kind: 'relay' | 'http', nodeArgs: string[] = []): Promise<Target> {
  const proc = spawn(
    process.execPath,
    [...nodeArgs, join(ROOT, 'bench/floor-relay.mjs'), ...(kind === 'http' ? ['--no-child'] : []), '--', process.execPath, probe],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const g = gatewayTarget(proc, { isolation: () => 'none' });
  const url = await listeningUrl(proc, { what: 'floor', timeoutMs: START_TIMEOUT_MS, context: g.stderrTail }).catch(async (e: unknown) => {
    await g.stop();
    throw e;
  });
  return g.at(url);
}

export interface BerthOptions {
  /** The berth launcher (default bin/berth.js): lets one bench compare builds. */
  bin?: string;
  warmPool: number;
  /** --isolation (default: berth's own default, auto). */
  isolation?: string;
  stateless?: boolean;
  upstream?: 'stdio' | 'http';
  /** More `berth run` flags (e.g. --network none --memory 256m). */
  flags?: string[];
  /** More environment for berth (e.g. BERTH_MICROVM_BUNDLE=0). */
  env?: Record<string, string>;
  /** Flags for berth's own node (e.g. --cpu-prof), before the launcher. */
  nodeArgs?: string[];
  /**
   * `berth serve` of one runtime with this config merged over what the options above say (the probe over stdio,
   * port 0): for settings `berth run` has no flag for. The runtime is served at /runtimes/default/mcp.
   */
  runtimeConfig?: Record<string, unknown>;
}

/**
 * `berth run` hosting `probe` (the compiled probe server), or, with probe `null`, no command at all: berth then
 * hosts its bundled demo server (`node dist/demo/server.js`).
 */
let configs = 0;

export async function startBerth(probe: string | null, o: BerthOptions): Promise<Target> {
  const flags = ['--port', '0', '--warm-pool', String(o.warmPool), ...(o.flags ?? [])];
  if (o.stateless) flags.push('--stateless');
  if (o.isolation) flags.push('--isolation', o.isolation);
  if (o.upstream === 'http') flags.push('--upstream', 'http');
  const serverArgv = probe === null ? [] : ['--', process.execPath, probe, ...(o.upstream === 'http' ? ['--http'] : [])];
  let args = ['run', ...flags, ...serverArgv];
  let configFile: string | undefined;
  if (o.runtimeConfig) {
    mkdirSync(join(ROOT, '.bench'), { recursive: true });
    const file = join(ROOT, '.bench', `berth-${process.pid}-${++configs}.json.yaml`);
    const runtime = {
      command: serverArgv.slice(1),
      warmPool: o.warmPool,
      ...(o.isolation ? { isolation: o.isolation } : {}),
      ...o.runtimeConfig,
    };
    writeFileSync(file, JSON.stringify({ server: { port: 0 }, runtimes: { default: runtime } }));
    configFile = file;
    args = ['serve', '--config', file];
  }
  const t0 = performance.now();
  const proc = spawn(process.execPath, [...(o.nodeArgs ?? []), o.bin ?? 'bin/berth.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own session, as a service manager would start it: where the kernel groups CPU time by session
    // (sched_autogroup), a target in the bench's session would share one CPU share with the bench's clients.
    detached: true,
  });
  let isolation: string | undefined = o.isolation && o.isolation !== 'auto' ? o.isolation : undefined;
  const g = gatewayTarget(proc, {
    kind: o.stateless ? 'stateless' : 'stateful',
    isolation: () => isolation,
    cleanup: () => configFile && rmSync(configFile, { force: true }),
    // auto logs its choice; an explicit kind is what was asked for
    onStderr: (text) => void (isolation ??= /isolation auto: using (\w+)/.exec(text)?.[1]),
    t0,
  });
  const url = await listeningUrl(proc, { timeoutMs: START_TIMEOUT_MS, context: g.stderrTail }).catch(async (e: unknown) => {
    await g.stop(); // a berth that did not say it listens must not outlive the bench, nor its servers
    throw e;
  });
  return g.at(url);
}

/**
 * Waits until every target holds at least its expected number of server processes and all their process trees
 * have gone quiet (no CPU time accrued over `quietMs`): a starting node process burns CPU until it is up and
 * answering, so quiet means the warm pool is full and nothing competes with the next measurement.
 */
export async function settle(targets: Array<{ t: Target; servers: number }>, timeoutMs = 15_000, quietMs = 120): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let base = -Infinity;
  let quietSince = 0;
  while (performance.now() < deadline) {
    let short = false;
    let cpu = 0;
    for (const { t, servers } of targets) {
      const gone = t.exitInfo();
      if (gone) throw new Error(`the target process exited (${gone})`);
      const table = processTable();
      const pids = t.gatewayPid ? descendantsOf(t.pid, table) : [];
      if ((t.gatewayPid ? childrenOf(t.pid, table).length : 1) < servers) short = true;
      cpu += [t.pid, ...pids].reduce((a, p) => a + cpuMs(p), 0);
    }
    const now = performance.now();
    // One 10 ms tick of noise (timers, GC) still counts as quiet.
    if (short || cpu - base > 10) {
      base = cpu;
      quietSince = now;
    } else if (now - quietSince >= quietMs) {
      return true;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
