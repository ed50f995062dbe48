// Serving 2026-07-28 clients' requests to a server of that era: each request stands alone, relayed with its id
// rewritten through the server's MessageRelay, answered as JSON or as an SSE stream without event ids or priming
// (nothing is resumable in this revision), and closing that stream cancels the request at the server.
// Without a runtime session, requests go to a warm pool of servers shared statelessly. A 2025-era server is
// served through the bridge (src/bridge/server-2025.ts).
import type { StartGate } from '../session/start-gate.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Exchange } from '../relay/exchange.js';
import type { MessageRelay } from '../relay/message-relay.js';
import { dispose, launchReady, withinStartup, type LaunchContext, type Launched } from '../session/launch.js';
import { META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, VERSIONS_2026 } from '../wire/era.js';
import { HttpError, sendJson } from '../wire/http-error.js';
import { ErrorCode, isRequest, type JsonRpcId, type JsonRpcMessage, type JsonRpcRequest } from '../wire/jsonrpc.js';
import { ErrorCode2026 } from '../wire/streamable-http-2026.js';
import type { Request2026Call } from './calls.js';
import { Server2025Bridge } from '../bridge/server-2025.js';
import { bridgeInitialize, Server2026Bridge } from '../bridge/server-2026.js';
import { ListenFanout } from './listen.js';
import { perPrincipalCap, pooledServersRefusal, SharedPool, type PoolMember } from '../session/shared-pool.js';
import { Server2025Listens } from '../bridge/server-2025-listens.js';
import { principalKey, type Principal } from '../security/auth.js';

export type ServerEra = 'auto' | '2025' | '2026';
/** One 2026 client's request on one server, relayed or forwarded by its upstream. */
export function serveOn(
  server: Launched,
  req: IncomingMessage,
  res: ServerResponse,
  call: Request2026Call,
  o: { jsonWindow: number; keepAlive: number; headers?: Record<string, string> },
): Promise<void> {
  return server.upstream.request2026(req, res, { ...o, request: call.request, body: call.body });
}

/** Launch context for 2026-era servers: the relay keys ids per server (berth makes them unique), never per stream. */
export function client2026LaunchContext(ctx: LaunchContext): LaunchContext {
  return { ...ctx, config: { ...ctx.config, mode: 'stateful' } };
}

type Member = PoolMember<undefined>;

/** Answers whether a started server speaks 2026-07-28: a DiscoverResult naming it, or the 2026 code -32022. */
async function speaks2026(server: Launched, timeoutMs: number): Promise<boolean> {
  const envelope = { [META_PROTOCOL_VERSION]: VERSIONS_2026[0], [META_CLIENT_CAPABILITIES]: {} };
  try {
    const asking = server.upstream.call('server/discover', { _meta: envelope }, VERSIONS_2026[0]);
    const r = await withinStartup(server.sandbox, timeoutMs, asking, 'the server did not answer server/discover');
    const versions = (r.result as { supportedVersions?: unknown } | undefined)?.supportedVersions;
    if (Array.isArray(versions)) return versions.includes(VERSIONS_2026[0]);
    return r.error?.code === ErrorCode2026.UnsupportedProtocolVersion;
  } catch {
    return false; // a timeout or an exit: a 2025-era server that does not take requests before initialize
  }
}

/** A server started for 2026 clients' requests, once it is warm (disposed when it cannot get there). */
async function startReady(ctx: LaunchContext): Promise<Launched> {
  return launchReady(client2026LaunchContext(ctx));
}

/** The servers that answer 2026 clients' requests without a runtime session: shared, least busy first. */
export class Client2026Pool {
  private readonly pool: SharedPool<undefined>;
  private closed = false;
  /** Open listens on 2026-era servers, and whose. */
  private readonly listens = new Map<ListenFanout, string>();
  /** Listens inside runtime sessions on 2025-era servers, per sandbox. */
  private readonly sessionListens = new WeakMap<MessageRelay, Server2025Listens>();
  /** The server is known to be 2025-era: its calls are bridged, one server each. */
  private server2025 = false;
  private era: Promise<'2026' | '2025'> | undefined;

