// The library entry point: one HTTP listener hosting one or more named runtimes.
//   /mcp                  -> the runtime named "default" (or the only one)
//   /runtimes/NAME/mcp    -> runtime NAME
//   /healthz              -> liveness and counts
//   /readyz               -> ready for new sessions (warm servers waiting, below the caps, not draining)
//   /.well-known/oauth-protected-resource/...  -> RFC 9728 metadata of runtimes with auth
//   /admin/...            -> the admin API (its own token; off unless configured)
//   /metrics              -> Prometheus metrics
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { RUNTIME_SESSION_HEADER } from '../session/runtime-session.js';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseConfig } from '../config/load.js';
import { commandArgv, type BerthConfig, type BerthConfigInput } from '../config/schema.js';
import { createLogger, type Logger } from '../log.js';
import { checkIsolationKind, chooseDriver, networkProblem, warnUnenforceableLimits } from '../sandbox/index.js';
import { neededRoots } from '../session/launch.js';
import { processDriver } from '../sandbox/process.js';
import { commandFiles } from '../sandbox/command-files.js';
import { sandboxCannotRead } from '../sandbox/readable.js';
import { stateRoot, sweepDeadInstances, useStateRoot } from '../sandbox/registry.js';
import { History } from '../observe/history.js';
import { Metrics } from '../observe/metrics.js';
import { adminTokenDigest, handleAdmin } from '../security/admin.js';
import type { ResourceInfo } from '../security/auth.js';
import { METADATA_PREFIX, protectedResourceMetadata, runtimePaths } from '../security/metadata.js';
import type { EndReason, Session } from '../session/session.js';
import { clientErrorAnswer, HttpError, sendError, sendJson, sendRawError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import type { HostedRuntime } from './base.js';
import { StatefulRuntime } from './stateful.js';
import { StatelessRuntime } from './stateless.js';
import { ClusterNode } from '../cluster/node.js';

/** Request line and headers together (Node's default, stated so a --max-http-header-size flag cannot change it). */
const MAX_HEADER_SIZE = 16 * 1024;
/**
 * Header fields per request (Apache's LimitRequestFields). Node keeps only the first maxHeadersCount and drops the
 * rest silently — a Host after them would look missing — so it keeps one more than this, and more is refused (431).
 */
const MAX_HEADERS = 100;

export interface BerthEvents {
  'session:created': [session: Session, runtime: string];
  'session:ended': [session: Session, runtime: string, reason: EndReason, detail: string];
  /** Cluster mode: another process took this node's lease (same nodeId); berth has stopped and cleaned up. */
  'cluster:fenced': [];
}

export interface CreateRuntimeOptions {
  logger?: Logger;
  /** Where relative commands are resolved (default: process.cwd()). */
  baseDir?: string;
  /** The config file berth was started from: hidden from every sandbox that would otherwise see it. */
  configFile?: string;
}

export class Berth extends EventEmitter<BerthEvents> {
  readonly config: BerthConfig;
  readonly runtimes = new Map<string, HostedRuntime>();
  readonly log: Logger;
  private http: Server | undefined;
  private stopping: Promise<void> | undefined;
  /** Sandboxes left by dead berth instances (SIGKILL, crash) that start() cleaned up. */
  sweptSandboxes = 0;
  private adminDigest: Buffer | undefined;
  readonly metrics: Metrics;
  /** Live sessions and request rate over the last hour (the dashboard's chart). */
  readonly history: History;
  private readonly startedAt = Date.now();
  /** Cluster mode (config.cluster): membership, routing and draining; undefined on a single node. */
  readonly cluster: ClusterNode | undefined;

  constructor(config: BerthConfig, options: CreateRuntimeOptions = {}) {
    super();
    this.config = config;
    this.log = options.logger ?? createLogger();
    if (config.server.stateDir) useStateRoot(config.server.stateDir);
    this.metrics = new Metrics({ runtimes: () => this.runtimes.values() });
    this.history = new History({
      read: async () => ({
        sessions: [...this.runtimes.values()].reduce((n, r) => n + r.sessionCount, 0),
        requests: (await this.metrics.requests.get()).values.reduce((n, v) => n + v.value, 0),
      }),
    });
    if (config.cluster) {
      this.cluster = new ClusterNode(config.cluster, this.log, () => this.clusterLoad());
      this.cluster.localLoad = (name) => this.clusterLoad()[name] ?? {};
      // The drain deadline: whatever sessions are left here end (their clients re-initialize elsewhere).
      this.cluster.onDrainDeadline = () => {
        for (const rt of this.runtimes.values()) {
          const protocol = rt instanceof StatefulRuntime ? [...rt.sessions.values()] : [];
          for (const s of [...protocol, ...rt.runtimeSessionList]) void s.end('shutdown', 'drained');
        }
      };
    }
    const hide = secretPaths(options.configFile);
    for (const [name, rc] of Object.entries(config.runtimes)) {
      checkIsolationKind(rc.isolation);
      // The driver is chosen in start(), after probing the host; process is a placeholder until then.
      const opts = {
        name,
        config: rc,
        server: config.server,
        driver: processDriver,
        baseDir: rc.cwd ?? options.baseDir ?? process.cwd(),
        log: this.log,
        resource: this.resourceInfo(name),
        metrics: this.metrics,
        hide,
        cluster: this.cluster,
      };
      const rt: HostedRuntime = rc.mode === 'stateless' ? new StatelessRuntime(opts) : new StatefulRuntime(opts);
      rt.on('session:created', (s) => this.emit('session:created', s, name));
      rt.on('session:ended', (s, reason, detail) => this.emit('session:ended', s, name, reason, detail));
      this.runtimes.set(name, rt);
    }
  }

  /** What this node publishes for placement: per stateful runtime, its sessions, cap and warm servers. */
  private clusterLoad(): Record<string, { sessions: number; max: number; warm: number }> {
    const out: Record<string, { sessions: number; max: number; warm: number }> = {};
    for (const [n, r] of this.runtimes) if (r.config.mode === 'stateful') out[n] = { sessions: r.sessionCount, max: r.config.limits.maxSessions, warm: r.warmServers };
    return out;
  }

  /** The runtime served at /mcp: the one named "default", or the only one. */
  get defaultRuntime(): HostedRuntime | undefined {
    return this.runtimes.get('default') ?? (this.runtimes.size === 1 ? this.runtimes.values().next().value : undefined);
  }

  get url(): string {
    const a = this.http?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error('berth is not listening');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  /** Endpoint URL of a runtime. */
  endpoint(name?: string): string {
    return name && !(this.defaultRuntime?.name === name) ? `${this.url}/runtimes/${name}/mcp` : `${this.url}/mcp`;
  }

  /** The base URL clients use (publicUrl, else the address berth listens on). */
  get publicUrl(): string {
    return (this.config.server.publicUrl ?? this.url).replace(/\/+$/, '');
  }

  private resourceInfo(name: string): ResourceInfo {
    const paths = () => runtimePaths(name, this.defaultRuntime?.name === name);
    return {
      metadataUrl: () => `${this.publicUrl}${METADATA_PREFIX}${paths()[0]}`,
      resourceUrls: () => paths().map((p) => `${this.publicUrl}${p}`),
    };
  }

  /** Refuses an unauthenticated runtime on a non-loopback address unless the operator said so, loudly. */
  private checkExposure(): void {
    const { host, dangerouslyAllowUnauthenticated } = this.config.server;
    const open = [...this.runtimes.values()].filter((r) => r.config.auth.kind === 'none').map((r) => r.name);
    if (open.length === 0 || isLoopback(host)) return;
    if (!dangerouslyAllowUnauthenticated) {
      throw new Error(
        `refusing to listen on ${host} without authentication: runtime(s) ${open.join(', ')} have auth "none", so anyone who can reach the port could open sessions and run the server. Configure auth (api-key or jwt), listen on 127.0.0.1, or pass --dangerously-allow-unauthenticated (server.dangerouslyAllowUnauthenticated).`,
      );
    }
    this.log.warn({ host, runtimes: open }, 'UNAUTHENTICATED runtimes on a non-loopback address (dangerouslyAllowUnauthenticated)');
  }

  async start(): Promise<this> {
    this.checkExposure();
    this.adminDigest = adminTokenDigest(this.config.server.admin);
    this.sweptSandboxes = await sweepDeadInstances(this.log);
    this.metrics.swept.inc(this.sweptSandboxes);
    for (const rt of this.runtimes.values()) {
      const driver = await chooseDriver(rt.config.isolation, rt.baseDir, this.log, this.config.server.sessionRoot);
      const netProblem = networkProblem(driver, rt.config.network, rt.config.upstream === 'http');
      if (netProblem) throw new Error(`runtime "${rt.name}": ${netProblem}`);
      // The command's own files (program, scripts, their package roots) are shown to every sandbox; one that cannot
      // be found, or whose files would expose the host, is refused now rather than at every session's start.
      try {
        for (const m of rt.config.mounts) if (!existsSync(m)) throw new Error(`the mount ${m} does not exist on this host`);
        const argv = commandArgv(rt.config.command);
        const roots = neededRoots(argv, rt.baseDir, rt.config.mounts, this.config.server.sessionRoot ?? tmpdir());
        // What the sandbox uid must read; else the server (or QEMU) fails at every start, saying little.
        const cannotRead = sandboxCannotRead(driver, { dirs: [rt.baseDir, ...rt.config.mounts, ...roots], pass: [this.config.server.sessionRoot ?? tmpdir()], ...commandFiles(argv, rt.baseDir) });
        if (cannotRead) throw new Error(cannotRead);
      } catch (e) {
        throw new Error(`runtime "${rt.name}": ${(e as Error).message}`);
      }
      if (rt.config.network === 'host') this.log.warn({ runtime: rt.name }, "network host: this runtime's servers share the host's network (its loopback, berth's port, private and link-local addresses)");
      rt.useDriver(driver);
      warnUnenforceableLimits(rt.config.limits, rt.name, this.log);
    }
    await Promise.all([...this.runtimes.values()].map((r) => r.start()));
    const server = createServer(this.serverOptions(), (req, res) => void this.route(req, res));
    server.maxHeadersCount = MAX_HEADERS + 1;
    // Whatever Node answers on its own is answered as berth does: a JSON-RPC error body, never an empty or HTML one.
    server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      // A response already under way cannot be replaced (the bytes would corrupt it); a reset peer hears nothing.
      const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
        socket.destroy();
        return;
      }
      sendRawError(socket, clientErrorAnswer(err, MAX_HEADER_SIZE));
    });
    server.on('checkExpectation', (_req, res) => {
      sendError(res, new HttpError(417, ErrorCode.ServerError, 'Expectation Failed: the only Expect value berth honours is 100-continue', { connection: 'close' }));
    });
    // Without a listener Node drops a CONNECT without a word.
    server.on('connect', (req, socket: Duplex) => {
      sendRawError(socket, new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${req.method} (use POST, GET or DELETE)`, { allow: 'GET, POST, DELETE' }));
    });
    this.http = server;
    if (this.adminDigest) this.history.start();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.server.port, this.config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (this.cluster) {
      const c = this.cluster;
      const a = server.address() as AddressInfo;
      if (!c.directory.self.url && (a.address === '0.0.0.0' || a.address === '::')) {
        await this.stop();
        throw new Error('cluster: berth listens on every address, so peers cannot be told where it is; set cluster.advertiseUrl or BERTH_ADVERTISE_URL');
      }
      c.directory.self.url ||= this.url;
      c.directory.on('fenced', () => {
        // Listeners hear of it once berth has stopped: its sandboxes (detached process groups) must not outlive it.
        void this.stop().finally(() => this.emit('cluster:fenced'));
      });
      await c.start();
    }
    return this;
  }

  /**
   * Bounds on slow clients, before any runtime sees the request: the head must arrive within the longest
   * bodyTimeout, the whole request within head + body time (a body nobody reads, after a refusal, included).
   */
  private serverOptions(): ServerOptions {
    const bodyTimeout = Math.max(...[...this.runtimes.values()].map((r) => r.config.limits.bodyTimeout));
    const headersTimeout = Math.max(1000, bodyTimeout);
    return {
      keepAliveTimeout: 30_000,
      headersTimeout,
      // A runtime's own 408 (readBody) comes first; this only cuts off what no handler reads.
      requestTimeout: headersTimeout + bodyTimeout + 1000,
      // How often Node checks those two timeouts (its default, 30 s, would let a slow client stay 30 s longer).
      connectionsCheckingInterval: Math.min(1000, Math.floor(headersTimeout / 2)),
      maxHeaderSize: MAX_HEADER_SIZE,
      // Checked in route(), so the refusal is a JSON-RPC error like every other.
      requireHostHeader: false,
    };
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    if (req.rawHeaders.length / 2 > MAX_HEADERS) {
      sendError(res, new HttpError(431, ErrorCode.ServerError, `Request Header Fields Too Large: more than ${MAX_HEADERS} header fields`, { connection: 'close' }));
      return;
    }
    if (req.httpVersion === '1.1' && req.headers.host === undefined) {
      sendError(res, new HttpError(400, ErrorCode.ServerError, 'Bad Request: an HTTP/1.1 request must carry a Host header', { connection: 'close' }));
      return;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/healthz') {
      const runtimes = Object.fromEntries([...this.runtimes].map(([n, r]) => [n, { sessions: r.sessionCount, warm: r.warmServers, mode: r.config.mode, isolation: r.driverName, starts: r.startRecord.health }]));
      const cluster = this.cluster && { node: this.cluster.nodeId, redis: this.cluster.directory.redisOk ? 'ok' : 'unreachable', lease: this.cluster.directory.leaseHeld ? 'held' : 'not held', draining: this.cluster.draining };
      // Alive either way (a restart would not mend a server that cannot start), but not "ok": the details say why.
      const degraded = [...this.runtimes.values()].some((r) => r.startRecord.failing);
      sendJson(res, this.stopping ? 503 : 200, { status: this.stopping ? 'draining' : degraded ? 'degraded' : 'ok', runtimes, ...(cluster ? { cluster } : {}) });
      return;
    }
    if (path === '/readyz') {
      // Ready for new sessions: not draining, every runtime below its session cap with a warm server waiting
      // (when it keeps a pool). A load balancer sends new sessions elsewhere meanwhile; /healthz says alive.
      const reasons: string[] = [];
      if (this.stopping || this.cluster?.draining) reasons.push('draining');
      // Cluster mode: a node that cannot reach Redis or lost its lease cannot place sessions (or be found).
      if (this.cluster && !this.cluster.directory.redisOk) reasons.push('redis: the cluster directory is unreachable');
      else if (this.cluster && !this.cluster.directory.leaseHeld) reasons.push('lease: this node does not hold its lease yet');
      for (const [n, r] of this.runtimes) {
        const starts = r.startRecord.health;
        if (starts.consecutiveFailures > 0 && r.warmServers === 0) reasons.push(`runtime ${n}: its servers fail to start (${starts.consecutiveFailures} in a row; last: ${starts.lastError})`);
        else if (r.config.warmPool > 0 && r.warmServers === 0) reasons.push(`runtime ${n}: no warm server yet`);
        if (r.sessionCount >= r.config.limits.maxSessions) reasons.push(`runtime ${n}: at maxSessions (${r.config.limits.maxSessions})`);
      }
      sendJson(res, reasons.length ? 503 : 200, { ready: reasons.length === 0, reasons });
      return;
    }
    if (path === '/metrics' && req.method === 'GET') {
      this.metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
          res.end(text);
        },
        (e: Error) => sendError(res, new HttpError(500, ErrorCode.InternalError, `Internal error: ${e.message}`)),
      );
      return;
    }
    if (path === METADATA_PREFIX || path.startsWith(`${METADATA_PREFIX}/`)) {
      this.metadata(res, path.slice(METADATA_PREFIX.length) || '/mcp');
      return;
    }
    if (path === '/admin' || path.startsWith('/admin/')) {
      const ctx = { runtimes: this.runtimes, startedAt: this.startedAt, draining: !!this.stopping, history: this.history, cluster: this.cluster };
      handleAdmin(req, res, path, this.adminDigest, ctx).catch((e) => sendError(res, e instanceof HttpError ? e : new HttpError(500, ErrorCode.InternalError, `Internal error: ${(e as Error).message}`)));
      return;
    }
    const at = this.runtimeAt(path);
    if (!at) {
      sendError(res, new HttpError(404, ErrorCode.ServerError, `Not Found: no MCP endpoint at ${path} (runtimes: ${[...this.runtimes.keys()].map((n) => `/runtimes/${n}/mcp`).join(', ')})`));
      return;
    }
    // A runtime session may be named by the URL or by AgentCore's header, as well as by Berth-Runtime-Session.
    const named = [at.session, header(req, AGENTCORE_SESSION_HEADER), header(req, RUNTIME_SESSION_HEADER)].filter((v): v is string => v !== undefined);
    if (new Set(named).size > 1) {
      sendError(res, new HttpError(400, ErrorCode.ServerError, 'Bad Request: the URL and the runtime-session headers name different runtime sessions'));
      return;
    }
    if (named.length) req.headers[RUNTIME_SESSION_HEADER] = named[0];
    void at.runtime.handle(req, res);
  }

  /** `/mcp`, `/runtimes/NAME/mcp`, and either with `/sessions/ID` before `/mcp` (a runtime session named in the URL). */
  private runtimeAt(path: string): { runtime: HostedRuntime; session?: string } | undefined {
    const m = /^(?:\/runtimes\/([^/]+))?(?:\/sessions\/([^/]+))?\/mcp$/.exec(path);
    if (!m) return undefined;
    try {
      const runtime = m[1] === undefined ? this.defaultRuntime : this.runtimes.get(decodeURIComponent(m[1]));
      return runtime && { runtime, ...(m[2] === undefined ? {} : { session: decodeURIComponent(m[2]) }) };
    } catch {
      return undefined; // malformed percent-encoding: no such runtime
    }
  }

  private metadata(res: ServerResponse, resourcePath: string): void {
    const rt = this.runtimeAt(resourcePath)?.runtime;
    const doc = rt && protectedResourceMetadata(rt, `${this.publicUrl}${resourcePath}`);
    if (!doc) {
      sendError(res, new HttpError(404, ErrorCode.ServerError, `Not Found: no protected resource at ${resourcePath} (runtimes without auth have no metadata)`));
      return;
    }
    sendJson(res, 200, doc, { 'cache-control': 'max-age=300' });
  }

  /** Graceful stop: refuse new sessions, let in-flight calls finish within drainTimeout, end every session. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.history.stop();
      // Peers stop placing sessions here at once; the lease goes at the end, so our sessions stay routable meanwhile.
      await this.cluster?.directory.setDraining(true);
      const all = [...this.runtimes.values()];
      await Promise.all(all.map((r) => r.drain(this.config.server.drainTimeout)));
      // Servers still starting give up now instead of holding the stop for their startupTimeout.
      for (const r of all) r.startRecord.close();
      await Promise.all(all.map((r) => r.close()));
      if (this.http) {
        const server = this.http;
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      }
      await this.cluster?.stop();
    })();
    return this.stopping;
  }
}

/**
 * What no sandbox may see: berth's config file and its state directory (the records of every live sandbox), by
 * their real paths — a mask on a symlink's path would leave the file it names visible where the sandbox sees it.
 * berth reads no other secret from disk (API keys and tokens come from the environment, JWKS are kept in memory).
 */
function secretPaths(configFile: string | undefined): string[] {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p; // not there (yet): masked only if it exists when a sandbox starts
    }
  };
  return [...new Set([...(configFile ? [real(configFile)] : []), real(stateRoot())])];
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Creates (but does not start) berth from a config object; validation errors name the key. */
export function createRuntime(config: BerthConfigInput | BerthConfig, options?: CreateRuntimeOptions): Berth {
  return new Berth(parseConfig(config), options);
}

/** AgentCore Runtime's own runtime-session header, accepted as an alias so its clients move over unchanged. */
const AGENTCORE_SESSION_HEADER = 'x-amzn-bedrock-agentcore-runtime-session-id';

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
