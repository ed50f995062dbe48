// A server spoken to message by message, as an Upstream: its messages go through the relay, which rewrites ids and
// routes every server message to the stream it belongs on (message-relay.ts). A stdio server is always reached this
// way; an HTTP server is when berth holds the session with it itself (bridge B: HttpUpstream.conversation).
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { header, LAST_EVENT_ID_HEADER, SESSION_HEADER } from '../wire/headers.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode, isRequest, type JsonRpcId, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { relayClient2026 } from './client-2026-exchange.js';
import { Exchange, sessionOpening } from './exchange.js';
import type { MessageRelay } from './message-relay.js';
import type { Open2025Options, Post2025Options, Request2026Options, Upstream, UpstreamEvents } from './upstream.js';

/** What the relay's channel tells besides messages: a stdio pipe knows whether the server overflowed it, or stopped reading. */
export interface ChannelState {
  readonly overflowed?: string | undefined;
  readonly backlogged?: string | undefined;
  on(event: 'message', listener: () => void): unknown;
}

export class RelayUpstream extends EventEmitter<UpstreamEvents> implements Upstream {
  constructor(
    readonly relay: MessageRelay,
    private readonly channel: ChannelState,
  ) {
    super();
    relay.on('busy', (busy) => this.emit('busy', busy));
    channel.on('message', () => this.emit('traffic'));
  }

  /** Already spoken to message by message. */
  get conversation(): Upstream {
    return this;
  }

  call(method: string, params?: Record<string, unknown>): Promise<JsonRpcResponse> {
    return this.relay.call(method, params);
  }

  async initialize(
    params: Record<string, unknown>,
  ): Promise<{ result?: Record<string, unknown>; error?: { code: number; message: string } }> {
    const r = await this.relay.call('initialize', params);
    if (!r.error) this.relay.notify('notifications/initialized');
    return { result: r.result as Record<string, unknown> | undefined, error: r.error };
  }

  async open2025(_req: IncomingMessage, res: ServerResponse, o: Open2025Options): Promise<void> {
    const exchange = sessionOpening(res, {
      sessionId: o.sessionId,
      streams: this.relay.streams,
      onError: o.onError,
      answered: (m) =>
        o.answered(m.error ? { error: m.error.message } : { protocolVersion: (m.result as { protocolVersion?: unknown }).protocolVersion }),
    });
    this.relay.fromClient([o.init], exchange);
  }

  async post2025(_req: IncomingMessage, res: ServerResponse, o: Post2025Options): Promise<void> {
    this.checkBacklog(o.messages.length === 1 && isRequest(o.messages[0]!) ? o.messages[0].id : null);
    const exchange = new Exchange(res, { batch: o.batch, streams: this.relay.streams, priming: o.priming, jsonWindow: o.jsonWindow });
    if (!o.messages.some(isRequest)) {
      (o.via ?? this.relay).fromClient(o.messages, exchange);
      res.writeHead(202).end();
      return;
    }
    await new Promise<void>((resolve) => {
      if (res.destroyed || res.closed) return resolve(); // the client left while berth found a server
      if (o.untilClosed) res.once('close', resolve);
      (o.via ?? this.relay).fromClient(o.messages, exchange);
      if (!o.untilClosed) resolve();
    });
  }

  async get2025(req: IncomingMessage, res: ServerResponse, o: { sessionId: string; priming: boolean }): Promise<void> {
    const headers = { [SESSION_HEADER]: o.sessionId };
    const lastEventId = header(req, LAST_EVENT_ID_HEADER);
    if (typeof lastEventId === 'string') this.relay.resume(res, lastEventId, headers);
    else this.relay.openGet(res, headers, o.priming);
  }

  async request2026(_req: IncomingMessage, res: ServerResponse, o: Request2026Options): Promise<void> {
    this.checkBacklog(o.request.id);
    return relayClient2026(this.relay, res, o.request, o);
  }

  /** Refuses a client's messages while the server leaves too many earlier ones unread (limits.inputBacklog). */
  private checkBacklog(id: JsonRpcId | null): void {
    const why = this.channel.backlogged;
    if (why) throw new HttpError(503, ErrorCode.ServerError, `Service Unavailable: ${why}`, { id, headers: { 'retry-after': '1' } });
  }

  get inFlight(): number {
    return this.relay.inFlightCount;
  }

  get pendingServerRequests(): number {
    return this.relay.pendingServerRequests;
  }

  get retainedEvents(): number {
    return this.relay.streams.retainedEvents;
  }

  get overflowed(): string | undefined {
    return this.channel.overflowed;
  }

  fail(code: number, message: string): void {
    this.relay.close(code, message);
  }

  /** What the relay keeps (its events, counted in server.retainBudget) goes with it, session or not. */
  async close(): Promise<void> {
    this.relay.close(ErrorCode.SessionEnded, 'the server was stopped');
  }
}