  constructor(
    private readonly ctx: LaunchContext,
    private readonly serverEra: ServerEra,
    private readonly log: Logger,
    private readonly starts: StartGate,
  ) {
    this.pool = new SharedPool<undefined>({
      size: Math.max(1, ctx.config.warmPool.min),
      max: ctx.config.limits.maxSessions,
      // Each bridged call holds a server of its own: without a cap one principal's suspended calls could hold them all.
      maxPerOwner: perPrincipalCap(ctx.config.limits.maxSessionsPerPrincipal),
      startupTimeout: ctx.config.limits.startupTimeout,
      stopGrace: ctx.config.limits.stopGrace,
      ownerIdle: ctx.config.idleTimeout,
      log,
      start: async () => ({ server: await this.starts.run(() => startReady(ctx), { refill: true }), info: undefined }),
      // Bridged calls keep their server (suspended) until the client's retry: one call per server.
      extraLoad: (m) => this.bridge.callsOn(m.server.upstream.relay),
      // A principal's listens reach the servers it has claimed, present and future, and no one else's.
      onClaim: (m) => {
        const server = m.server;
        for (const [fan, owner] of this.listens) if (owner === m.owner) fan.join(server.upstream.relay);
        // A 2025 server announces changes only once initialized: a new one is, while its principal listens.
        const listens = this.server2025Listens.get(m.owner!);
        if (this.server2025 && listens)
          void this.bridge.initialized(server, null).then(
            () => listens.add(server.upstream.relay),
            () => undefined,
          );
      },
      onExit: (m) => {
        m.server.upstream.fail(ErrorCode.SessionEnded, 'the server process exited');
        const relay = m.server.upstream.relay;
        if (relay) this.server2025Listens.get(m.owner!)?.remove(relay);
      },
    });
    if (serverEra === '2025') this.era = Promise.resolve('2025');
    if (serverEra === '2026') this.era = Promise.resolve('2026');
    const { jsonWindow, keepAlive } = ctx.config.streams;
    this.bridge = new Server2025Bridge({
      runtime: ctx.runtimeName,
      jsonWindow,
      keepAlive,
      startupTimeout: ctx.config.limits.startupTimeout,
      gatherWindow: 25,
      pendingTimeout: ctx.config.limits.pendingInputTimeout,
      onCallEnded: () => setImmediate(() => this.pool.trim()),
      // Pooled servers feed their principal's listens; a runtime session's server feeds only its own (listen2025ServerIn).
      onServerInitialized: (relay) => {
        const member = this.pool.members.find((m) => m.server.upstream.relay === relay);
        if (member?.owner !== undefined) this.server2025Listens.get(member.owner)?.add(relay);
      },
      requestState: ctx.requestState,
    });
  }

  /** 2026 clients' requests to a 2025-era server, with or without a runtime session. */
  readonly bridge: Server2025Bridge;
  /** Listens of 2026 clients on 2025-era servers, answered by berth from the servers' announcements; per principal. */
  private readonly server2025Listens = new Map<string, Server2025Listens>();

  get busy(): boolean {
    return this.pool.members.some((m) => m.inFlight > 0) || this.bridge.size > 0;
  }

  /** A runtime whose server is known to be 2026-era keeps its pool warm from the start. */
  start(): void {
    if (this.serverEra === '2026') this.pool.fill();
  }

  /** The hosted server's era: configured, or learned from the first pooled server (auto). */
  serverEraOf(): Promise<'2026' | '2025'> {
    if (!this.era) {
      const probing = this.probe();
      this.era = probing;
      // A server that could not start says nothing of its era: the next request asks again.
      probing.catch(() => {
        if (this.era === probing) this.era = undefined;
      });
    }
    void this.era.then(
      (e) => (this.server2025 = e === '2025'),
      () => undefined,
    );
    return this.era;
  }

  private async probe(): Promise<'2026' | '2025'> {
    const server = await startReady(this.ctx);
    const is2026 = await speaks2026(server, this.ctx.config.limits.startupTimeout);
    this.log.info({ era: is2026 ? '2026' : '2025' }, 'hosted server era (server/discover)');
    if (this.closed) {
      void dispose(server, 0);
      return is2026 ? '2026' : '2025';
    }
    // Either era is kept: a 2025-era server answers 2026 clients through the bridge.
    this.pool.adopt(server, undefined);
    this.pool.fill();
    return is2026 ? '2026' : '2025';
  }

