// Stateful runtimes: initialize creates a session with its own server; every later request is routed to it.
import { header, VERSION_HEADER } from '../wire/headers.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Session } from '../session/session.js';
import { WarmPool } from '../session/pool.js';
import { SessionTable } from '../session/table.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode, idKey, isRequest, type JsonRpcMessage, type JsonRpcRequest, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { ErrorCode2026 } from '../wire/streamable-http-2026.js';
import { bridgeInitialize, Server2026Bridge } from '../bridge/server-2026.js';
import { sessionOpening } from '../relay/exchange.js';
import { checkBatchAllowed, checkGetHeaders, sessionIdOf } from '../wire/streamable-http.js';
import { principalKey, type Principal } from '../security/auth.js';
import { HostedRuntime, type Post2025Call, type RuntimeOptions } from './hosted-runtime.js';

/** The first revision whose clients expect a priming event (an id with empty data) at the start of each stream. */
const PRIMING_VERSION = '2025-11-25';
const REFILL_DELAY_MS = 250;

export class StatefulRuntime extends HostedRuntime {
  readonly sessions = new Map<string, Session>();
  private readonly pool: WarmPool;
  /** Caps, start failures, audit and metrics of this runtime's protocol sessions. */
  private readonly table: SessionTable;

  constructor(opts: RuntimeOptions) {
    super(opts);
    this.pool = new WarmPool(this.launchCtx, opts.config.warmPool, this.log, this.starts);
    this.table = new SessionTable({ runtime: this.name, config: this.config, log: this.log, metrics: opts.metrics, kind: 'protocol' });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get sessionPlaces(): number {
    return this.table.places;
  }

  get protocolSessionList(): Session[] {
    return [...this.sessions.values()];
  }

  get warmServers(): number {
    return this.pool.available;
  }

  get pendingServerRequests(): number {
    let n = 0;
    for (const s of this.sessions.values()) {
      n += s.server.upstream.pendingServerRequests ?? 0;
      n += s.bridge?.pending ?? 0; // bridge B: a 2026 server's input requests put to this 2025 client
    }
    return n;
  }

  get callsInFlight(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.inFlight;
    return n;
  }

  async start(): Promise<void> {
    this.pool.fill();
    this.clients2026.start();
  }

  /** The caller's session; another principal's session answers exactly as an unknown one, so ids cannot be probed. */
  private lookup(req: IncomingMessage, principal: Principal): Session {
    const sid = sessionIdOf(req);
    if (sid === undefined || sid === '') {
      throw new HttpError(
        400,
        ErrorCode.ServerError,
        'Bad Request: Mcp-Session-Id header is required (send initialize first to create a session)',
      );
    }
    const s = this.sessions.get(sid);
    if (!s || !s.live || s.principalKey !== principalKey(principal))
      throw new HttpError(404, ErrorCode.SessionNotFound, 'Session not found: it is unknown, ended or expired; initialize a new session');
    return s;
  }

  async post2025(req: IncomingMessage, res: ServerResponse, ctx: Post2025Call): Promise<void> {
    const { messages, batch } = ctx.parsed;
    const init = messages.find((m) => isRequest(m) && m.method === 'initialize');
    if (init) return this.initialize(req, res, ctx, init);
    const session = this.lookup(req, ctx.principal);
    session.touch();
    // Without MCP-Protocol-Version the spec assumes 2025-03-26 only when nothing else says the version; a session
    // knows the one it negotiated (so a 2025-06-18 session's headerless batch is refused, as with the header).
    const version = header(req, VERSION_HEADER) === undefined ? (session.protocolVersion ?? ctx.version) : ctx.version;
    checkBatchAllowed(ctx.parsed, version);
    await session.upstream.post2025(req, res, {
      messages,
      batch,
      body: ctx.body,
      sessionId: session.id,
      priming: version >= PRIMING_VERSION,
      jsonWindow: this.config.streams.jsonWindow,
      via: session.bridge,
      // The upstream forgot its session (it restarted): this session cannot go on; its id now answers 404.
      onStatus: (status) => status === 404 && void session.end('crashed', 'the server lost its session (it answered 404)'),
    });
  }

  private async initialize(req: IncomingMessage, res: ServerResponse, ctx: Post2025Call, init: JsonRpcMessage): Promise<void> {
    if (ctx.parsed.messages.length > 1) {
      throw new HttpError(400, ErrorCode.InvalidRequest, 'Invalid Request: initialize must be the only message in its request');
    }
    if (sessionIdOf(req) !== undefined) {
      throw new HttpError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: initialize must not carry an Mcp-Session-Id; it creates a new session',
      );
    }
    if (this.draining)
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', { headers: { 'retry-after': '5' } });
    const t0 = performance.now();
    const warm = this.pool.available > 0 ? 'yes' : 'no';
    // Refill the pool a little after this initialize is answered (or failed): starting a server costs a burst of
    // CPU that would otherwise land on the new session's first calls.
    res.once('close', () => setTimeout(() => this.pool.fill(), REFILL_DELAY_MS).unref());
    // A client that leaves while its server waits for a start slot gives its place up (aborting only then: an
    // abort costs an exception object, and a burst of initializes would pay for one each).
    const left = new AbortController();
    let waiting = true;
    res.once('close', () => waiting && left.abort());
    const take = () => this.pool.take({ waitMs: this.config.limits.startQueueTimeout, signal: left.signal });
    const session = await this.table.open(ctx.principal, (init as JsonRpcRequest).id, take).finally(() => (waiting = false));
    const server = session.server;
    this.sessions.set(session.id, session);
    session.once('ended', (reason, detail) => {
      this.sessions.delete(session.id);
      this.emit('session:ended', session, reason, detail);
    });
    const created = () => {
      this.table.created(session, { t0, warm });
      this.emit('session:created', session);
    };
    const request = init as JsonRpcRequest;
    const answered = (a: { protocolVersion?: unknown; error?: string }) => {
      if (a.error !== undefined) return void session.end('init-failed', a.error);
      if (typeof a.protocolVersion === 'string') session.protocolVersion = a.protocolVersion;
      created();
    };
    // A 2026-era server serves a 2025 session through bridge B: berth answers initialize from its server/discover
    // and speaks to it message by message (its conversation: over stdio the relay itself, over HTTP a session of berth's own).
    const bridged = async (): Promise<JsonRpcResponse> => {
      const relay = server.upstream.relay;
      const r = await bridgeInitialize(relay, request);
      if (r.error || !session.live) return r;
      const p = request.params ?? {};
      const bridge = new Server2026Bridge(
        relay,
        { capabilities: p.capabilities, clientInfo: p.clientInfo },
        { answerTimeout: this.config.limits.serverRequestTimeout, track: () => session.beginRequest() },
      );
      session.bridge = bridge;
      session.once('ended', () => bridge.close());
      bridge.listen((r.result as { capabilities?: Record<string, unknown> }).capabilities ?? {});
      return r;
    };
    if (this.config.serverEra === '2026') {
      // Answered by berth from the server's server/discover, as the server would answer it.
      const exchange = sessionOpening(res, {
        sessionId: session.id,
        streams: server.upstream.relay.streams,
        answered: (m) =>
          answered(m.error ? { error: `the server answered initialize with an error: ${m.error.message}` } : (m.result ?? {})),
      });
      exchange.expect(`c:${idKey(request.id)}`);
      void bridged().then((r) => exchange.respond(`c:${idKey(request.id)}`, r));
      return;
    }
    // Under serverEra auto a 2026-era server refuses the 2025 initialize (-32022): bridge B answers instead.
    const onError =
      this.config.serverEra === 'auto'
        ? async (m: JsonRpcResponse) =>
            m.error?.code === ErrorCode2026.UnsupportedProtocolVersion ? bridged().then((r) => (r.error ? m : r)) : m
        : undefined;
    await server.upstream
      .open2025(req, res, {
        init: request,
        body: ctx.body,
        sessionId: session.id,
        answered: (a) => answered(a.error === undefined ? a : { error: `the server answered initialize with an error: ${a.error}` }),
        onError,
      })
      .catch((e: Error) => {
        void session.end('init-failed', e.message);
        throw e;
      });
  }

  async get(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void> {
    checkGetHeaders(req);
    const session = this.lookup(req, principal);
    session.touch();
    await session.upstream.get2025(req, res, { sessionId: session.id, priming: (session.protocolVersion ?? '') >= PRIMING_VERSION });
  }

  protected async deleteSession(req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void> {
    const session = this.lookup(req, principal);
    await session.end('deleted'); // for http upstreams this also DELETEs the upstream session
    res.writeHead(204).end();
  }

  protected get busy(): boolean {
    return [...this.sessions.values()].some((s) => s.inFlight > 0);
  }

  async close(): Promise<void> {
    this.draining = true;
    await Promise.all([...this.sessions.values()].map((s) => s.end('shutdown')));
    await this.pool.close();
    await this.closeClients2026();
  }
}
