// Serving 2026-07-28 ("modern") requests to a server of that era: each request stands alone, relayed with its id
// rewritten through the server's StdioRelay, answered as JSON or as an SSE stream without event ids or priming
// (nothing is resumable in this revision), and closing that stream cancels the request at the server.
// Without a runtime session, requests go to a warm pool of servers shared statelessly. A 2025-era server is
// served through the bridge (src/bridge/legacy-server.ts).
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Exchange } from '../relay/exchange.js';
import type { StdioRelay } from '../relay/stdio-relay.js';
import type { StreamLog } from '../relay/stream-log.js';
import { dispose, launchReady, withinStartup, type LaunchContext, type Launched } from '../session/launch.js';
import { META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, MODERN_VERSIONS, WireError } from '../wire/era.js';
import { sendJson } from '../wire/http-error.js';
import { ErrorCode, isRequest, type JsonRpcId, type JsonRpcMessage, type JsonRpcRequest, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { KEEP_ALIVE, sseHeaders } from '../wire/sse.js';
import { ModernErrorCode } from '../wire/streamable-http-2026.js';
import type { PostContext } from './base.js';
import { LegacyBridge } from '../bridge/legacy-server.js';
import { principalKey } from '../security/auth.js';

export type ServerEra = 'auto' | '2025' | '2026';
type StdioServer = Launched & { kind: 'stdio' };

/**
 * One modern request's response. It extends Exchange only so the relay can hold it: nothing of the 2025
 * machinery (stream log, event ids, priming, resumption) is used.
 */
export class ModernExchange extends Exchange {
  private streaming = false;
  private ended = false;
  private abandoned = false;
  private window: NodeJS.Timeout | undefined;
  private pulse: NodeJS.Timeout | undefined;
  /** Called once when the client closes the response before its result: the request is cancelled. */
  onAbandon: (() => void) | undefined;

  constructor(
    private readonly out: ServerResponse,
    private readonly clientId: JsonRpcId,
    streams: StreamLog,
    private readonly o: { jsonWindow: number; keepAlive: number; headers: Record<string, string> },
  ) {
    super(out, { batch: false, streams, priming: false, jsonWindow: o.jsonWindow, headers: o.headers });
    out.on('close', () => {
      if (this.ended) return;
      this.abandoned = true;
      this.stop();
      this.onAbandon?.();
    });
  }

  override get reachable(): boolean {
    return !this.ended && !this.abandoned && !this.out.destroyed;
  }

  override get live(): boolean {
    return this.reachable;
  }

  override expect(): void {
    if (this.o.jsonWindow === 0) this.startStream();
    else {
      this.window = setTimeout(() => this.reachable && this.startStream(), this.o.jsonWindow);
      this.window.unref();
    }
  }

  /** Notifications of this request (progress, its log messages). A 2026 server sends no requests: refused. */
  override deliver(message: JsonRpcMessage): boolean {
    if (!this.reachable || isRequest(message)) return false;
    this.startStream();
    this.out.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
    return true;
  }

  override respond(_key: string, message: JsonRpcResponse): boolean {
    if (this.ended) return false;
    const delivered = this.reachable;
    this.ended = true;
    this.stop();
    if (!delivered) return false;
    const answer = { ...message, id: this.clientId };
    if (!this.streaming) sendJson(this.out, 200, answer, this.o.headers);
    else this.out.end(`event: message\ndata: ${JSON.stringify(answer)}\n\n`);
    return true;
  }

  private startStream(): void {
    if (this.streaming || this.out.headersSent) return;
    this.streaming = true;
    clearTimeout(this.window);
    this.out.writeHead(200, sseHeaders(this.o.headers));
    this.out.flushHeaders();
    if (this.o.keepAlive > 0) {
      this.pulse = setInterval(() => this.out.write(KEEP_ALIVE), this.o.keepAlive);
      this.pulse.unref();
    }
  }

  private stop(): void {
    clearTimeout(this.window);
    clearInterval(this.pulse);
  }
}

let nextId = 0;
/** How long a bridged call waits for the client's retry: 15 min (BERTH_MRTR_PENDING_MS shortens it for tests). */
const PENDING_TIMEOUT = Number(process.env.BERTH_MRTR_PENDING_MS) || 15 * 60_000;

/**
 * Relays one modern request to a server and resolves when its response has closed. The relay keys ids per
 * server, and pooled servers are shared by unrelated clients, so every request gets a berth-wide id first.
 */
export function relayModern(relay: StdioRelay, res: ServerResponse, request: JsonRpcRequest, o: { jsonWindow: number; keepAlive: number; headers?: Record<string, string> }): Promise<void> {
  const id = `berth-m${++nextId}`;
  const exchange = new ModernExchange(res, request.id, relay.streams, { ...o, headers: o.headers ?? {} });
  exchange.onAbandon = () =>
    relay.fromClient([{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'the client closed the response stream' } }], exchange);
  return new Promise((resolve) => {
    if (res.destroyed || res.closed) return resolve(); // the client left while berth found a server: nothing to cancel
    res.once('close', resolve);
    relay.fromClient([{ ...request, id }], exchange);
  });
}

