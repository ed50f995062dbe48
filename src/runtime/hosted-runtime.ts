// What every hosted runtime shares: its pool for 2026 clients, their runtime sessions, its start slots and start
// record, and the endpoint surface the front door (http/) calls once a request is admitted, read and known to be
// served on this node. A runtime knows nothing of HTTP routing or of the cluster: what it needs from the cluster
// comes as ClusterHooks from the composition root.
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { startSlots, type RuntimeConfig, type ServerConfig } from '../config/schema.js';
import type { Metrics } from '../observe/metrics.js';
import type { RetentionBudget } from '../relay/stream-log.js';
import type { Connector } from '../session/connector.js';
import type { ServerSource } from '../session/source.js';
import type { SandboxDriver } from '../sandbox/index.js';
import { principalKey, type Principal } from '../security/auth.js';
import type { LaunchContext } from '../session/launch.js';
import { RuntimeSessions } from '../session/runtime-session.js';
import type { EndReason, Session } from '../session/session.js';
import { StartGate } from '../session/start-gate.js';
import { StartRecord } from '../session/start-record.js';
import { probeToolList, ToolSchemaCache } from '../session/tool-schemas.js';
import { RUNTIME_SESSION_HEADER } from '../wire/headers.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import type { Post2025Call, Request2026Call } from './calls.js';
import { Client2026Pool, client2026LaunchContext, serveOn } from './clients-2026.js';

export type { Post2025Call, Request2026Call };

export interface RuntimeEvents {
  'session:created': [session: Session];
  'session:ended': [session: Session, reason: EndReason, detail: string];
}

/** What a runtime needs from the cluster it may be part of (absent on a single node). */
export interface ClusterHooks {
  /** Mints session ids naming this node. */
  newId: () => string;
  /** The shared key bridged calls' requestState tokens are signed with, and this node's owner claim. */
  requestState: { key: Buffer; owner: string };
  /** A runtime session was served here: its route is remembered (and restored should Redis lose it). */
  runtimeSessionServed(principal: Principal, id: string, session: { createdAt: number; maxLifetime: number }): void;
  /** A runtime session was deleted here: its route goes, so the id may be placed anew. */
  runtimeSessionDeleted(principal: Principal, id: string): void;
}

export interface RuntimeOptions {
  name: string;
  config: RuntimeConfig;
  server: ServerConfig;
  /** The sandbox driver, chosen for this host before the runtime is built. */
  driver: SandboxDriver;
  /** How berth reaches the servers it starts (stdio or HTTP), chosen with the driver. */
  connector: Connector;
  /** What the servers are (a command on the host, or an image). */
  source: ServerSource;
  baseDir: string;
  log: Logger;
  metrics?: Metrics;
  /** Host paths no sandbox may see (berth's config file). */
  hide?: string[];
  cluster?: ClusterHooks;
  /** What every session's retained events may take together, across runtimes (server.retainBudget). */
  retention?: RetentionBudget;
}

export abstract class HostedRuntime extends EventEmitter<RuntimeEvents> {
  readonly name: string;
  readonly config: RuntimeConfig;
  protected readonly log: Logger;
  protected readonly launchCtx: LaunchContext;
  protected draining = false;
  /** Servers starting at once, and queued to start (limits.maxConcurrentStarts). */
  readonly starts: StartGate;
  /** Serves 2026-07-28 requests that name no runtime session. */
  protected readonly clients2026: Client2026Pool;
  /** Sandboxes that 2026-07-28 clients pin with the Berth-Runtime-Session header. */
  protected readonly runtimeSessions: RuntimeSessions;
  /** How this runtime's server starts are going (/healthz, /readyz). */
  readonly startRecord = new StartRecord();

  constructor(protected readonly opts: RuntimeOptions) {
    super();
    this.name = opts.name;
    this.config = opts.config;
    this.log = opts.log.child({ runtime: opts.name });
    this.starts = new StartGate(startSlots(opts.config.limits.maxConcurrentStarts, opts.driver.name));
    this.launchCtx = {
      runtimeName: opts.name,
      config: opts.config,
      driver: opts.driver,
      connector: opts.connector,
      source: opts.source,
      sessionRoot: opts.server.sessionRoot,
      baseDir: opts.baseDir,
      log: this.log,
      metrics: opts.metrics,
      hide: opts.hide,
      newId: opts.cluster?.newId,
      requestState: opts.cluster?.requestState,
      startRecord: this.startRecord,
      retention: opts.retention,
    };
    // Every server this runtime starts takes one of its start slots (limits.maxConcurrentStarts), whichever pool asks.
    this.clients2026 = new Client2026Pool(this.launchCtx, opts.config.serverEra, this.log, this.starts);
    this.runtimeSessions = new RuntimeSessions(client2026LaunchContext(this.launchCtx), this.log, opts.metrics, this.starts);
  }

  protected get metrics(): Metrics | undefined {
    return this.opts.metrics;
  }

  get baseDir(): string {
    return this.opts.baseDir;
  }

