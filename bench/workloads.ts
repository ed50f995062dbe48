// The client load, identical for every target: the official SDK client over Streamable HTTP.
// Each function measures one target once; run.ts interleaves targets in rounds and pools the samples, so
// background load on a shared machine hits every target alike.
import { availableParallelism } from 'node:os';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { childrenOf, cpuMs, descendantsOf, envOf, processTable, pssKb, rssKb, systemCpu } from './procfs.js';
import type { Target } from './targets.js';

export interface Dist {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

export function dist(samples: number[]): Dist {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]! : NaN);
  return {
    n: s.length,
    p50: r3(q(0.5)),
    p90: r3(q(0.9)),
    p99: r3(q(0.99)),
    mean: r3(s.reduce((a, b) => a + b, 0) / (s.length || 1)),
    max: r3(s[s.length - 1] ?? NaN),
  };
}

/** Every tools/call the bench made to each endpoint (url → calls), warm-ups and probes included: the whole run's count. */
export const callsMade = new Map<string, number>();
const counted = (url: string) => callsMade.set(url, (callsMade.get(url) ?? 0) + 1);

export interface Conn {
  url?: string;
  /** The server process that answered whoami (the probe's INSTANCE, unique per process). */
  instance?: string;
  client: Client;
  transport: StreamableHTTPClientTransport;
  /** BERTH_SESSION_ID as the server that answered whoami sees it (stateful berth: identifies its sandbox). */
  sessionId?: string;
  /** Its working directory, where the tool reports it. */
  cwd?: string;
}

/**
 * A client that answers every elicitation at once, as an automated host would. `onPost` sees the start of
 * every POST the transport makes (connect() makes two: initialize, then notifications/initialized).
 */
export function newClient(url: string, onPost?: () => void): Conn {
  const client = new Client({ name: 'berth-bench', version: '1.0.0' }, { capabilities: { elicitation: {} } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { answer: 'yes' } }));
  const f: typeof fetch = (input, init) => {
    if (init?.method === 'POST') onPost?.();
    return fetch(input, init);
  };
  return { url, client, transport: new StreamableHTTPClientTransport(new URL(url), { fetch: f }) };
}

/** Generous: a session on a microVM under emulation waits for a VM to boot when the pool is empty. */
const CONNECT = { timeout: 300_000 };

export async function connect(url: string): Promise<Conn> {
  const c = newClient(url);
  await c.client.connect(c.transport, CONNECT);
  return c;
}

export async function disconnect(c: Conn): Promise<void> {
  await c.transport.terminateSession().catch(() => undefined);
  await c.client.close().catch(() => undefined);
}

const ECHO = { name: 'echo', arguments: { text: 'hello from the bench' } };

// ---- session start --------------------------------------------------------------------------------------------

export interface ConnectSample {
  /** client.connect(): initialize + notifications/initialized. */
  connect: number;
  /** Of which: the initialize request (until the initialized notification is sent). */
  initialize: number;
  /** The first tools/call on the new session (a fresh server process runs it with cold code). */
  firstCall: number;
}

/** One session: time connect() and its first echo call, then end the session. */
export async function sessionSample(t: Target, tool: { name: string; arguments: Record<string, unknown> } = ECHO): Promise<ConnectSample> {
  let posts = 0;
  let initializedAt = NaN;
  const c = newClient(t.url, () => {
    if (++posts === 2) initializedAt = performance.now();
  });
  const t0 = performance.now();
  await c.client.connect(c.transport, CONNECT);
  const t1 = performance.now();
  await c.client.callTool(tool);
  counted(t.url);
  const t2 = performance.now();
  await disconnect(c);
  return { connect: t1 - t0, initialize: initializedAt - t0, firstCall: t2 - t1 };
}

// ---- load -----------------------------------------------------------------------------------------------------

/** Opens n sessions and learns which server process serves each. */
export async function openSessions(t: Target, n: number): Promise<Conn[]> {
  const conns: Conn[] = [];
  for (let i = 0; i < n; i++) conns.push(await connect(t.url));
  for (const c of conns) {
    const r = (await c.client.callTool({ name: 'whoami', arguments: {} })) as { content: Array<{ text: string }> };
    counted(t.url);
    const who = JSON.parse(r.content[0]!.text) as { session?: string; instance?: string };
    c.sessionId = who.session ?? undefined;
    c.instance = who.instance;
  }
  return conns;
}

