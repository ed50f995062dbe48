// One berth process as a cluster member: its identity, the directory, and the routing decision the front door asks
// for, once per request, after it has admitted and read it (decide(), called by http/front-door.ts).
import { FORWARDED_HEADER } from '../wire/headers.js';
import { createsSession, idOf, type InboundPost } from '../wire/inbound.js';
import { createHmac } from 'node:crypto';
import { hostname } from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ClusterConfig, RuntimeConfig } from '../config/schema.js';
import { principalKey, type Principal } from '../security/auth.js';

import { HttpError } from '../wire/http-error.js';
import { ErrorCode, type JsonRpcId } from '../wire/jsonrpc.js';
import { sessionIdOf } from '../wire/streamable-http.js';
import { RequestStateCodec } from '../security/request-state.js';
import { Directory, type RuntimeLoad } from './directory.js';
import { bodyDigest, NonceCache, signForwarded, verifyForwarded, type ForwardClaims } from './forwarded.js';
import { Forwarder } from './forward.js';
import { mintSessionId, newIncarnation, sessionOwner } from './ids.js';
import { clusterKeys, type ClusterKeys } from './keys.js';
import { candidates, choose } from './placement.js';

const NOT_FOUND = 'Session not found: it is unknown, ended or expired; initialize a new session';
/** Runtime-session routes remembered for when Redis cannot answer. */
const ROUTE_CACHE = 10_000;
/** A runtime session's record outlives what it covers by this much (clocks, a request in flight at the end). */
const CLAIM_MARGIN_MS = 60_000;
/** How soon an extension Redis could not take is tried again. */
const EXTEND_RETRY_MS = 5_000;

/** What a Berth-Forwarded header binds as the session: Mcp-Session-Id, else the runtime session, else nothing. */
function sessionClaim(req: IncomingMessage, runtimeSession: string | undefined): string {
  const sid = sessionIdOf(req);
  if (sid !== undefined) return sid;
  return runtimeSession !== undefined ? `rs:${runtimeSession}` : '';
}

/** One request the front door asks about: is it served here, or by another node? */
export interface ClusterCall {
  runtime: string;
  config: RuntimeConfig;
  /** How late the headers of the runtime's answer may come, ms (its Connector says; 0: within the forward timeout). */
  headersWithin: number;
  principal: Principal;
  /** POST only: the request as the wire layer read it. */
  post?: InboundPost;
  /** The runtime session the request names, if any (already checked). */
  runtimeSession?: string;
}

/** What the cluster needs from the node it runs in (given by the composition root). */
export interface ClusterNodeHooks {
  /** This node's figures per runtime, published for placement. */
  load: () => Record<string, RuntimeLoad>;
  /** Ends every local session (the drain deadline). */
  onDrainDeadline: () => void;
}

export interface RouteRequest {
  runtime: string;
  config: RuntimeConfig;
  /** How late the headers of the runtime's answer may come, ms (0: within the forward timeout). */
  headersWithin: number;
  principal: Principal;
  body?: Buffer;
  /** The request creates a session (initialize). */
  creates: boolean;
  requestId: JsonRpcId | null;
  runtimeSession?: string;
}