/** Launch context for modern servers: the relay keys ids per server (berth makes them unique), never per stream. */
export function modernLaunchContext(ctx: LaunchContext): LaunchContext {
  return { ...ctx, config: { ...ctx.config, mode: 'stateful' } };
}

interface Member {
  server: StdioServer;
  inFlight: number;
}

/** Answers whether a started server speaks 2026-07-28: a DiscoverResult naming it, or the modern -32022. */
async function speaksModern(server: StdioServer, timeoutMs: number): Promise<boolean> {
  const envelope = { [META_PROTOCOL_VERSION]: MODERN_VERSIONS[0], [META_CLIENT_CAPABILITIES]: {} };
  try {
    const r = await withinStartup(server.sandbox, timeoutMs, server.relay.call('server/discover', { _meta: envelope }), 'the server did not answer server/discover');
    const versions = (r.result as { supportedVersions?: unknown } | undefined)?.supportedVersions;
    if (Array.isArray(versions)) return versions.includes(MODERN_VERSIONS[0]);
    return r.error?.code === ModernErrorCode.UnsupportedProtocolVersion;
  } catch {
    return false; // a timeout or an exit: a legacy server that does not take requests before initialize
  }
}

/** A server started for modern requests, once it is warm (disposed when it cannot get there). */
async function startReady(ctx: LaunchContext): Promise<StdioServer> {
  return (await launchReady(modernLaunchContext(ctx))) as StdioServer;
}

/** The servers that answer modern requests without a runtime session: shared, least busy first. */
export class ModernPool {
  private readonly members: Member[] = [];
  private starting = 0;
  private closed = false;
  private readonly size: number;
  private readonly launches = new Set<Promise<unknown>>();
  private readonly waiters: Array<() => void> = [];
  private era: Promise<'modern' | 'legacy'> | undefined;

  constructor(
    private readonly ctx: LaunchContext,
    private readonly serverEra: ServerEra,
    private readonly log: Logger,
  ) {
    this.size = Math.max(1, ctx.config.warmPool);
    if (serverEra === '2025') this.era = Promise.resolve('legacy');
    if (serverEra === '2026') this.era = Promise.resolve('modern');
    const { jsonWindow, keepAlive } = ctx.config.streams;
    this.bridge = new LegacyBridge({ runtime: ctx.runtimeName, jsonWindow, keepAlive, startupTimeout: ctx.config.limits.startupTimeout, gatherWindow: 25, pendingTimeout: PENDING_TIMEOUT, requestState: ctx.requestState });
  }

  /** Modern requests to a 2025-era server, with or without a runtime session. */
  readonly bridge: LegacyBridge;

  get busy(): boolean {
    return this.members.some((m) => m.inFlight > 0) || this.bridge.size > 0;
  }

  /** A runtime whose server is known to be modern keeps its pool warm from the start. */
  start(): void {
    if (this.serverEra === '2026' && this.ctx.config.upstream === 'stdio') this.fill();
  }