  /** The server's era, or a refusal when it cannot be learned (its server could not start). */
  async serverEraFor(call: Request2026Call): Promise<'2026' | '2025'> {
    const request = call.request;
    const era = await this.serverEraOf().catch((e: Error) => {
      throw new HttpError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server could not be started: ${e.message}`, {
        id: request.id,
      });
    });
    return era;
  }

  async serve(req: IncomingMessage, res: ServerResponse, call: Request2026Call): Promise<void> {
    const request = call.request;
    const owner = principalKey(call.principal);
    if ((await this.serverEraFor(call)) === '2025') {
      if (request.method === 'subscriptions/listen') return this.listen2025Server(res, request, call.principal);
      // A retry finds its suspended call through its requestState, whichever member holds it.
      const caller = { rs: 'pool', principalKey: owner, clientCapabilities: call.clientCapabilities, headers: {} };
      // Over stdio a 2025 server's request names no call, so each bridged call gets a server of its own; the
      // reservation holds it until the call is registered (and counted) by the bridge.
      let reserved: Member | undefined;
      try {
        return await this.bridge.serve(res, request, caller, async () => {
          reserved = await this.pick(request.id, call.principal, true);
          return reserved.server;
        });
      } finally {
        if (reserved) reserved.inFlight--;
      }
    }
    // Each pooled server has its own state: berth merges every member's listen (over HTTP too, through its relay).
    if (request.method === 'subscriptions/listen') return this.listen(res, request, call.principal);
    const member = await this.pick(request.id, call.principal);
    member.inFlight++;
    try {
      await serveOn(member.server, req, res, call, this.ctx.config.streams);
    } finally {
      member.inFlight--;
    }
  }

  /**
   * A 2025 client of a stateless runtime whose server speaks only 2026-07-28: initialize is answered from
   * server/discover, each request goes out with the envelope, and a server asking for input is refused.
   */
  async serve2025ClientsStateless(res: ServerResponse, messages: JsonRpcMessage[], batch: boolean, principal: Principal): Promise<void> {
    // Notifications (initialized, cancelled) and responses have nowhere to go without a session.
    if (!messages.some(isRequest)) return void res.writeHead(202).end();
    const member = await this.pick(null, principal);
    const relay = member.server.upstream.relay;
    const init = messages.find((m) => isRequest(m) && m.method === 'initialize') as JsonRpcRequest | undefined;
    if (init) return sendJson(res, 200, await bridgeInitialize(relay, init));
    member.inFlight++;
    try {
      const exchange = new Exchange(res, { batch, streams: relay.streams, priming: false, jsonWindow: this.ctx.config.streams.jsonWindow });
      const bridge = new Server2026Bridge(
        relay,
        { capabilities: {}, clientInfo: { name: 'berth-stateless', version: '0' } },
        { answerTimeout: 0, track: () => () => {}, noServerRequests: true },
      );
      await new Promise<void>((resolve) => {
        if (res.destroyed || res.closed) return resolve();
        res.once('close', resolve);
        bridge.fromClient(messages, exchange);
      });
    } finally {
      member.inFlight--;
    }
  }

  /** A listen on 2025-era servers: the principal's pooled servers are initialized (so they announce changes), berth acknowledges. */
  private async listen2025Server(res: ServerResponse, request: JsonRpcRequest, principal: Principal): Promise<void> {
    const owner = principalKey(principal);
    let listens = this.server2025Listens.get(owner);
    if (!listens) this.server2025Listens.set(owner, (listens = new Server2025Listens({ keepAlive: this.ctx.config.streams.keepAlive })));
    const first = await this.pick(request.id, principal);
    const init = await this.bridge.initialized(first.server, request.id);
    for (const m of this.pool.members) {
      const server = m.owner === owner ? m.server : undefined;
      if (server)
        void this.bridge.initialized(server, request.id).then(
          () => listens.add(server.upstream.relay),
          () => undefined,
        );
    }
    await listens.open(res, request, (init.capabilities ?? {}) as Record<string, unknown>);
    // The last listen of a principal gone: its servers' announcements have nobody to reach.
    if (listens.size === 0 && this.server2025Listens.get(owner) === listens) this.server2025Listens.delete(owner);
  }

  /** A listen inside a runtime session on a 2025-era server: that sandbox's announcements only. */
  async listen2025ServerIn(server: Launched, res: ServerResponse, request: JsonRpcRequest, headers: Record<string, string>): Promise<void> {
    const init = await this.bridge.initialized(server, request.id);
    const relay = server.upstream.relay;
    let listens = this.sessionListens.get(relay);
    if (!listens) {
      const created = new Server2025Listens({ keepAlive: this.ctx.config.streams.keepAlive });
      created.add(relay);
      void server.sandbox.exited.then(() => created.close());
      this.sessionListens.set(relay, created);
      listens = created;
    }
    await listens.open(res, request, (init.capabilities ?? {}) as Record<string, unknown>, headers);
  }

  /** A listen reaches every member of its principal, present and future: a change may happen in any of them. */
  private async listen(res: ServerResponse, request: JsonRpcRequest, principal: Principal): Promise<void> {
    const owner = principalKey(principal);
    await this.pick(request.id, principal); // at least one member of this principal, or 503
    const fan = new ListenFanout(res, request, { keepAlive: this.ctx.config.streams.keepAlive });
    this.listens.set(fan, owner);
    for (const m of this.pool.members) {
      const relay = m.owner === owner ? m.server.upstream.relay : undefined;
      if (relay) fan.join(relay);
    }
    await fan.done;
    this.listens.delete(fan);
  }

  /**
   * A pooled server of this principal (or 503 naming the request; 429 when it holds as many as it may, all busy);
   * `exclusive` reserves one of its own (see SharedPool.pick).
   */
  private pick(id: JsonRpcId | null, principal: Principal, exclusive = false): Promise<Member> {
    return this.pool.pick(
      principalKey(principal),
      (atCap) =>
        atCap
          ? pooledServersRefusal(principal.subject, atCap, id)
          : new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: no server is ready to take the request', {
              id: id,
              headers: { 'retry-after': '1' },
            }),
      exclusive,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const fan of this.listens.keys()) fan.close('the runtime is shutting down');
    for (const listens of this.server2025Listens.values()) listens.close();
    await this.era?.catch(() => undefined);
    await this.pool.close();
  }
}
