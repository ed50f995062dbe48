// Starting one MCP server in a sandbox, with its private working directory, and knowing when it is warm.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/schema.js';
import type { RetentionBudget } from '../relay/stream-log.js';
import type { Upstream } from '../relay/upstream.js';
import { CLOSE_WITHIN, settledWithin } from '../relay/http-channel.js';
import type { StartRecord } from './start-record.js';
import type { Connector } from './connector.js';
import type { ServerSource } from './source.js';
import { ServerNoise } from './noise.js';
import type { Sandbox, SandboxDriver } from '../sandbox/index.js';
import { sessionPids } from '../sandbox/cgroups.js';
import type { PackageInstallError } from '../sandbox/package-cache.js';
import { parseAllow, type AllowRule } from '../sandbox/network.js';
import type { Metrics } from '../observe/metrics.js';

/** At least 128 random bits, URL-safe and within the visible-ASCII range the spec requires. */
export function newSessionId(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * A session id short enough for a log line, still telling sessions apart: its first 8 characters, or for a cluster
 * id (`c1.<node>.<inc>.<rand>.<mac>`) the node and the start of its random part.
 */
export function logId(id: string): string {
  const parts = id.split('.');
  return parts[0] === 'c1' && parts.length === 5 ? `${parts[1]}:${parts[3]!.slice(0, 8)}` : id.slice(0, 8);
}

export interface LaunchContext {
  runtimeName: string;
  config: RuntimeConfig;
  driver: SandboxDriver;
  sessionRoot: string | undefined;
  baseDir: string;
  log: Logger;
  metrics?: Metrics;
  /** Host paths no sandbox may see (berth's config file). */
  hide?: string[];
  /** Mints session ids (cluster mode: ids naming this node); default newSessionId. */
  newId?: () => string;
  /** Cluster mode: requestState tokens signed with the shared key and naming this node (bridged calls). */
  requestState?: { key: Buffer; owner: string };
  /** The runtime's record of its starts (/healthz, /readyz); closing it gives up the starts under way. */
  startRecord?: StartRecord;
  /** How berth reaches a started server (stdio or HTTP), chosen by the composition root. */
  connector: Connector;
  /** What every session's retained events may take together (server.retainBudget). */
  retention?: RetentionBudget;
  /** What the server is (a command on the host, or an image), chosen by the composition root. */
  source: ServerSource;
}

export type Launched = {
  id: string;
  workDir: string;
  sandbox: Sandbox;
  startedAt: number;
  /** Resolves when the server is warm; rejects when it cannot start. */
  ready: Promise<void>;
  isReady: boolean;
  /** How berth reaches it (the runtime's Connector made it); nothing else asks whether it is stdio or HTTP. */
  upstream: Upstream;
};

/** allowNet parsed (host names resolved) once per list, not per session. */
const allowCache = new Map<string, Promise<AllowRule[]>>();
function allowRules(entries: readonly string[]): Promise<AllowRule[]> {
  const key = JSON.stringify(entries);
  let p = allowCache.get(key);
  if (!p) allowCache.set(key, (p = parseAllow(entries)));
  return p;
}

export async function launch(ctx: LaunchContext): Promise<Launched> {
  const { config, log } = ctx;
  const id = ctx.newId?.() ?? newSessionId();
  const workDir = await mkdtemp(join(ctx.sessionRoot ?? tmpdir(), `berth-${ctx.runtimeName}-`));
  const port = await ctx.connector.port();
  let sandbox: Sandbox;
  try {
    const prepared = await ctx.source.prepare({
      runtimeName: ctx.runtimeName,
      config,
      baseDir: ctx.baseDir,
      workDir,
      sessionRoot: ctx.sessionRoot ?? tmpdir(),
      log,
      closed: ctx.startRecord?.closed,
    });
    const { argv, mounts, image } = prepared;
    const env = { ...prepared.env, BERTH_SESSION_ID: id, ...(port !== undefined ? { PORT: String(port) } : {}) };
    const { memory, cpus, pids, ptys, disk } = config.limits;
    const allowNet = await allowRules(config.allowNet);
    sandbox = await ctx.driver.start({
      sessionId: id,
      argv,
      cwd: ctx.baseDir,
      workDir,
      env,
      limits: { memory, cpus, pids: sessionPids(pids), ptys, disk: disk || undefined },
      port,
      network: config.network,
      allowNet,
      mounts,
      image,
      hide: ctx.hide,
      // Until started() (below, once it answers): a start yields the CPU to live sessions when the runtime asks.
      yieldWhileStarting: config.limits.lowerStarts,
      notice: (what) => log.child({ session: logId(id) }).warn(what),
    });
  } catch (e) {
    ctx.startRecord?.failed(e, (e as Partial<PackageInstallError>).stderrTail);
    await rm(workDir, { recursive: true, force: true });
    throw e;
  }
  const slog = log.child({ session: logId(id) });
  const noise = new ServerNoise(
    config.limits,
    slog,
    ctx.metrics && ((stream, n) => ctx.metrics!.outputDropped.inc({ runtime: ctx.runtimeName, stream }, n)),
  );
  const tail: string[] = [];
  noise.follow(sandbox.stderr, tail);
  const startedAt = performance.now();
  const { upstream, warm } = ctx.connector.connect({
    config,
    runtimeName: ctx.runtimeName,
    sandbox,
    port,
    log: slog,
    noise,
    metrics: ctx.metrics,
    retention: ctx.retention,
  });
  const launched: Launched = { id, workDir, sandbox, startedAt, upstream, isReady: false, ready: Promise.resolve() };
  launched.ready = recorded(ctx, warm, sandbox, tail).then(() => {
    sandbox.started();
    launched.isReady = true;
  });
  launched.ready.catch(() => undefined);
  return launched;
}

/** A start as the runtime's StartRecord counts it; given up at once when the runtime closes. */
function recorded(ctx: LaunchContext, ready: Promise<void>, sandbox: Sandbox, stderrTail: string[]): Promise<void> {
  const starts = ctx.startRecord;
  if (!starts) return ready;
  return Promise.race([ready, starts.closed]).then(
    () => starts.succeeded(),
    async (e: unknown) => {
      // A server that died says why on stderr, which may still be in its pipe when the exit is seen: a moment for it.
      if (sandbox.stderr.readable)
        await Promise.race([once(sandbox.stderr, 'close'), new Promise((r) => setTimeout(r, 500).unref())]).catch(() => undefined);
      starts.failed(e, stderrTail);
      throw e;
    },
  );
}

export { withinStartup } from './within-startup.js';

/** A launched server once it is warm; one that cannot get there is disposed, never left running. */
export async function launchReady(ctx: LaunchContext): Promise<Launched> {
  const l = await launch(ctx);
  try {
    await l.ready;
  } catch (e) {
    await dispose(l, 0);
    throw e;
  }
  return l;
}

/**
 * Stops a launched server and removes its working directory. The upstream's goodbye (an HTTP server's DELETE) gets
 * CLOSE_WITHIN at most: a server that never answers it must not keep its sandbox running past its session.
 */
export async function dispose(l: Launched, graceMs: number): Promise<void> {
  await settledWithin(l.upstream.close(), CLOSE_WITHIN);
  await l.sandbox.stop(graceMs);
  await rm(l.workDir, { recursive: true, force: true }).catch(() => undefined);
}
