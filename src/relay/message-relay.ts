// Relays one MCP server, spoken to message by message over a channel (its stdio, or a Streamable HTTP session berth
// holds with it), to HTTP clients: rewrites client request ids (so concurrent POSTs never collide), and routes every
// server message to the stream it belongs on.
//
// Routing rules (the server's stdio gives no "related request" hint, so berth infers it):
//   response              -> the POST that carried the request
//   notifications/progress-> the POST whose request carries that progressToken
//   server request        -> none of the calls when it belongs to none (below): the GET stream, kept until one
//                            opens, or berth answers it (onUnownedRequest: a 2026 client has no GET stream);
//                            else the oldest in-flight POST with an open connection (so a client without a GET
//                            stream still sees an elicitation during a tool call); else the open GET stream;
//                            else a POST stream the client can resume; else the GET stream, kept until one opens
//   notifications/message -> the POST of the only request in flight, else the GET stream
//   other notifications   -> the GET stream (kept for it while none is open)
// Every stream is resumable (stream-log.ts): what a dropped connection missed is replayed on GET + Last-Event-ID.
//
// A server request belongs to no call when no call is in flight, or when it is a roots/list or ping that comes
// before the server answers the ping berth sends right after `notifications/initialized`: that is what servers ask
// on their own at start-up. An elicitation or sampling request in that window still goes to the call in flight: a
// server that reads the ping and a tools/call in one chunk may run the tool (and ask) before it writes the ping's
// answer. Past that, stdio cannot say which call a request belongs to: one a server sends on its own (a timer)
// while calls are in flight still goes to the oldest of them.
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import {
  ErrorCode,
  errorResponse,
  idKey,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../wire/jsonrpc.js';
import type { CallSink } from './sink.js';
import { META_SUBSCRIPTION_ID } from '../wire/era.js';
import { withId } from '../wire/raw-json.js';
import type { MessageChannel } from './channel.js';
import { DropTally } from '../util/tally.js';
import { RETENTION_SETTINGS, type RetentionBudget, type SseStream, StreamLog, type StreamOptions } from './stream-log.js';

/** Server requests that, asked during the handshake fence, are taken as the server's own start-up questions. */
const UNPROMPTED = new Set(['roots/list', 'ping']);

/** The MCP SDKs' RequestTimeout code. */
const REQUEST_TIMEOUT = -32001;

interface InFlight {
  clientId: JsonRpcId;
  method: string;
  exchange: CallSink;
  progressToken?: number;
  startedAt: number;
  timer?: NodeJS.Timeout;
}

type Target = CallSink | 'get';

export interface RelayOptions {
  /** Stateless runtimes have no GET stream and answer server->client requests with an error. */
  stateless: boolean;
  streams: StreamOptions;
  /** A call with no answer or progress for this long fails (0: never); paused while the server waits on the client. */
  requestTimeout: number;
  /** A server->client request unanswered this long fails for the server (0: never). */
  serverRequestTimeout: number;
  /** What every session's retained events may take together (server.retainBudget). */
  retention?: RetentionBudget;
}

/**
 * Why a server message was dropped (berth_stream_dropped_total's reason): displaced from retention before any client
 * stream carried it; a stateless runtime with no stream for a notification; progress for a call whose client is
 * gone; an answer to a request no longer in flight (cancelled, timed out, or never sent).
 */
export type DropReason = 'retention' | 'no_stream' | 'client_gone' | 'not_in_flight';

/** Where a relay's (and its channel's) log lines go: the session's logger, by level. */
export type RelayLog = (...line: RelayEvents['log']) => void;

export interface RelayEvents {
  /** In-flight client request count went from 0 to 1 (busy) or back to 0 (quiet). */
  busy: [boolean];
  log: [level: 'debug' | 'info' | 'warn', msg: string, extra?: Record<string, unknown>];
  /** The client answered a server request after `ms`. */
  answered: [method: string, ms: number];
  /** One server message dropped (counted per message; the log says so at most once per DROP_LOG_INTERVAL). */
  dropped: [reason: DropReason];
}

export class MessageRelay extends EventEmitter<RelayEvents> {
  private nextId = 1;
  private readonly inflight = new Map<number, InFlight>();
  /** How many of `inflight` are subscriptions/listen. */
  private listens = 0;
  private readonly byClientId = new Map<string, number>();
  /** Internal progress token -> where its notifications go, and the client's own token. */
  private readonly progress = new Map<number, { exchange: CallSink; token: string | number }>();
  private readonly serverRequests = new Map<string, { method: string; target: Target; timer?: NodeJS.Timeout; at: number }>();
  private readonly internal = new Map<string, (r: JsonRpcResponse) => void>();
  /** This session's SSE streams and the events kept for replay. */
  readonly streams: StreamLog;
  /** Sees a server notification that belongs to no call before the GET stream does; true consumes it. */
  onUnrouted: ((m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }) => boolean) | undefined;
  /** Answers a server request that belongs to no call, instead of the GET stream (berth as the server's client). */
  onUnownedRequest: ((m: JsonRpcRequest) => JsonRpcResponse) | undefined;
  /** Pending while the server has not answered the ping that follows notifications/initialized. */
  private handshake: Promise<void> | undefined;
  private settling = 0;
  /** The standalone (GET) stream: one logical stream for the session's life, carried by whichever GET is open. */
  private standalone: SseStream | undefined;
  private closed: { code: number; message: string } | undefined;
  /**
   * What a server (or a client) can cause once per message it sends, counted and said at most once per
   * DROP_LOG_INTERVAL each (util/tally.ts), never a log line per message.
   */
  private readonly tallies: Record<DropReason | 'unexpected_answer', DropTally> = {
    retention: this.tally(
      'warn',
      ['server message', 'server messages'],
      `dropped: no client stream carried them before newer messages displaced them (${RETENTION_SETTINGS})`,
    ),
    no_stream: this.tally(
      'debug',
      ['server notification', 'server notifications'],
      'dropped: a stateless runtime has no client stream for them',
    ),
    client_gone: this.tally('debug', ['progress notification', 'progress notifications'], "dropped: their request's client is gone"),
    not_in_flight: this.tally('debug', ['server answer', 'server answers'], 'dropped: their request is no longer in flight'),
    unexpected_answer: this.tally('warn', ['client answer', 'client answers'], 'ignored: they answer no pending server request'),
  };

  constructor(
    private readonly channel: MessageChannel,
    private readonly opts: RelayOptions,
  ) {
    super();
    this.streams = new StreamLog(
      opts.streams,
      !opts.stateless,
      // What no onLost of the relay's covers: a call's response whose client did not come back for it.
      () => this.drop('retention', 'response'),
      opts.retention,
    );
    channel.on('message', (m) => this.fromServer(m));
  }

  /** Calls in flight; a listen is not one (it stays open as long as the client wants, and must not keep a session from idling). */
  get inFlightCount(): number {
    return this.inflight.size - this.listens;
  }

  get pendingServerRequests(): number {
    return this.serverRequests.size;
  }

  /** Sends a request of berth's own (readiness ping, stateless initialize) and awaits its answer. */
  call(method: string, params?: Record<string, unknown>): Promise<JsonRpcResponse> {
    const id = `berth:${this.nextId++}`;
    return new Promise((resolve) => {
      this.internal.set(idKey(id), resolve);
      if (!this.channel.send({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) })) {
        this.internal.delete(idKey(id));
        resolve(errorResponse(id, ErrorCode.SessionEnded, 'server is not running'));
      }
    });
  }

  notify(method: string, params?: Record<string, unknown>): void {
    this.channel.send({ jsonrpc: '2.0', method, ...(params ? { params } : {}) });
    if (method === 'notifications/initialized') this.fence();
  }

  /** Resolves once the server has answered the ping after notifications/initialized (at once when none is pending). */
  get settled(): Promise<void> {
    return this.handshake ?? Promise.resolve();
  }

  /** Opens the handshake fence until the server answers this ping (see the header). */
  private fence(): void {
    this.settling++;
    const done = this.call('ping').then(() => {
      this.settling--;
    });
    this.handshake = done;
  }

  /** Handles the messages of one client POST. Requests are answered on `exchange`. */
  fromClient(messages: JsonRpcMessage[], exchange: CallSink): void {
    for (const m of messages) {
      if (isRequest(m)) this.clientRequest(m, exchange);
      else if (isResponse(m)) this.clientResponse(m);
      else if (isNotification(m)) this.clientNotification(m, exchange);
    }
  }

  private clientRequest(m: JsonRpcRequest, exchange: CallSink): void {
    const key = idKey(m.id);
    exchange.expect(`c:${key}`);
    if (this.closed) {
      exchange.respond(`c:${key}`, errorResponse(m.id, this.closed.code, this.closed.message));
      return;
    }
    const clientKey = this.clientKey(m.id, exchange);
    if (this.byClientId.has(clientKey)) {
      exchange.respond(
        `c:${key}`,
        errorResponse(
          m.id,
          ErrorCode.InvalidRequest,
          `Invalid Request: a request with id ${JSON.stringify(m.id)} is already in flight in this session`,
        ),
      );
      return;
    }
    const internalId = this.nextId++;
    const entry: InFlight = { clientId: m.id, method: m.method, exchange, startedAt: Date.now() };
    let forwarded: JsonRpcRequest = { ...m, id: internalId };
    const meta = m.params?._meta as Record<string, unknown> | undefined;
    const token = meta?.progressToken;
    if (typeof token === 'string' || typeof token === 'number') {
      // Tokens are rewritten too: unrelated clients of a shared (stateless) server may pick the same one.
      entry.progressToken = internalId;
      this.progress.set(internalId, { exchange, token });
      forwarded = { ...forwarded, params: { ...m.params, _meta: { ...meta, progressToken: internalId } } };
    }
    this.inflight.set(internalId, entry);
    this.byClientId.set(clientKey, internalId);
    // A listen stays open for as long as the client wants its notifications: no answer to time out, not a call.
    if (m.method === 'subscriptions/listen') this.listens++;
    else {
      this.armTimeout(internalId);
      if (this.inFlightCount === 1) this.emit('busy', true);
    }
    let sent: boolean;
    try {
      sent = this.channel.send(forwarded);
    } catch (e) {
      // Registered above, so it must be completed here, or the session would look busy forever.
      this.complete(
        internalId,
        errorResponse(m.id, ErrorCode.InvalidRequest, `Invalid Request: the message cannot be serialized: ${(e as Error).message}`),
      );
      return;
    }
    if (!sent) this.complete(internalId, errorResponse(m.id, ErrorCode.SessionEnded, 'the server is not running'));
  }

  /** Stateless runtimes share one server among unrelated clients, whose ids only need to be unique per POST. */
  private clientKey(id: JsonRpcId, exchange?: CallSink): string {
    return this.opts.stateless && exchange ? `${exchange.streamId}|${idKey(id)}` : idKey(id);
  }

  private clientResponse(m: JsonRpcResponse): void {
    const key = idKey(m.id as JsonRpcId);
    const pending = this.serverRequests.get(key);
    if (!pending) {
      this.tallies.unexpected_answer.add(`id ${JSON.stringify(m.id).slice(0, 40)}`);
      return;
    }
    this.serverRequests.delete(key);
    clearTimeout(pending.timer);
    this.emit('answered', pending.method, performance.now() - pending.at);
    this.channel.send(m);
  }

  private clientNotification(m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }, exchange: CallSink): void {
    if (m.method === 'notifications/cancelled') {
      const requestId = m.params?.requestId;
      if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
      // A stateless relay keys ids by the sink that sent them: a cancel names a request of its own POST (or 2026 call).
      const internalId = this.byClientId.get(this.clientKey(requestId, exchange));
      if (internalId === undefined) return; // already finished: the spec lets receivers ignore it
      this.channel.send({ ...m, params: { ...m.params, requestId: internalId } });
      // "Receivers of cancellation notifications SHOULD: ... Not send a response for the cancelled request"
      // (2025-11-25, cancellation): the call is forgotten now, its stream ends without an answer, and an answer
      // the server sends anyway finds nothing in flight and is dropped.
      this.complete(internalId, 'cancelled');
      return;
    }
    this.channel.send(m);
    if (m.method === 'notifications/initialized') this.fence();
  }

  /** A server notification that belongs to no call, put on the session's GET stream (kept until read). */
  announce(m: JsonRpcMessage & { method: string }): void {
    this.route(m, 'get', () => this.drop('retention', m.method));
  }

  /** A GET without Last-Event-ID: carries the standalone stream, starting with what no connection carried yet. */
  openGet(res: ServerResponse, headers: Record<string, string>, priming: boolean): void {
    this.standaloneStream().attach(res, headers, 'unwritten', priming);
  }

  /** A GET with Last-Event-ID: replays that stream (a POST's or the standalone one) after the id, then goes live. */
  resume(res: ServerResponse, lastEventId: string, headers: Record<string, string>): void {
    const { stream, seq } = this.streams.resolve(lastEventId);
    stream.attach(res, headers, seq, false);
  }

  private standaloneStream(): SseStream {
    return (this.standalone ??= this.streams.open());
  }

  private fromServer(m: JsonRpcMessage): void {
    if (isResponse(m)) {
      const id = m.id;
      if (typeof id === 'number' && this.inflight.has(id)) {
        this.complete(id, withId(m, this.inflight.get(id)!.clientId));
        return;
      }
      if (id !== null && id !== undefined) {
        const cb = this.internal.get(idKey(id));
        if (cb) {
          this.internal.delete(idKey(id));
          cb(m);
          return;
        }
      }
      this.drop('not_in_flight', `id ${JSON.stringify(id).slice(0, 40)}`);
      return;
    }
    if (isRequest(m)) {
      this.serverRequest(m);
      return;
    }
    this.serverNotification(m as JsonRpcMessage & { method: string; params?: Record<string, unknown> });
  }

  private serverRequest(m: JsonRpcRequest): void {
    if (this.opts.stateless) {
      this.channel.send(
        errorResponse(
          m.id,
          ErrorCode.MethodNotFound,
          `berth: this runtime is stateless, so the server cannot send "${m.method}" to the client; host it in stateful mode to use elicitation, sampling or roots`,
        ),
      );
      return;
    }
    const unowned = this.inFlightCount === 0 || (this.settling > 0 && UNPROMPTED.has(m.method));
    if (unowned && this.onUnownedRequest) {
      this.channel.send(this.onUnownedRequest(m));
      return;
    }
    const key = idKey(m.id);
    const target = unowned ? 'get' : this.pick(m.method === 'ping');
    const pending: { method: string; target: Target; timer?: NodeJS.Timeout; at: number } = {
      method: m.method,
      target,
      at: performance.now(),
    };
    this.serverRequests.set(key, pending);
    const timeout = this.opts.serverRequestTimeout;
    if (timeout > 0) {
      pending.timer = setTimeout(() => {
        if (this.serverRequests.get(key) !== pending) return;
        this.serverRequests.delete(key);
        this.channel.send(
          errorResponse(
            m.id,
            REQUEST_TIMEOUT,
            `berth: the client did not answer "${m.method}" within ${timeout} ms (serverRequestTimeout)`,
          ),
        );
        this.route(
          {
            jsonrpc: '2.0',
            method: 'notifications/cancelled',
            params: { requestId: m.id, reason: 'the server stopped waiting (serverRequestTimeout)' },
          },
          pending.target,
          () => this.drop('retention', 'notifications/cancelled'),
        );
      }, timeout);
      pending.timer.unref();
    }
    this.route(m, target, () => {
      this.drop('retention', m.method);
      if (this.serverRequests.get(key) !== pending) return;
      this.serverRequests.delete(key);
      clearTimeout(pending.timer);
      this.channel.send(
        errorResponse(
          m.id,
          ErrorCode.ServerError,
          `berth: no client stream carried "${m.method}" before newer messages displaced it (${RETENTION_SETTINGS})`,
        ),
      );
    });
  }

  private serverNotification(m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }): void {
    let target: Target | undefined;
    const sub = (m.params?._meta as Record<string, unknown> | undefined)?.[META_SUBSCRIPTION_ID];
    const listen = typeof sub === 'number' ? this.inflight.get(sub) : undefined;
    if (listen?.method === 'subscriptions/listen') {
      // A 2026 listen stream's messages carry the listen's id (berth's, on this side): back to the client's.
      m = {
        ...m,
        params: { ...m.params, _meta: { ...(m.params!._meta as Record<string, unknown>), [META_SUBSCRIPTION_ID]: listen.clientId } },
      };
      const method = m.method;
      if (listen.exchange.reachable) this.route(m, listen.exchange, () => this.drop('retention', method));
      return;
    }
    if (m.method === 'notifications/progress') {
      const route = typeof m.params?.progressToken === 'number' ? this.progress.get(m.params.progressToken) : undefined;
      if (!route || !route.exchange.reachable) {
        this.drop('client_gone', m.method);
        return;
      }
      this.armTimeout(m.params!.progressToken as number); // progress is a sign of life
      m = { ...m, params: { ...m.params, progressToken: route.token } };
      target = route.exchange;
    } else if (m.method === 'notifications/cancelled') {
      const rid = m.params?.requestId;
      const pending = typeof rid === 'string' || typeof rid === 'number' ? this.serverRequests.get(idKey(rid)) : undefined;
      if (pending) {
        this.serverRequests.delete(idKey(rid as JsonRpcId));
        clearTimeout(pending.timer);
        target = pending.target;
      }
    } else if (m.method === 'notifications/message' && this.inFlightCount === 1) {
      const only = [...this.inflight.values()].find((f) => f.method !== 'subscriptions/listen')!;
      if (only.exchange.live) target = only.exchange;
    }
    if (!target && this.onUnrouted?.(m)) return;
    if (this.opts.stateless) {
      const method = m.method;
      if (target) this.route(m, target, () => this.drop('no_stream', method));
      else this.drop('no_stream', method);
      return;
    }
    this.route(m, target ?? 'get', () => this.drop('retention', m.method));
  }

  /** One server message dropped: counted (the 'dropped' event, for the metric) and tallied for the log. */
  private drop(reason: DropReason, what: string): void {
    this.tallies[reason].add(what);
    this.emit('dropped', reason);
  }

  private tally(level: 'debug' | 'warn', [one, many]: [string, string], what: string): DropTally {
    return new DropTally(({ count, since, first, last }) =>
      this.emit('log', level, `${count} ${count === 1 ? one : many} ${what} (since ${since}; first ${first}, last ${last})`, {
        count,
        since,
        first,
        last,
      }),
    );
  }

  /** Where a server request goes: a live call stream or GET stream first (ping prefers GET), then a call stream the client can resume, else the GET stream. */
  private pick(preferGet: boolean): Target {
    let live: CallSink | undefined;
    for (const f of this.inflight.values())
      if (f.exchange.live) {
        live = f.exchange;
        break;
      }
    const get = this.standalone?.attached ? 'get' : undefined;
    const first = preferGet ? (get ?? live) : (live ?? get);
    if (first) return first;
    for (const f of this.inflight.values()) if (f.exchange.reachable) return f.exchange;
    return 'get';
  }

  /** Sends to a call's stream, or (when that cannot reach the client) the standalone stream, kept until read. */
  private route(m: JsonRpcMessage, target: Target, onLost?: () => void): void {
    if (target !== 'get' && target.deliver(m, onLost)) return;
    if (this.opts.stateless) {
      onLost?.();
      return;
    }
    this.standaloneStream().send(m, onLost);
  }

  /** (Re)starts a call's timeout; a server waiting on the client is not hanging, so the clock waits too. */
  private armTimeout(internalId: number): void {
    const t = this.opts.requestTimeout;
    const f = this.inflight.get(internalId);
    if (!t || !f) return;
    clearTimeout(f.timer);
    f.timer = setTimeout(() => {
      if (this.inflight.get(internalId) !== f) return;
      if (this.serverRequests.size > 0) return this.armTimeout(internalId);
      this.channel.send({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: internalId, reason: 'berth: request timed out (requestTimeout)' },
      });
      this.complete(
        internalId,
        errorResponse(
          f.clientId,
          REQUEST_TIMEOUT,
          `Request timed out: the server sent neither an answer nor progress for ${t} ms (requestTimeout)`,
        ),
      );
    }, t);
    f.timer.unref();
  }

  /** Ends a call: with its answer, or with none when the client cancelled it. */
  private complete(internalId: number, response: JsonRpcResponse | 'cancelled'): void {
    const f = this.inflight.get(internalId);
    if (!f) return;
    this.inflight.delete(internalId);
    clearTimeout(f.timer);
    this.byClientId.delete(this.clientKey(f.clientId, f.exchange));
    if (f.progressToken !== undefined) this.progress.delete(f.progressToken);
    if (response === 'cancelled') {
      const key = `c:${idKey(f.clientId)}`;
      if (f.exchange.cancelled) f.exchange.cancelled(key);
      // A sink that cannot end without an answer is berth's own (a listen leg, a bridged call whose client left):
      // the answer reaches no client.
      else f.exchange.respond(key, errorResponse(f.clientId, ErrorCode.RequestCancelled, 'Request cancelled by the client'));
    } else {
      try {
        this.respond(f, response);
      } catch (e) {
        // An answer berth cannot serialise (valid JSON nested deeper than the stack allows, from a hostile server)
        // fails this call alone; thrown on, it would leave the session counted busy and the client waiting.
        this.emit('log', 'warn', "the server's answer could not be passed on", {
          id: f.clientId,
          method: f.method,
          error: (e as Error).message,
        });
        this.respond(
          f,
          errorResponse(f.clientId, ErrorCode.InternalError, `the server's answer could not be passed on: ${(e as Error).message}`),
        );
      }
    }
    if (f.method === 'subscriptions/listen') this.listens--;
    else if (this.inFlightCount === 0) this.emit('busy', false);
  }

  private respond(f: InFlight, response: JsonRpcResponse): void {
    const result = (response as { result?: { _meta?: Record<string, unknown> } }).result;
    if (f.method === 'subscriptions/listen' && result?._meta?.[META_SUBSCRIPTION_ID] !== undefined) {
      response = { ...response, result: { ...result, _meta: { ...result._meta, [META_SUBSCRIPTION_ID]: f.clientId } } } as JsonRpcResponse;
    }
    if (!f.exchange.respond(`c:${idKey(f.clientId)}`, response)) {
      this.emit('log', 'warn', 'response not delivered: the client closed its stream before the result', {
        id: f.clientId,
        method: f.method,
      });
    }
  }

  /** Ends the relay: every in-flight client request and internal call fails with this error. */
  close(code: number, message: string): void {
    if (this.closed) return;
    this.closed = { code, message };
    for (const [internalId, f] of [...this.inflight]) this.complete(internalId, errorResponse(f.clientId, code, message));
    for (const [key, cb] of [...this.internal]) {
      this.internal.delete(key);
      cb(errorResponse(null, code, message));
    }
    for (const p of this.serverRequests.values()) clearTimeout(p.timer);
    this.serverRequests.clear();
    this.streams.close();
    // Nothing counted goes unsaid when the session ends.
    for (const t of Object.values(this.tallies)) t.flush();
  }
}
