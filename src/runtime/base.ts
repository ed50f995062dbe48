// What every hosted runtime shares: method dispatch, the Origin check, body parsing, and error answers.
import { FORWARDED_HEADER, RUNTIME_SESSION_HEADER } from '../wire/headers.js';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RuntimeConfig, ServerConfig } from '../config/schema.js';
import type { SandboxDriver } from '../sandbox/index.js';
import { createAuthenticator, principalKey, type Authenticator, type Principal, type ResourceInfo } from '../security/auth.js';
import { RateLimiter } from '../security/quota.js';
import type { Metrics } from '../observe/metrics.js';
import { isNotification, isRequest } from '../wire/jsonrpc.js';
import { sessionIdOf } from '../wire/streamable-http.js';
import { logId, type LaunchContext } from '../session/launch.js';
import { StartGate } from '../session/start-gate.js';
import type { EndReason, Session } from '../session/session.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { checkOrigin, checkPostHeaders, parseMessages, readBody, wire2025, type ParsedBody } from '../wire/streamable-http.js';
import { classifyBodiless, classifyEra, type RequestContext } from '../wire/era.js';
import { wire2026 } from '../wire/streamable-http-2026.js';
import type { JsonRpcId } from '../wire/jsonrpc.js';
import { ModernPool, modernLaunchContext, serveOn } from './modern.js';
import { RuntimeSessions } from '../session/runtime-session.js';
import type { JsonRpcRequest } from '../wire/jsonrpc.js';
import type { ClusterNode } from '../cluster/node.js';
import { type ForwardClaims } from '../cluster/forwarded.js';
import { StartRecord } from '../session/start-record.js';

export interface RuntimeEvents {
  'session:created': [session: Session];
  'session:ended': [session: Session, reason: EndReason, detail: string];
}

export interface RuntimeOptions {
  name: string;
  config: RuntimeConfig;
  server: ServerConfig;
  driver: SandboxDriver;
  baseDir: string;
  log: Logger;
  /** This runtime's resource URLs and metadata URL (RFC 9728), known once berth listens. */
  resource: ResourceInfo;
  metrics?: Metrics;
  /** Host paths no sandbox may see (berth's config file). */
  hide?: string[];
  /** Cluster mode: this node's membership and routing (undefined: a single node, as before). */
  cluster?: ClusterNode;
}

export interface PostContext {
  body: Buffer;
  parsed: ParsedBody;
  protocolVersion: string;
  principal: Principal;
  /** What the wire layer learned: the era and, for modern requests, the method and client capabilities. */
  wire: RequestContext;
}

export abstract class HostedRuntime extends EventEmitter<RuntimeEvents> {
  readonly name: string;
  readonly config: RuntimeConfig;
  protected readonly log: Logger;
  protected readonly launchCtx: LaunchContext;
  protected draining = false;
  readonly auth: Authenticator;
  private readonly limiter: RateLimiter;
  /** Servers starting at once, and queued to start (limits.maxConcurrentStarts). */
  readonly starts: StartGate;
  /** Serves 2026-07-28 requests that name no runtime session. */
  protected readonly modern: ModernPool;
  /** Sandboxes that 2026-07-28 clients pin with the Berth-Runtime-Session header. */
  protected readonly runtimeSessions: RuntimeSessions;
  /** How this runtime's server starts are going (/healthz, /readyz). */
  readonly startRecord = new StartRecord();

  constructor(protected readonly opts: RuntimeOptions) {
    super();
    this.name = opts.name;
    this.config = opts.config;
    this.log = opts.log.child({ runtime: opts.name });
    this.auth = createAuthenticator(opts.config.auth, opts.resource);
    this.limiter = new RateLimiter(opts.config.limits.requestsPerSecond, opts.config.limits.requestBurst);
    this.starts = new StartGate(opts.config.limits.maxConcurrentStarts);
    this.launchCtx = {
      runtimeName: opts.name,
      config: opts.config,
      driver: opts.driver,
      sessionRoot: opts.server.sessionRoot,
      baseDir: opts.baseDir,
      log: this.log,
      metrics: opts.metrics,
      hide: opts.hide,
      newId: opts.cluster?.mintId,
      requestState: opts.cluster?.requestState,
      startRecord: this.startRecord,
    };
    // Every server this runtime starts takes one of its start slots (limits.maxConcurrentStarts), whichever pool asks.
    this.modern = new ModernPool(this.launchCtx, opts.config.serverEra, this.log, this.starts);
    this.runtimeSessions = new RuntimeSessions(modernLaunchContext(this.launchCtx), this.log, opts.metrics, this.starts);
  }