  /** How late the headers of this runtime's answers may come, ms (0: within the JSON window). */
  get headersWithin(): number {
    return this.opts.connector.headersWithin(this.config);
  }

  /** What this runtime's servers are, as /healthz and the admin API show it. */
  get shown(): ServerSource['shown'] {
    return this.opts.source.shown;
  }

  get driverName(): string {
    return this.launchCtx.driver.name;
  }

  abstract start(): Promise<void>;
  /** True while any client request is in flight. */
  protected abstract get busy(): boolean;

  /** Stops taking new sessions/requests and waits up to graceMs for in-flight calls. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && (this.busy || this.clients2026.busy || this.runtimeSessions.busy))
      await new Promise((r) => setTimeout(r, 50));
  }
  abstract close(): Promise<void>;
  abstract get sessionCount(): number;
  /**
   * Places taken under limits.maxSessions: live sessions, those starting, and ended ones whose server has not stopped
   * yet. What an initialize is refused by, so what readiness must say.
   */
  abstract get sessionPlaces(): number;

  /** Protocol sessions (Mcp-Session-Id) of 2025 clients, live (none in a stateless runtime). */
  abstract get protocolSessionList(): Session[];

  /** Runtime sessions (Berth-Runtime-Session) of 2026-07-28 clients, live. */
  get runtimeSessionList(): Session[] {
    return this.runtimeSessions.list();
  }

  /** Bridged calls of a 2025-era server suspended until a 2026 client retries with its answers (input_required). */
  get pendingInputRounds(): number {
    return this.clients2026.bridge.size;
  }
  /** Servers started and ready, waiting for a session (stateful) or a request (stateless). */
  abstract get warmServers(): number;
  /** Server-to-client requests waiting for a client answer. */
  abstract get pendingServerRequests(): number;
  /** Client requests in flight. */
  abstract get callsInFlight(): number;

  /** A 2025 client's POST. */
  abstract post2025(req: IncomingMessage, res: ServerResponse, call: Post2025Call): Promise<void>;
  /** A 2025 client's GET stream. */
  abstract get(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void>;
  /** A 2025 client's DELETE of its protocol session. */
  protected abstract deleteSession(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void>;

  /** DELETE: of the runtime session it names (whatever the era header says), else of the caller's protocol session. */
  async delete(req: IncomingMessage, res: ServerResponse, principal: Principal, runtimeSession: string | undefined): Promise<void> {
    if (runtimeSession === undefined) return this.deleteSession(req, res, principal);
    if (!(await this.runtimeSessions.end(runtimeSession, principal)))
      throw new HttpError(404, -31001, 'Runtime session not found: it is unknown or already ended');
    this.opts.cluster?.runtimeSessionDeleted(principal, runtimeSession);
    res.writeHead(204).end();
  }

  /** Tool schemas for 2026 clients' Mcp-Param-* headers (a 2026-era HTTP server checks them again, harmlessly). */
  private toolSchemas: ToolSchemaCache | undefined;

  /** A 2026-07-28 client's request: on the shared pool, or in the runtime session it names. */
  async post2026(req: IncomingMessage, res: ServerResponse, call: Request2026Call): Promise<void> {
    const request = call.request;
    if (this.draining)
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', {
        id: request.id,
        headers: { 'retry-after': '5' },
      });
    if (request.method === 'tools/call') {
      this.toolSchemas ??= new ToolSchemaCache(
        probeToolList(client2026LaunchContext(this.launchCtx), this.starts, () => this.clients2026.serverEraOf()),
        this.log,
      );
      await this.toolSchemas.check(req.headers, request);
    }
    const runtimeSession = call.runtimeSession;
    if (runtimeSession === undefined) return this.clients2026.serve(req, res, call);
    if (this.config.mode === 'stateless') {
      throw new HttpError(
        400,
        ErrorCode.ServerError,
        'Bad Request: this runtime is stateless; it keeps no runtime sessions (send no Berth-Runtime-Session)',
        { id: request.id },
      );
    }
    const era = await this.clients2026.serverEraFor(call);
    const session = await this.runtimeSessions.get(runtimeSession, call.principal, request.id);
    this.opts.cluster?.runtimeSessionServed(call.principal, runtimeSession, {
      createdAt: session.createdAt,
      maxLifetime: this.config.maxLifetime,
    });
    const server = session.server;
    const headers = { [RUNTIME_SESSION_HEADER]: runtimeSession };
    if (era === '2025') {
      if (request.method === 'subscriptions/listen') return this.clients2026.listen2025ServerIn(server, res, request, headers);
      const caller = {
        rs: runtimeSession,
        principalKey: principalKey(call.principal),
        clientCapabilities: call.clientCapabilities,
        headers,
      };
      return this.clients2026.bridge.serve(res, request, caller, async () => server);
    }
    const { jsonWindow, keepAlive } = this.config.streams;
    await serveOn(server, req, res, call, { jsonWindow, keepAlive, headers });
  }

  /** Stops the 2026 pool and ends every runtime session (shutdown). */
  protected async closeClients2026(): Promise<void> {
    await this.runtimeSessions.close();
    await this.clients2026.close();
  }
}
