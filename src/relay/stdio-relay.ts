// Relays one stdio MCP server to HTTP clients: rewrites client request ids (so concurrent POSTs never collide),
// and routes every server message to the stream it belongs on.
//
// Routing rules (the server's stdio gives no "related request" hint, so berth infers it):
//   response              -> the POST that carried the request
//   notifications/progress-> the POST whose request carries that progressToken
//   server request        -> the oldest in-flight POST still open (so a client without a GET stream
//                            still sees an elicitation during a tool call); else the GET stream; else queued
//   notifications/message -> the POST of the only request in flight, else the GET stream
//   other notifications   -> the GET stream, or queued until one opens
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { SseWriter } from '../wire/sse.js';
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
import type { Exchange } from './exchange.js';
import type { StdioChannel } from './stdio-channel.js';

interface InFlight {
  clientId: JsonRpcId;
  method: string;
  exchange: Exchange;
  progressToken?: number;
  startedAt: number;
}

type Target = Exchange | 'get';

export interface RelayOptions {
  /** Stateless runtimes have no GET stream and answer server->client requests with an error. */
  stateless: boolean;
  maxQueuedMessages: number;
}

export interface RelayEvents {
  /** In-flight client request count went from 0 to 1 (busy) or back to 0 (quiet). */
  busy: [boolean];
  log: [level: 'debug' | 'info' | 'warn', msg: string, extra?: Record<string, unknown>];
}

export class StdioRelay extends EventEmitter<RelayEvents> {
  private nextId = 1;
  private readonly inflight = new Map<number, InFlight>();
  private readonly byClientId = new Map<string, number>();
  /** Internal progress token -> where its notifications go, and the client's own token. */
  private readonly progress = new Map<number, { exchange: Exchange; token: string | number }>();
  private readonly serverRequests = new Map<string, { method: string; target: Target | 'queued' }>();
  private readonly internal = new Map<string, (r: JsonRpcResponse) => void>();
  private get: SseWriter | undefined;
  private queue: JsonRpcMessage[] = [];
  private closed: { code: number; message: string } | undefined;

  constructor(
    private readonly channel: StdioChannel,
    private readonly opts: RelayOptions,
  ) {
    super();
    channel.on('message', (m) => this.fromServer(m));
  }

  get inFlightCount(): number {
    return this.inflight.size;
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
  }

  /** Handles the messages of one client POST. Requests are answered on `exchange`. */
  fromClient(messages: JsonRpcMessage[], exchange: Exchange): void {
    for (const m of messages) {
      if (isRequest(m)) this.clientRequest(m, exchange);
      else if (isResponse(m)) this.clientResponse(m);
      else if (isNotification(m)) this.clientNotification(m);
    }
  }

  private clientRequest(m: JsonRpcRequest, exchange: Exchange): void {
    const key = idKey(m.id);
    exchange.expect(`c:${key}`);
    if (this.closed) {
      exchange.respond(`c:${key}`, errorResponse(m.id, this.closed.code, this.closed.message));
      return;
    }
    const clientKey = this.clientKey(m.id, exchange);
    if (this.byClientId.has(clientKey)) {
      exchange.respond(`c:${key}`, errorResponse(m.id, ErrorCode.InvalidRequest, `Invalid Request: a request with id ${JSON.stringify(m.id)} is already in flight in this session`));
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
    if (this.inflight.size === 1) this.emit('busy', true);
    if (!this.channel.send(forwarded)) {
      this.complete(internalId, errorResponse(m.id, ErrorCode.SessionEnded, 'the server is not running'));
    }
  }

  /** Stateless runtimes share one server among unrelated clients, whose ids only need to be unique per POST. */
  private clientKey(id: JsonRpcId, exchange?: Exchange): string {
    return this.opts.stateless && exchange ? `${exchange.streamId}|${idKey(id)}` : idKey(id);
  }

  private clientResponse(m: JsonRpcResponse): void {
    const key = idKey(m.id as JsonRpcId);
    const pending = this.serverRequests.get(key);
    if (!pending) {
      this.emit('log', 'warn', 'client answered a server request that is not pending', { id: m.id });
      return;
    }
    this.serverRequests.delete(key);
    this.channel.send(m);
  }

  private clientNotification(m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }): void {
    if (m.method === 'notifications/cancelled') {
      const requestId = m.params?.requestId;
      if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
      const internalId = this.byClientId.get(this.clientKey(requestId));
      if (internalId === undefined) return; // already finished: the spec lets receivers ignore it
      this.channel.send({ ...m, params: { ...m.params, requestId: internalId } });
      // The server will not answer a cancelled request; close out the client's stream now.
      this.complete(internalId, errorResponse(requestId, ErrorCode.RequestCancelled, 'Request cancelled by the client'));
      return;
    }
    this.channel.send(m);
  }