export interface LoadRound {
  windowMs: number;
  calls: number;
  errors: number;
  /** Latencies (ms) of the calls that started and finished inside the window. */
  latencies: number[];
  cpuMs: { client: number; gateway: number; servers: number };
  /** Machine-wide busy CPU during the window, in core-milliseconds. */
  machineBusyMs: number;
}

/**
 * Every connection calls `tool` back to back. The first `warmupMs` are discarded; calls that start and
 * finish inside the next `measureMs` are counted.
 */
export async function loadRound(
  t: Target,
  conns: Conn[],
  warmupMs: number,
  measureMs: number,
  tool: { name: string; arguments: Record<string, unknown> } = ECHO,
): Promise<LoadRound> {
  const cpuPids = t.serverPids(); // stateful: sessions' servers and idle warm ones (which cost ~0)
  const snap = () => ({
    client: process.cpuUsage(),
    gateway: t.gatewayPid ? cpuMs(t.gatewayPid) : 0,
    servers: cpuPids.reduce((a, p) => a + cpuMs(p), 0),
    sys: systemCpu(),
    at: performance.now(),
  });
  type Snap = ReturnType<typeof snap>;
  const starts: number[] = [];
  const lat: number[] = [];
  let errors = 0;
  let stop = false;
  let s0: Snap | undefined;
  let s1: Snap | undefined;
  const timers = [
    setTimeout(() => (s0 = snap()), warmupMs),
    setTimeout(() => {
      s1 = snap();
      stop = true;
    }, warmupMs + measureMs),
  ];
  await Promise.all(
    conns.map(async (c) => {
      while (!stop) {
        const t0 = performance.now();
        try {
          const r = await c.client.callTool(tool);
          counted(t.url);
          if ((r as { isError?: boolean }).isError) errors++;
        } catch {
          errors++;
          await new Promise((r) => setTimeout(r, 10)); // a dead target must not spin
        }
        starts.push(t0);
        lat.push(performance.now() - t0);
      }
    }),
  );
  timers.forEach(clearTimeout);
  const a = s0!;
  const b = s1!;
  const latencies: number[] = [];
  for (let i = 0; i < starts.length; i++) if (starts[i]! >= a.at && starts[i]! + lat[i]! <= b.at) latencies.push(lat[i]!);
  const ticks = b.sys.total - a.sys.total;
  const windowMs = b.at - a.at;
  return {
    windowMs,
    calls: latencies.length,
    errors,
    latencies,
    cpuMs: {
      client: (b.client.user - a.client.user + b.client.system - a.client.system) / 1000,
      gateway: b.gateway - a.gateway,
      servers: b.servers - a.servers,
    },
    machineBusyMs: ((b.sys.busy - a.sys.busy) / Math.max(1, ticks)) * availableParallelism() * windowMs,
  };
}

export interface LoadResult {
  concurrency: number;
  rounds: number;
  windowS: number;
  calls: number;
  callsPerS: number;
  /** calls/s of each round: the spread shows how steady the machine was. */
  callsPerSByRound: number[];
  errors: number;
  latencyMs: Dist;
  /** CPU milliseconds per completed call, by process role. */
  cpuMsPerCall: { client: number; gateway: number; servers: number; total: number };
  /** Machine-wide busy cores during the windows, and the part not spent by the bench's own processes. */
  coresBusy: number;
  coresOther: number;
}

export function summarize(concurrency: number, rounds: LoadRound[]): LoadResult {
  const sum = (f: (r: LoadRound) => number) => rounds.reduce((a, r) => a + f(r), 0);
  const windowMs = sum((r) => r.windowMs);
  const calls = sum((r) => r.calls);
  const client = sum((r) => r.cpuMs.client);
  const gateway = sum((r) => r.cpuMs.gateway);
  const servers = sum((r) => r.cpuMs.servers);
  const per = (x: number) => r3(x / Math.max(1, calls));
  const busy = sum((r) => r.machineBusyMs) / windowMs;
  return {
    concurrency,
    rounds: rounds.length,
    windowS: r3(windowMs / 1000),
    calls,
    callsPerS: Math.round((calls / windowMs) * 1000),
    callsPerSByRound: rounds.map((r) => Math.round((r.calls / r.windowMs) * 1000)),
    errors: sum((r) => r.errors),
    latencyMs: dist(rounds.flatMap((r) => r.latencies)),
    cpuMsPerCall: { client: per(client), gateway: per(gateway), servers: per(servers), total: per(client + gateway + servers) },
    coresBusy: Math.round(busy * 100) / 100,
    coresOther: Math.round(Math.max(0, busy - (client + gateway + servers) / windowMs) * 100) / 100,
  };
}