  protected get metrics(): Metrics | undefined {
    return this.opts.metrics;
  }

  get baseDir(): string {
    return this.opts.baseDir;
  }

  get driverName(): string {
    return this.launchCtx.driver.name;
  }

  /** Set by Berth.start() once the host has been probed; before start(). */
  useDriver(driver: SandboxDriver): void {
    this.launchCtx.driver = driver;
  }

  abstract start(): Promise<void>;
  /** True while any client request is in flight. */
  protected abstract get busy(): boolean;

  /** Stops taking new sessions/requests and waits up to graceMs for in-flight calls. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (this.busy || this.modern.busy || this.runtimeSessions.busy)) await new Promise((r) => setTimeout(r, 50));
  }
  abstract close(): Promise<void>;
  abstract get sessionCount(): number;

  /** Runtime sessions (Berth-Runtime-Session) of 2026-07-28 clients, live. */
  get runtimeSessionList(): Session[] {
    return this.runtimeSessions.list();
  }

  /** Bridged calls of a 2025-era server suspended until a 2026 client retries with its answers (input_required). */
  get pendingInputRounds(): number {
    return this.modern.bridge.size;
  }
  /** Servers started and ready, waiting for a session (stateful) or a request (stateless). */
  abstract get warmServers(): number;
  /** Server-to-client requests waiting for a client answer. */
  abstract get pendingServerRequests(): number;
  /** Client requests in flight. */
  abstract get callsInFlight(): number;
  protected abstract post(req: IncomingMessage, res: ServerResponse, ctx: PostContext): Promise<void>;
  protected abstract getStream(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void>;
  protected abstract delete(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void>;

  /** A valid 2026-07-28 POST. Notifications are accepted and dropped (none is defined on HTTP). */
  protected async postModern(req: IncomingMessage, res: ServerResponse, ctx: PostContext): Promise<void> {
    if (ctx.wire.notification) {
      res.writeHead(202).end();
      return;
    }
    if (this.draining) throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', { id: ctx.wire.id ?? null, headers: { 'retry-after': '5' } });
    const runtimeSession = RuntimeSessions.idOf(req.headers[RUNTIME_SESSION_HEADER], ctx.wire.id ?? null);
    if (runtimeSession === undefined) return this.modern.serve(req, res, ctx);
    const request = ctx.parsed.messages[0] as JsonRpcRequest;
    if (this.config.mode === 'stateless') {
      throw new HttpError(400, ErrorCode.ServerError, 'Bad Request: this runtime is stateless; it keeps no runtime sessions (send no Berth-Runtime-Session)', { id: request.id });
    }
    const era = await this.modern.requireModern(ctx);
    const session = await this.runtimeSessions.get(runtimeSession, ctx.principal, request.id);
    this.opts.cluster?.holdRuntimeSession(this.name, ctx.principal, runtimeSession, this.config.maxLifetime);
    const server = session.server;
    if (era === 'legacy') {
      if (server.kind !== 'stdio') throw new HttpError(501, ErrorCode.MethodNotFound, 'Not Implemented: a 2025-era http upstream is not bridged to 2026-07-28 clients yet', { id: request.id });
      const headers = { [RUNTIME_SESSION_HEADER]: runtimeSession };
      if (request.method === 'subscriptions/listen') return this.modern.listenLegacyIn(server, res, request, headers);
      const caller = { rs: runtimeSession, principalKey: principalKey(ctx.principal), clientCapabilities: ctx.wire.clientCapabilities ?? {}, headers };
      return this.modern.bridge.serve(res, request, caller, async () => server);
    }
    const { jsonWindow, keepAlive } = this.config.streams;
    await serveOn(server, req, res, ctx, { jsonWindow, keepAlive, headers: { [RUNTIME_SESSION_HEADER]: runtimeSession } });
  }

  /** Stops the modern pool and ends every runtime session (shutdown). */
  protected async closeModern(): Promise<void> {
    await this.runtimeSessions.close();
    await this.modern.close();
  }

  /** DELETE naming a runtime session ends it (204), whatever the era header says; undefined when none is named. */
  private async deleteRuntimeSession(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<boolean> {
    const id = RuntimeSessions.idOf(req.headers[RUNTIME_SESSION_HEADER], null);
    if (id === undefined) return false;
    if (!(await this.runtimeSessions.end(id, principal))) throw new HttpError(404, -31001, 'Runtime session not found: it is unknown or already ended');
    this.opts.cluster?.forgetRuntimeSession(this.name, principal, id);
    res.writeHead(204).end();
    return true;
  }

  /** Who is calling (401/403 when nobody acceptable), within their request rate (429). Before any body is read. */
  private async admit(req: IncomingMessage): Promise<Principal> {
    const principal = await this.auth.authenticate(req);
    if (principal.kind === 'anonymous') return principal;
    const wait = this.limiter.take(principalKey(principal));
    if (wait > 0) {
      this.metrics?.rateLimited.inc({ runtime: this.name });
      const { requestsPerSecond, requestBurst } = this.config.limits;
      throw new HttpError(429, ErrorCode.ServerError, `Too Many Requests: more than ${requestsPerSecond} requests per second (limits.requestsPerSecond, burst ${requestBurst})`, { headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) } });
    }
    return principal;
  }

  /**
   * A batch counts one call per message: its HTTP request took one token in admit(), the rest are taken here, all
   * or none. A batch over what is left is refused whole (429 with Retry-After), one larger than the burst always
   * (no Retry-After: waiting would not help) — nothing of it reaches the server.
   */
  private admitBatch(principal: Principal, parsed: ParsedBody): void {
    if (!parsed.batch || principal.kind === 'anonymous' || parsed.messages.length < 2) return;
    const n = parsed.messages.length;
    const { requestsPerSecond, requestBurst } = this.config.limits;
    const wait = n > requestBurst ? Infinity : this.limiter.take(principalKey(principal), n - 1);
    if (wait === 0) return;
    this.metrics?.rateLimited.inc({ runtime: this.name }, n);
    if (wait === Infinity) {
      throw new HttpError(429, ErrorCode.ServerError, `Too Many Requests: a batch of ${n} calls is more than the ${requestBurst} a principal may send at once (limits.requestBurst); send smaller batches`);
    }
    throw new HttpError(429, ErrorCode.ServerError, `Too Many Requests: a batch of ${n} calls is over what is left of ${requestsPerSecond} calls per second (limits.requestsPerSecond, burst ${requestBurst}); it was refused whole`, { headers: { 'retry-after': String(Math.max(1, Math.ceil(wait))) } });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const seen: { method: string; id?: unknown; principal?: string } = { method: req.method ?? 'UNKNOWN' };
    // One log line and one sample per request, when its response ends (a streamed call: at its result).
    res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      const status = res.headersSent ? res.statusCode : 499; // 499: the client left before any answer
      this.metrics?.requests.inc({ runtime: this.name, method: seen.method, status: String(status) });
      this.metrics?.requestSeconds.observe({ runtime: this.name, method: seen.method }, seconds);
      const sid = sessionIdOf(req);
      this.log.info({ session: sid === undefined ? undefined : logId(sid), id: seen.id, method: seen.method, status, ms: Math.round(seconds * 1000), principal: seen.principal }, 'request');
    });
    try {
      checkOrigin(req, this.opts.server.allowedOrigins);
      const cluster = this.opts.cluster;
      // Cluster mode: a peer (the edge) already authenticated this request and signed what it forwards; a
      // request from a client never carries the header (refused 403), and a forwarded one is never forwarded again.
      let forwarded: ForwardClaims | undefined;
      if (cluster && req.headers[FORWARDED_HEADER] !== undefined) forwarded = cluster.accept(req, this.name);
      const principal = forwarded ? forwarded.p : await this.admit(req);
      seen.principal = principal.subject;
      // Only sessions of stateful runtimes (Mcp-Session-Id) live on one node; stateless requests are served here.
      const routed = cluster && !forwarded && this.config.mode === 'stateful' ? cluster : undefined;
      switch (req.method) {
        case 'POST': {
          checkPostHeaders(req);
          const body = await readBody(req, this.config.limits.maxBodySize, this.config.limits.bodyTimeout);
          const parsed = parseMessages(body);
          const first = parsed.messages[0]!;
          seen.method = parsed.batch ? 'batch' : isRequest(first) || isNotification(first) ? (first as { method: string }).method : 'response';
          if (!parsed.batch && 'id' in first) seen.id = first.id;
          // A peer's forwarded request was counted by the node that admitted it.
          if (!forwarded) this.admitBatch(principal, parsed);
          // The era needs the body: a modern request is known by its _meta envelope.
          const revision = classifyEra(req, parsed) === 'modern' ? wire2026 : wire2025;
          const wire = revision.validatePost(req, parsed);
          const ctx = { body, parsed, protocolVersion: wire.version, principal, wire };
          if (forwarded) {
            cluster!.acceptBody(forwarded, body);
            // Placed here by a peer whose view is a moment old: a draining node refuses, and the peer tries another.
            if (cluster!.draining && parsed.messages.some((m) => isRequest(m) && m.method === 'initialize')) {
              throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: this node is draining; place the session elsewhere', { headers: { 'retry-after': '1' } });
            }
          }
          else if (routed && wire.era === 'legacy') {
            const creates = parsed.messages.some((m) => isRequest(m) && m.method === 'initialize');
            const requestId = !parsed.batch && 'id' in first ? (first.id as JsonRpcId) : null;
            if (await routed.route(req, res, { runtime: this.name, config: this.config, principal, body, creates, requestId })) return;
          } else if (cluster && !forwarded && wire.era === 'modern' && !wire.notification) {
            const requestId = wire.id ?? null;
            const rs = RuntimeSessions.idOf(req.headers[RUNTIME_SESSION_HEADER], requestId);
            const r = { runtime: this.name, config: this.config, principal, body, creates: false, requestId };
            if (routed && rs !== undefined && (await routed.routeRuntimeSession(req, res, r, rs))) return;
            // A bridged call's retry goes to the node holding the suspended call (its requestState says which),
            // stateless runtimes included: their 2026 clients are bridged from a node's own pool too.
            const state = (first as { params?: { requestState?: unknown } }).params?.requestState;
            if (rs === undefined && state !== undefined && (await cluster.routeRequestState(req, res, r, state))) return;
          }
          if (wire.era === 'modern') await this.postModern(req, res, ctx);
          else await this.post(req, res, ctx);
          return;
        }
        case 'GET':
          if (routed && (await routed.route(req, res, { runtime: this.name, config: this.config, principal, creates: false, requestId: null }))) return;
          (classifyBodiless(req) === 'modern' ? wire2026 : wire2025).checkOther(req);
          await this.getStream(req, res, principal);
          return;
        case 'DELETE':
          if (routed) {
            const rs = RuntimeSessions.idOf(req.headers[RUNTIME_SESSION_HEADER], null);
            if (rs !== undefined && (await routed.routeRuntimeSession(req, res, { runtime: this.name, config: this.config, principal, creates: false, requestId: null }, rs))) return;
          }
          if (await this.deleteRuntimeSession(req, res, principal)) return;
          if (routed && (await routed.route(req, res, { runtime: this.name, config: this.config, principal, creates: false, requestId: null }))) return;
          (classifyBodiless(req) === 'modern' ? wire2026 : wire2025).checkOther(req);
          await this.delete(req, res, principal);
          return;
        default:
          throw new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${req.method} (use POST, GET or DELETE)`, { headers: { allow: 'GET, POST, DELETE' } });
      }
    } catch (e) {
      if (e instanceof HttpError) {
        e.send(res);
        return;
      }
      this.log.error({ err: e }, 'request failed');
      new HttpError(500, ErrorCode.InternalError, `Internal error: ${(e as Error).message}`).send(res);
    }
  }
}