  /** The client's standalone GET stream; a newer one replaces an older one. Flushes queued messages. */
  openGet(res: ServerResponse, streamId: string, headers: Record<string, string>): SseWriter {
    this.get?.end();
    const sse = new SseWriter(res, streamId, headers);
    this.get = sse;
    res.on('close', () => {
      if (this.get === sse) this.get = undefined;
    });
    const queued = this.queue;
    this.queue = [];
    for (const m of queued) this.route(m, 'get');
    return sse;
  }

  private fromServer(m: JsonRpcMessage): void {
    if (isResponse(m)) {
      const id = m.id;
      if (typeof id === 'number' && this.inflight.has(id)) {
        this.complete(id, { ...m, id: this.inflight.get(id)!.clientId });
        return;
      }
      if (id !== null) {
        const cb = this.internal.get(idKey(id));
        if (cb) {
          this.internal.delete(idKey(id));
          cb(m);
          return;
        }
      }
      this.emit('log', 'debug', 'server answered a request that is no longer in flight', { id });
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
    const target: Target | undefined = m.method === 'ping' ? this.getOrCall() : this.callOrGet();
    const key = idKey(m.id);
    if (target) {
      this.serverRequests.set(key, { method: m.method, target });
      this.route(m, target);
    } else if (this.enqueue(m)) {
      this.serverRequests.set(key, { method: m.method, target: 'queued' });
    } else {
      this.channel.send(errorResponse(m.id, ErrorCode.ServerError, `berth: the client has no open stream and ${this.opts.maxQueuedMessages} messages are already waiting (maxQueuedMessages)`));
    }
  }

  private serverNotification(m: JsonRpcMessage & { method: string; params?: Record<string, unknown> }): void {
    let target: Target | undefined;
    if (m.method === 'notifications/progress') {
      const route = typeof m.params?.progressToken === 'number' ? this.progress.get(m.params.progressToken) : undefined;
      if (!route) {
        this.emit('log', 'debug', 'progress for a request that is no longer in flight', { token: m.params?.progressToken });
        return;
      }
      m = { ...m, params: { ...m.params, progressToken: route.token } };
      if (route.exchange.open) target = route.exchange;
    } else if (m.method === 'notifications/cancelled') {
      const rid = m.params?.requestId;
      const pending = typeof rid === 'string' || typeof rid === 'number' ? this.serverRequests.get(idKey(rid)) : undefined;
      if (pending) this.serverRequests.delete(idKey(rid as JsonRpcId));
      if (pending && pending.target !== 'queued') target = pending.target;
    } else if (m.method === 'notifications/message' && this.inflight.size === 1) {
      const only = this.inflight.values().next().value!;
      if (only.exchange.open) target = only.exchange;
    }
    if (this.opts.stateless) {
      if (target) this.route(m, target);
      else this.emit('log', 'debug', 'stateless runtime: no client stream for a server notification', { method: m.method });
      return;
    }
    target ??= this.get?.isOpen ? 'get' : undefined;
    if (target) this.route(m, target);
    else if (!this.enqueue(m)) this.emit('log', 'warn', 'notification dropped: no open stream and the queue is full', { method: m.method });
  }

  private callOrGet(): Target | undefined {
    for (const f of this.inflight.values()) if (f.exchange.open) return f.exchange;
    return this.get?.isOpen ? 'get' : undefined;
  }

  private getOrCall(): Target | undefined {
    return this.get?.isOpen ? 'get' : this.callOrGet();
  }

  private enqueue(m: JsonRpcMessage): boolean {
    if (this.queue.length >= this.opts.maxQueuedMessages) return false;
    this.queue.push(m);
    return true;
  }

  /** Sends to a target; when that stream turned out closed, falls back to the GET stream or the queue. */
  private route(m: JsonRpcMessage, target: Target): void {
    const ok = target === 'get' ? (this.get?.send(m) ?? false) : target.deliver(m);
    if (ok) return;
    const fallback = target === 'get' ? undefined : this.get?.isOpen ? 'get' : undefined;
    if (fallback && this.get!.send(m)) return;
    if (!this.enqueue(m) && isRequest(m)) {
      this.serverRequests.delete(idKey(m.id));
      this.channel.send(errorResponse(m.id, ErrorCode.ServerError, 'berth: the client stream closed and the queue is full'));
    }
  }

  private complete(internalId: number, response: JsonRpcResponse): void {
    const f = this.inflight.get(internalId);
    if (!f) return;
    this.inflight.delete(internalId);
    this.byClientId.delete(this.clientKey(f.clientId, f.exchange));
    if (f.progressToken !== undefined) this.progress.delete(f.progressToken);
    if (!f.exchange.respond(`c:${idKey(f.clientId)}`, response)) {
      this.emit('log', 'warn', 'response not delivered: the client closed its stream before the result', { id: f.clientId, method: f.method });
    }
    if (this.inflight.size === 0) this.emit('busy', false);
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
    this.get?.end();
    this.queue = [];
  }
}