export class ClusterNode {
  private forgeryWarnedAt = 0;
  readonly nodeId: string;
  readonly inc = newIncarnation();
  readonly keys: ClusterKeys;
  readonly directory: Directory;
  readonly forwarder: Forwarder;
  private readonly nonces = new NonceCache();
  private drainTimer: NodeJS.Timeout | undefined;
  drainDeadline: number | undefined;
  /** Sessions placed here per runtime since the last view refresh, so a burst from one edge spreads. */
  private readonly placed = new Map<string, number>();
  constructor(
    readonly cfg: ClusterConfig,
    private readonly log: Logger,
    private readonly hooks: ClusterNodeHooks,
  ) {
    const load = hooks.load;
    this.nodeId = cfg.nodeId ?? process.env.BERTH_NODE_ID ?? hostname().toLowerCase().split('.')[0]!;
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(this.nodeId))
      throw new Error(`cluster.nodeId: "${this.nodeId}" is not a DNS label (set cluster.nodeId or BERTH_NODE_ID)`);
    this.keys = clusterKeys(process.env[cfg.secretEnv], cfg.secretEnv);
    // Empty until berth listens, when it defaults to the address berth is listening on.
    const advertise = cfg.advertiseUrl ?? process.env.BERTH_ADVERTISE_URL ?? '';
    this.directory = new Directory(
      cfg,
      { id: this.nodeId, inc: this.inc, url: advertise.replace(/\/+$/, '') },
      load,
      log.child({ cluster: this.nodeId }),
    );
    this.forwarder = new Forwarder(cfg.forward.connectTimeout, this.nodeId, log);
    this.directory.on('reclaimed', () => void this.restoreRoutes());
    this.directory.on('left', (id) => {
      this.forwarder.abortNode(id);
      this.log.info({ node: id }, 'cluster: node left the view');
    });
    const t = setInterval(() => this.placed.clear(), cfg.viewInterval);
    t.unref();
  }

  /** requestState tokens of bridged calls: signed with the shared key, naming this node (LaunchContext.requestState). */
  get requestState(): { key: Buffer; owner: string } {
    return { key: this.keys.sign.mrtr, owner: `${this.nodeId}.${this.inc}` };
  }

  private stateCodec: RequestStateCodec | undefined;

  /**
   * A bridged call's retry (params.requestState) goes to the node that minted the token, where the call is
   * suspended. A token that is not authentic, names this node or a node that is gone is answered here (the in-band
   * "Invalid or expired requestState", as on one node).
   */
  async routeRequestState(req: IncomingMessage, res: ServerResponse, r: RouteRequest, token: unknown): Promise<boolean> {
    this.stateCodec ??= new RequestStateCodec(this.keys.sign.mrtr);
    const owner = this.stateCodec.owner(token);
    if (owner === undefined || owner === `${this.nodeId}.${this.inc}`) return false;
    const [nodeId, inc] = owner.split('.') as [string, string];
    const n = this.directory.view.get(nodeId);
    if (!n || n.inc !== inc) return false;
    await this.send(req, res, r, n, this.cfg.forward.headersTimeout, false);
    return true;
  }

  /** A new session id naming this node (LaunchContext.newId). */
  mintId = (): string => mintSessionId(this.keys, { nodeId: this.nodeId, inc: this.inc });

  get draining(): boolean {
    return this.directory.draining;
  }

  /** Refuses new sessions here (they are placed on other nodes); at the deadline the remaining ones end. */
  async drain(deadlineMs: number | undefined): Promise<void> {
    clearTimeout(this.drainTimer);
    this.drainDeadline = deadlineMs === undefined ? undefined : Date.now() + deadlineMs;
    if (deadlineMs !== undefined) {
      this.drainTimer = setTimeout(() => this.hooks.onDrainDeadline(), deadlineMs);
      this.drainTimer.unref();
    }
    await this.directory.setDraining(true);
  }

  async undrain(): Promise<void> {
    clearTimeout(this.drainTimer);
    this.drainDeadline = undefined;
    await this.directory.setDraining(false);
  }

  status(): Record<string, unknown> {
    const d = this.directory;
    return {
      node: this.nodeId,
      incarnation: this.inc,
      url: d.self.url,
      redis: d.redisOk ? 'ok' : 'unreachable',
      lease: d.leaseHeld ? 'held' : 'not held',
      draining: d.draining,
      drainDeadline: this.drainDeadline === undefined ? null : new Date(this.drainDeadline).toISOString(),
      forwarded: this.forwarder.forwarded,
      nodes: [...d.view.values()].map((n) => ({ id: n.id, url: n.url, draining: n.draining, load: n.load })),
    };
  }

  /**
   * Checks a Berth-Forwarded header: the principal the edge authenticated, or 403 (a client-sent or replayed
   * header, one meant for another node or request). The body digest is checked by acceptBody once it is read.
   */
  accept(req: IncomingMessage, runtime: string, runtimeSession: string | undefined): ForwardClaims {
    const h = req.headers[FORWARDED_HEADER];
    const c =
      typeof h === 'string'
        ? verifyForwarded(
            this.keys,
            h,
            { to: this.nodeId, inc: this.inc, rt: runtime, m: req.method ?? '', sid: sessionClaim(req, runtimeSession) },
            this.nonces,
          )
        : 'repeated header';
    if (typeof c === 'string') {
      // Anyone can send the header before authenticating: one warning per 10 s, the rest at debug.
      const now = Date.now();
      const level = now - this.forgeryWarnedAt > 10_000 ? 'warn' : 'debug';
      if (level === 'warn') this.forgeryWarnedAt = now;
      this.log[level]({ attack: 'forged-forward', why: c, from: req.socket.remoteAddress }, 'cluster: refused a Berth-Forwarded header');
      throw new HttpError(
        403,
        ErrorCode.ServerError,
        `Forbidden: invalid Berth-Forwarded header (${c}); this header is only for berth nodes of one cluster`,
      );
    }
    return c;
  }

  /** A forwarded POST's body: exactly the one the edge signed; a draining node refuses to start a session. */
  acceptBody(c: ForwardClaims, post: InboundPost): void {
    if (bodyDigest(post.body) !== c.b)
      throw new HttpError(403, ErrorCode.ServerError, 'Forbidden: invalid Berth-Forwarded header (the body does not match its digest)');
    // Placed here by a peer whose view is a moment old: a draining node refuses, and the peer tries another.
    if (this.draining && createsSession(post)) {
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: this node is draining; place the session elsewhere', {
        headers: { 'retry-after': '1' },
      });
    }
  }

  /**
   * The one routing decision per request: true when it was served by another node (forwarded and answered), false
   * when this node serves it. Only stateful runtimes' sessions live on one node; a bridged call's retry goes to the
   * node holding the suspended call in stateless runtimes too (their 2026 clients are bridged from a node's pool).
   */
  async decide(req: IncomingMessage, res: ServerResponse, c: ClusterCall): Promise<boolean> {
    const stateful = c.config.mode === 'stateful';
    const post = c.post;
    const r: RouteRequest = {
      runtime: c.runtime,
      config: c.config,
      headersWithin: c.headersWithin,
      principal: c.principal,
      body: post?.body,
      creates: post ? createsSession(post) : false,
      requestId: post ? idOf(post) : null,
      runtimeSession: c.runtimeSession,
    };
    if (post?.clientEra === '2025' || req.method === 'GET') return stateful && this.route(req, res, r);
    if (post && !('request' in post)) return false; // a 2026 notification: accepted and dropped wherever it lands
    if (stateful && c.runtimeSession !== undefined) return this.routeRuntimeSession(req, res, r, c.runtimeSession);
    if (req.method === 'DELETE') return stateful && this.route(req, res, r);
    const state = post?.request.params?.requestState;
    return c.runtimeSession === undefined && state !== undefined && this.routeRequestState(req, res, r, state);
  }

  /**
   * Serves the request elsewhere when it belongs elsewhere: true when it was forwarded (answered), false when this
   * node handles it. A bad or dead owner answers 404 without a hop; no node for a new session answers 503.
   */
  async route(req: IncomingMessage, res: ServerResponse, r: RouteRequest): Promise<boolean> {
    const sid = sessionIdOf(req);
    if (sid === undefined || sid === '') return r.creates ? this.create(req, res, r) : false;
    const owner = sessionOwner(this.keys, sid);
    if (!owner) throw new HttpError(404, ErrorCode.SessionNotFound, NOT_FOUND, { id: r.requestId });
    if (owner.nodeId === this.nodeId && owner.inc === this.inc) return false;
    const n = this.directory.view.get(owner.nodeId);
    // The same body as an unknown id: a lost node's sessions are gone (its incarnation changed or its lease lapsed).
    if (!n || n.inc !== owner.inc) throw new HttpError(404, ErrorCode.SessionNotFound, NOT_FOUND, { id: r.requestId });
    const wait = req.method === 'DELETE' ? r.config.limits.stopGrace + 2000 : this.cfg.forward.headersTimeout;
    await this.send(req, res, r, n, wait, false);
    return true;
  }

  /**
   * A new session: placed, and tried once more elsewhere when the chosen node cannot be reached or refuses (503:
   * full or shutting down) before anything was answered.
   */
  private async create(req: IncomingMessage, res: ServerResponse, r: RouteRequest): Promise<boolean> {
    const wait = r.config.limits.startupTimeout + 2000;
    const first = this.place(r);
    if (!first) return false;
    if (!(await this.send(req, res, r, first, wait, true)).retry) return true;
    const second = this.place(r, new Set([first.id]));
    if (!second) return false;
    await this.send(req, res, r, second, wait, false);
    return true;
  }

  private async send(
    req: IncomingMessage,
    res: ServerResponse,
    r: RouteRequest,
    target: { id: string; inc: string; url: string },
    timeout: number,
    retryable: boolean,
  ): Promise<{ retry?: boolean }> {
    const headersTimeout = Math.max(timeout, r.headersWithin);
    const header = signForwarded(this.keys, {
      from: this.nodeId,
      to: target.id,
      inc: target.inc,
      p: r.principal,
      rt: r.runtime,
      m: req.method ?? '',
      sid: sessionClaim(req, r.runtimeSession),
      b: bodyDigest(r.body),
    });
    // Quiet SSE streams get a keep-alive comment every streams.keepAlive: the idle cut must outlast that.
    const ka = r.config.streams.keepAlive;
    const idleTimeout = ka > 0 ? Math.max(this.cfg.forward.idleTimeout, ka + 5000) : this.cfg.forward.idleTimeout;
    const out = await this.forwarder.forward(req, res, target, {
      header,
      body: r.body,
      headersTimeout,
      idleTimeout,
      requestId: r.requestId,
      extraHeaders: r.config.forwardHeaders,
      runtimeSession: r.runtimeSession,
      retryable,
    });
    if (out.unreachable) void this.directory.recheck(target.id);
    return out;
  }

  /** The Redis key of a runtime session: an HMAC, so neither the principal nor the id appears in Redis. */
  private rsKey(runtime: string, principal: Principal, id: string): string {
    return createHmac('sha256', this.keys.sign.rs)
      .update(JSON.stringify([runtime, principalKey(principal), id]))
      .digest('base64url');
  }

  private readonly routes = new Map<string, string>();

  /**
   * A request naming a runtime session (Berth-Runtime-Session, a client-chosen id that cannot name its owner): its
   * owner is recorded in Redis when the session is first used (placed like a new session, claimed with SET NX). One
   * Redis read per request; when Redis is down the last route seen is used, and an unknown one gets 503.
   */
  async routeRuntimeSession(req: IncomingMessage, res: ServerResponse, r: RouteRequest, id: string): Promise<boolean> {
    const d = this.directory;
    const key = this.rsKey(r.runtime, r.principal, id);
    const me = `${this.nodeId}.${this.inc}`;
    let owner: string | undefined;
    let creating = false;
    if (d.redisOk) {
      try {
        owner = (await d.getRoute(key)) ?? undefined;
        if (owner === undefined && req.method === 'DELETE') return false; // nothing anywhere: the local 404
        const heldUntil = owner === undefined ? this.heldUntil(key) : undefined;
        if (heldUntil !== undefined) {
          // Its record lapsed or Redis lost it, but the session lives here: put it back rather than start another.
          owner = await d.claimRoute(key, me, heldUntil - Date.now());
        } else if (owner === undefined) {
          const target = this.place(r);
          // Claimed for as long as placing it may take; the owner extends it to the session's lifetime once the
          // session exists (holdRuntimeSession). A claim for one it refused (a cap, a failed start) lapses soon, so
          // a caller naming new ids cannot fill Redis with records of sessions that never were.
          const { startQueueTimeout, startupTimeout } = r.config.limits;
          owner = await d.claimRoute(key, target ? `${target.id}.${target.inc}` : me, startQueueTimeout + startupTimeout + CLAIM_MARGIN_MS);
          creating = true;
        }
      } catch (e) {
        if (e instanceof HttpError) throw e;
        owner = undefined;
      }
    }
    owner ??= this.routes.get(key);
    if (owner === undefined) {
      throw new HttpError(
        503,
        ErrorCode.ServerError,
        'Service Unavailable: the cluster directory (Redis) is unreachable; existing sessions continue, new ones cannot be placed',
        { id: r.requestId, headers: { 'retry-after': '5' } },
      );
    }
    this.routes.delete(key);
    this.routes.set(key, owner);
    if (this.routes.size > ROUTE_CACHE) this.routes.delete(this.routes.keys().next().value!);
    if (owner === me) return false;
    const [nodeId, inc] = owner.split('.') as [string, string];
    const n = d.view.get(nodeId);
    if (!n || n.inc !== inc) {
      throw new HttpError(
        404,
        -31001,
        'Runtime session lost with its node (the berth node holding it stopped); its state is gone. Name a new id to start another',
        { id: r.requestId, data: { reason: 'lost' } },
      );
    }
    // Its first request starts the sandbox there (cold): allowed as long as an initialize.
    const wait =
      req.method === 'DELETE'
        ? r.config.limits.stopGrace + 2000
        : creating
          ? r.config.limits.startupTimeout + 2000
          : this.cfg.forward.headersTimeout;
    await this.send(req, res, r, n, wait, false);
    return true;
  }

  /** Runtime sessions served here (key → when the record may expire), restored if Redis comes back empty. */
  private readonly held = new Map<string, { until: number; createdAt: number }>();
  /** Of those, the ones whose record Redis confirmed for their whole life (extendRoute); the rest are tried again. */
  private readonly extended = new Set<string>();
  private readonly extending = new Set<string>();
  /** Keys whose extension failed and was logged: once is enough. */
  private readonly warned = new Set<string>();

  /**
   * A runtime session was served here: its record is made to live as long as the session may (and its tombstone
   * after it), no longer the claim's short while; and it is remembered, so the record can be restored after Redis
   * lost it or it lapsed. Until Redis confirms the extension, every request served tries it again.
   */
  holdRuntimeSession(runtime: string, principal: Principal, id: string, session: { createdAt: number; maxLifetime: number }): void {
    const key = this.rsKey(runtime, principal, id);
    const now = Date.now();
    const was = this.held.get(key);
    if (was?.createdAt !== session.createdAt) {
      // New here, or the same id naming a new session (the old one ended and its tombstone expired).
      this.held.delete(key);
      this.held.set(key, { until: session.createdAt + session.maxLifetime + CLAIM_MARGIN_MS, createdAt: session.createdAt });
      this.extended.delete(key);
      this.warned.delete(key);
      if (this.held.size > ROUTE_CACHE * 10) this.unhold(this.held.keys().next().value!); // oldest first
    }
    if (this.extended.has(key) || this.extending.has(key)) return;
    this.extending.add(key);
    const me = `${this.nodeId}.${this.inc}`;
    const warnOnce = (msg: string, extra: Record<string, unknown> = {}) => {
      if (this.warned.has(key)) return;
      this.warned.add(key);
      this.log.warn({ runtimeSession: id.slice(0, 8), ...extra }, msg);
    };
    void this.directory
      .extendRoute(key, me, this.held.get(key)!.until - now)
      .then((ok) => {
        if (!this.held.has(key)) return; // forgotten meanwhile
        // Confirmed; or recorded for another node, where there is nothing to extend, ever (its requests go there).
        this.extended.add(key);
        if (!ok) warnOnce('cluster: a runtime session held here is recorded for another node');
      })
      .catch((e: Error) => {
        warnOnce('cluster: could not extend a runtime session record; tried again shortly and at its next request', { err: e.message });
        this.retryExtension(runtime, principal, id, session);
      })
      .finally(() => this.extending.delete(key));
  }

  /**
   * An extension Redis could not take is tried again a little later, not only at the session's next request: its
   * short claim lapses meanwhile, and a request through another node would then place the id anew.
   */
  private retryExtension(runtime: string, principal: Principal, id: string, session: { createdAt: number; maxLifetime: number }): void {
    setTimeout(() => {
      const key = this.rsKey(runtime, principal, id);
      const live = this.heldUntil(key) !== undefined && this.held.get(key)!.createdAt === session.createdAt;
      if (live && !this.extended.has(key)) this.holdRuntimeSession(runtime, principal, id, session);
    }, EXTEND_RETRY_MS).unref();
  }

  /** The record of a runtime session held here, when one is: its life's end. */
  private heldUntil(key: string): number | undefined {
    const h = this.held.get(key);
    return h && h.until > Date.now() ? h.until : undefined;
  }

  private unhold(key: string): void {
    this.held.delete(key);
    this.extended.delete(key);
    this.warned.delete(key);
  }

  /** After our lease had to be taken again: put back the records of the runtime sessions we hold (SET NX). */
  private async restoreRoutes(): Promise<void> {
    const me = `${this.nodeId}.${this.inc}`;
    const now = Date.now();
    let restored = 0;
    for (const [key, { until }] of this.held) {
      if (until <= now) {
        this.unhold(key);
        continue;
      }
      try {
        if ((await this.directory.claimRoute(key, me, until - now)) === me) restored++;
      } catch {
        return; // Redis went away again: the next reclaim tries again
      }
    }
    if (restored) this.log.info({ restored }, 'cluster: runtime-session records restored after Redis lost them');
  }

  /** After a runtime session was deleted here: its record goes, so the id may be placed anew. */
  forgetRuntimeSession(runtime: string, principal: Principal, id: string): void {
    const key = this.rsKey(runtime, principal, id);
    this.routes.delete(key);
    this.unhold(key);
    void this.directory.dropRoute(key, `${this.nodeId}.${this.inc}`);
  }

  /** The node for a new session: undefined = this one. */
  private place(r: RouteRequest, exclude: Set<string> = new Set()): { id: string; inc: string; url: string } | undefined {
    const d = this.directory;
    if (!d.redisOk) {
      throw new HttpError(
        503,
        ErrorCode.ServerError,
        'Service Unavailable: the cluster directory (Redis) is unreachable; existing sessions continue, new ones cannot be placed',
        { headers: { 'retry-after': '5' }, id: r.requestId },
      );
    }
    if (this.cfg.placement === 'local' && !d.draining) return undefined;
    const now = Date.now();
    const minFree = Math.max(this.cfg.minFreeMemory, r.config.limits.memory ?? 0);
    const cands = candidates(d.view.values(), r.runtime, now, 2 * this.cfg.renewInterval + this.cfg.viewInterval, minFree).filter(
      (c) => !(c.id === this.nodeId && d.draining) && !exclude.has(c.id),
    );
    // Sessions placed since the last view refresh count too, so a burst through one edge spreads; for this node
    // its live figures replace the published ones.
    for (const c of cands) {
      const live = c.id === this.nodeId ? { ...c.load, ...this.localLoad(r.runtime) } : c.load;
      c.load = { ...live, sessions: live.sessions + (this.placed.get(c.id) ?? 0) };
    }
    const id = choose(
      cands.filter((c) => c.load.sessions < c.load.max),
      this.nodeId,
    );
    if (id === undefined)
      throw new HttpError(
        503,
        ErrorCode.ServerError,
        'Service Unavailable: no node can take a new session (all full, draining or short of memory)',
        { headers: { 'retry-after': '5' }, id: r.requestId },
      );
    this.placed.set(id, (this.placed.get(id) ?? 0) + 1);
    if (id === this.nodeId) return undefined;
    return d.view.get(id);
  }

  /** This node's current figures for a runtime. */
  private localLoad(runtime: string): Partial<RuntimeLoad> {
    return this.hooks.load()[runtime] ?? {};
  }

  async start(): Promise<void> {
    await this.directory.start();
  }

  async stop(): Promise<void> {
    clearTimeout(this.drainTimer);
    await this.directory.stop();
    await this.forwarder.close();
  }
}