// ---- memory ---------------------------------------------------------------------------------------------------

export interface MemoryResult {
  /** Gateway (berth) RSS, KiB. */
  gatewayRssKb?: number;
  /**
   * Mean RSS / PSS of one session's sandbox, KiB: the server process plus any sandbox helper processes above it
   * (direct: the one shared process). PSS splits shared pages (node binary, libraries) among the processes.
   */
  serverRssKb: number;
  serverPssKb?: number;
  /** Sandboxes measured, and processes in each. */
  serverProcesses: number;
  processesPerSandbox: number;
}

/** Memory of the sandboxes serving `sessionIds` (stateful berth), of every sandbox (stateless), or of the direct server. */
export function memory(t: Target, sessionIds: Array<string | undefined>): MemoryResult {
  let groups: number[][];
  if (!t.gatewayPid) groups = [[t.pid]];
  else {
    const table = processTable();
    groups = childrenOf(t.pid, table).map((root) => [root, ...descendantsOf(root, table)]);
    const wanted = new Set(sessionIds.filter((x): x is string => !!x));
    if (t.kind === 'stateful' && wanted.size) groups = groups.filter((g) => g.some((p) => wanted.has(envOf(p, 'BERTH_SESSION_ID') ?? '')));
  }
  const mean = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));
  const rss = groups.map((g) => g.reduce((a, p) => a + rssKb(p), 0));
  const pss = groups.map((g) => g.map(pssKb));
  return {
    gatewayRssKb: t.gatewayPid ? rssKb(t.gatewayPid) : undefined,
    serverRssKb: mean(rss),
    serverPssKb: pss.every((g) => g.every((x) => x !== undefined))
      ? mean(pss.map((g) => (g as number[]).reduce((a, b) => a + b, 0)))
      : undefined,
    serverProcesses: groups.length,
    processesPerSandbox: Math.round((groups.reduce((a, g) => a + g.length, 0) / Math.max(1, groups.length)) * 10) / 10,
  };
}

// ---- isolation ------------------------------------------------------------------------------------------------

export interface IsolationResult {
  /** A value one session stored (the probe's state_set, a file in the server's working directory) was read by the next. */
  stateSeenByNextSession: boolean;
  /** What the next session read. */
  nextSessionRead: string;
}

/**
 * Shown, not asserted: session A stores a fresh value with state_set, then a new session B asks state_get. A gateway
 * that runs one server for all sessions hands B what A wrote; one server (and directory) per session reads (none).
 */
export async function isolationProbe(t: Target): Promise<IsolationResult> {
  const value = `from-session-a-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const a = await connect(t.url);
  const b = await connect(t.url);
  try {
    await a.client.callTool({ name: 'state_set', arguments: { value } });
    const r = (await b.client.callTool({ name: 'state_get', arguments: {} })) as { content: Array<{ text: string }> };
    counted(t.url);
    counted(t.url);
    const read = r.content[0]?.text ?? '';
    return { stateSeenByNextSession: read === value, nextSessionRead: read === value ? 'the value session A set' : read };
  } finally {
    await disconnect(a);
    await disconnect(b);
  }
}

// ---- elicitation ----------------------------------------------------------------------------------------------

/** Sequential `ask` calls on one session: the server elicits, the client's handler answers at once. */
export async function elicitRound(c: Conn, calls: number): Promise<{ latencies: number[]; errors: number; firstError?: string }> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    try {
      const r = (await c.client.callTool({ name: 'ask', arguments: { question: 'proceed?' } })) as {
        content: Array<{ text: string }>;
        isError?: boolean;
      };
      if (c.url) counted(c.url);
      if (r.isError || !r.content[0]?.text.includes('"accept"')) {
        errors++;
        firstError ??= r.content[0]?.text;
      } else latencies.push(performance.now() - t0);
    } catch (e) {
      errors++;
      firstError ??= (e as Error).message;
    }
  }
  return { latencies, errors, firstError };
}
