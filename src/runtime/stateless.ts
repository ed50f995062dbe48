// Stateless runtimes: no session id, nothing server-initiated. Requests are spread over a pool of servers
// that berth started and initialized ahead of time. A server may still keep what it was told, so each serves one
// principal only (see SharedPool): the pool holds `warmPool` fresh servers plus the ones principals have claimed.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dispose, launch, withinStartup, type Launched } from '../session/launch.js';
import { perPrincipalCap, pooledServersRefusal, SharedPool, type PoolMember } from '../session/shared-pool.js';
import { HttpError, sendJson } from '../wire/http-error.js';
import { ErrorCode, isRequest, type JsonRpcRequest } from '../wire/jsonrpc.js';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '../wire/streamable-http.js';
import { ErrorCode2026 } from '../wire/streamable-http-2026.js';
import { HostedRuntime, type Post2025Call, type RuntimeOptions } from './hosted-runtime.js';
import { principalKey, type Principal } from '../security/auth.js';
import type { Session } from '../session/session.js';

const BERTH_CLIENT_INFO = { name: 'berth', version: '0.1.0' };

/** A pooled server and the initialize result berth got from it. */
type Member = PoolMember<Record<string, unknown>>;

export class StatelessRuntime extends HostedRuntime {
  private readonly pool: SharedPool<Record<string, unknown>>;
  /** The server refused initialize as a 2026-07-28 server: 2025 clients are bridged through the 2026 clients' pool. */
  private server2026Only = false;

  constructor(opts: RuntimeOptions) {
    super(opts);
    this.pool = new SharedPool({
      size: Math.max(1, opts.config.warmPool.min),
      // Claimed servers count as sessions would: one principal's server is never another's.
      max: Math.max(1, opts.config.warmPool.min, opts.config.limits.maxSessions),
      maxPerOwner: perPrincipalCap(opts.config.limits.maxSessionsPerPrincipal),
      startupTimeout: opts.config.limits.startupTimeout,
      stopGrace: opts.config.limits.stopGrace,
      ownerIdle: opts.config.idleTimeout,
      log: this.log,
      start: () => this.starts.run(() => this.startMember(), { refill: true }),
      onStartError: (err: Error & { server2026?: boolean }) => {
        if (!err.server2026) return 'retry';
        // A 2026-era server never takes initialize: asking again would only repeat the refusal.
        if (!this.server2026Only) this.log.info('the server speaks 2026-07-28 only: 2025 clients are served through the bridge');
        this.server2026Only = true;
        return 'stop';
      },
      onExit: (m) => m.server.upstream.fail(ErrorCode.SessionEnded, 'the server process exited'),
    });
  }

  get sessionCount(): number {
    return 0;
  }

  get sessionPlaces(): number {
    return 0;
  }

  get protocolSessionList(): Session[] {
    return [];
  }

  get warmServers(): number {
    return this.pool.members.length;
  }

  get pendingServerRequests(): number {
    return 0; // a stateless server's requests to the client are refused at once
  }

  get callsInFlight(): number {
    return this.pool.members.reduce((n, m) => n + m.inFlight, 0);
  }

  async start(): Promise<void> {
    this.server2026Only = this.config.serverEra === '2026';
    if (!this.server2026Only) this.pool.fill();
    this.clients2026.start();
  }

  /** Starts one server and initializes it as berth, so client requests can go straight to it. */
  private async startMember(): Promise<{ server: Launched; info: Record<string, unknown> }> {
    const server = await launch(this.launchCtx);
    try {
      await server.ready;
      // Declares the client capabilities so the server does ask; the relay then answers with a clear
      // "this runtime is stateless" error instead of the server failing with a vaguer one.
      const capabilities = { elicitation: { form: {}, url: {} }, sampling: {}, roots: {} };
      const params = { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities, clientInfo: BERTH_CLIENT_INFO };
      const startupTimeout = this.config.limits.startupTimeout;
      const r = await withinStartup(
        server.sandbox,
        startupTimeout,
        server.upstream.initialize(params),
        'the server did not answer initialize',
      );
      if (r.error)
        throw Object.assign(new Error(`initialize failed: ${r.error.message}`), {
          server2026: r.error.code === ErrorCode2026.UnsupportedProtocolVersion,
        });
      return { server, info: r.result ?? {} };
    } catch (e) {
      await dispose(server, 0);
      throw e;
    }
  }

  private pick(principal: Principal): Promise<Member> {
    return this.pool.pick(principalKey(principal), (atCap) =>
      atCap
        ? pooledServersRefusal(principal.subject, atCap, null)
        : this.server2026Only
          ? new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: the server turned out to speak 2026-07-28 only; retry', {
              headers: { 'retry-after': '0' },
            })
          : new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: no server is ready to take the request', {
              headers: { 'retry-after': '1' },
            }),
    );
  }

  async post2025(req: IncomingMessage, res: ServerResponse, ctx: Post2025Call): Promise<void> {
    if (this.draining)
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', { headers: { 'retry-after': '5' } });
    const { messages, batch } = ctx.parsed;
    const principal = ctx.principal;
    // Until a server has started, its era is unknown: a 2026-only one refuses initialize and is bridged from then on.
    if (!this.server2026Only && this.pool.members.length === 0)
      await this.pick(principal).catch((e: Error) => {
        if (!this.server2026Only) throw e;
      });
    if (this.server2026Only) return this.clients2026.serve2025ClientsStateless(res, messages, batch, principal);
    const init = messages.find((m) => isRequest(m) && m.method === 'initialize') as JsonRpcRequest | undefined;
    if (init) {
      if (messages.length > 1)
        throw new HttpError(400, ErrorCode.InvalidRequest, 'Invalid Request: initialize must be the only message in its request');
      const member = await this.pick(principal);
      // Never claim more than the pooled server speaks: the client's version if the server has it, else the server's.
      const requested = init.params?.protocolVersion;
      const serverVersion = String(member.info.protocolVersion ?? LATEST_PROTOCOL_VERSION);
      const protocolVersion =
        typeof requested === 'string' &&
        (SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(requested) &&
        requested <= serverVersion
          ? requested
          : serverVersion;
      // Answered by berth from the pool's own handshake: there is no session to create.
      sendJson(res, 200, { jsonrpc: '2.0', id: init.id, result: { ...member.info, protocolVersion } });
      return;
    }
    if (!messages.some(isRequest)) {
      // Notifications (initialized, cancelled) and responses have nowhere to go without a session.
      res.writeHead(202).end();
      return;
    }
    const member = await this.pick(principal);
    member.inFlight++;
    try {
      // No session id, no priming: without a session there is no stream to resume.
      const { jsonWindow } = this.config.streams;
      await member.server.upstream.post2025(req, res, { messages, batch, body: ctx.body, priming: false, jsonWindow, untilClosed: true });
    } finally {
      member.inFlight--;
    }
  }

  async get(): Promise<void> {
    throw new HttpError(405, ErrorCode.ServerError, 'Method Not Allowed: this runtime is stateless and has no GET stream', {
      headers: { allow: 'POST' },
    });
  }

  protected async deleteSession(): Promise<void> {
    throw new HttpError(405, ErrorCode.ServerError, 'Method Not Allowed: this runtime is stateless and has no sessions to delete', {
      headers: { allow: 'POST' },
    });
  }

  protected get busy(): boolean {
    return this.pool.members.some((m) => m.inFlight > 0);
  }

  async close(): Promise<void> {
    await this.pool.close();
    await this.closeClients2026();
  }
}