  /** The hosted server's era: configured, or learned from the first pooled server (auto). */
  serverEraOf(): Promise<'modern' | 'legacy'> {
    if (!this.era) {
      const probing = this.probe();
      this.era = probing;
      // A server that could not start says nothing of its era: the next request asks again.
      probing.catch(() => {
        if (this.era === probing) this.era = undefined;
      });
    }
    return this.era;
  }

  private async probe(): Promise<'modern' | 'legacy'> {
    const server = await startReady(this.ctx);
    const modern = await speaksModern(server, this.ctx.config.limits.startupTimeout);
    this.log.info({ era: modern ? '2026' : '2025' }, 'hosted server era (server/discover)');
    if (this.closed) {
      void dispose(server, 0);
      return modern ? 'modern' : 'legacy';
    }
    // Either era is kept: a 2025-era server answers modern clients through the bridge.
    this.adopt(server);
    this.fill();
    return modern ? 'modern' : 'legacy';
  }

  /** Refuses a modern request this runtime cannot serve (an http upstream); the server's era otherwise. */
  async requireModern(ctx: PostContext): Promise<'modern' | 'legacy'> {
    const request = ctx.parsed.messages[0] as JsonRpcRequest;
    if (this.ctx.config.upstream !== 'stdio') {
      throw new WireError(501, ErrorCode.MethodNotFound, 'Not Implemented: 2026-07-28 requests to an http upstream are not served yet', request.id);
    }
    const era = await this.serverEraOf().catch((e: Error) => {
      throw new WireError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server could not be started: ${e.message}`, request.id);
    });
    return era;
  }

  async serve(res: ServerResponse, ctx: PostContext): Promise<void> {
    const request = ctx.parsed.messages[0] as JsonRpcRequest;
    if ((await this.requireModern(ctx)) === 'legacy') {
      // A retry finds its suspended call through its requestState, whichever member holds it.
      const caller = { rs: 'pool', principalKey: principalKey(ctx.principal), clientCapabilities: ctx.wire.clientCapabilities ?? {}, headers: {} };
      return this.bridge.serve(res, request, caller, async () => (await this.pick(request.id)).server);
    }
    const member = await this.pick(request.id);
    member.inFlight++;
    try {
      const { jsonWindow, keepAlive } = this.ctx.config.streams;
      await relayModern(member.server.relay, res, request, { jsonWindow, keepAlive });
    } finally {
      member.inFlight--;
    }
  }

  private adopt(server: StdioServer): void {
    const m: Member = { server, inFlight: 0 };
    this.members.push(m);
    void server.sandbox.exited.then(() => {
      const i = this.members.indexOf(m);
      if (i >= 0) this.members.splice(i, 1);
      server.relay.close(ErrorCode.SessionEnded, 'the server process exited');
      void dispose(server, 0);
      setTimeout(() => this.fill(), 100).unref();
    });
    for (const w of this.waiters.splice(0)) w();
  }

  private fill(): void {
    while (!this.closed && this.members.length + this.starting < this.size) {
      this.starting++;
      const p = startReady(this.ctx).then(
        (l) => {
          this.starting--;
          if (this.closed) return dispose(l, 0);
          this.adopt(l);
        },
        (err: Error) => {
          this.starting--;
          this.log.error({ err: err.message }, 'modern server failed to start');
          if (!this.closed) setTimeout(() => this.fill(), 1000).unref();
        },
      );
      this.launches.add(p);
      void p.finally(() => this.launches.delete(p));
    }
  }

  private async pick(id: JsonRpcId): Promise<Member> {
    const deadline = Date.now() + this.ctx.config.limits.startupTimeout;
    while (this.members.length === 0) {
      if (this.closed || Date.now() > deadline) throw new WireError(503, ErrorCode.ServerError, 'Service Unavailable: no server is ready to take the request', id, undefined, { 'retry-after': '1' });
      this.fill();
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200).unref();
      });
    }
    return this.members.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.era?.catch(() => undefined);
    await Promise.allSettled([...this.launches]);
    await Promise.all(this.members.splice(0).map((m) => dispose(m.server, this.ctx.config.limits.stopGrace)));
  }
}
