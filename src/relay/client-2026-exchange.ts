// A 2026-07-28 client's request on its way through a stdio relay: each request stands alone, its id rewritten to a
// berth-wide one, answered as JSON or as an SSE stream without event ids or priming (nothing is resumable in this
// revision); closing that stream cancels the request at the server.
import type { ServerResponse } from 'node:http';
import { sendJson } from '../wire/http-error.js';
import { isRequest, type JsonRpcId, type JsonRpcMessage, type JsonRpcRequest, type JsonRpcResponse } from '../wire/jsonrpc.js';
import { META_SUBSCRIPTION_ID } from '../wire/era.js';
import { dataEvent, KEEP_ALIVE, sseHeaders } from '../wire/sse.js';
import { withId, writeJson } from '../wire/raw-json.js';
import { statusOfServerError, withAllVersions } from '../wire/streamable-http-2026.js';
import type { CallSink } from './sink.js';
import { sinkId } from './sink.js';
import type { MessageRelay } from './message-relay.js';

/**
 * One 2026 client's request and its response: plain JSON, or an SSE stream once a notification must go first or the
 * call outlasts the JSON window by a keep-alive interval. Nothing of the 2025 machinery (stream log, event ids,
 * priming, resumption) is used.
 */
export class Client2026Exchange implements CallSink {
  readonly streamId = sinkId('c26-');
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
    private readonly o: {
      jsonWindow: number;
      keepAlive: number;
      headers: Record<string, string>;
      /** The id berth gave the request on its way to the server: a listen stream's messages are tagged with it. */
      relayId?: JsonRpcId;
      /** Rewrites a successful result before it goes out (server/discover names every version berth serves). */
      transform?: (result: Record<string, unknown>) => Record<string, unknown>;
    },
  ) {
    out.on('close', () => {
      if (this.ended) return;
      this.abandoned = true;
      this.stop();
      this.onAbandon?.();
    });
  }

  get reachable(): boolean {
    return !this.ended && !this.abandoned && !this.out.destroyed;
  }

  get live(): boolean {
    return this.reachable;
  }

  /**
   * Past the JSON window the response becomes a stream when it first has something to send (a notification, or a
   * keep-alive once one is due), not at once: an error that comes late still gets its own status (a missing
   * capability is 400), where a stream opened on time would have sent 200 already.
   */
  expect(): void {
    if (this.o.jsonWindow === 0) this.startStream();
    else if (this.o.keepAlive > 0) {
      this.window = setTimeout(() => this.reachable && this.startStream(), this.o.jsonWindow + this.o.keepAlive);
      this.window.unref();
    }
  }

  /** Notifications of this request (progress, its log messages). A 2026 server sends no requests: refused. */
  deliver(message: JsonRpcMessage): boolean {
    if (!this.reachable || isRequest(message)) return false;
    this.startStream();
    writeJson(this.out, dataEvent(this.retag(message)));
    return true;
  }

  /** A listen stream's messages name the listen by the id the client gave it, not berth's. */
  private retag<T extends JsonRpcMessage>(m: T): T {
    const holder =
      'result' in m
        ? (m.result as { _meta?: Record<string, unknown> } | undefined)
        : (m as { params?: { _meta?: Record<string, unknown> } }).params;
    if (this.o.relayId === undefined || holder?._meta?.[META_SUBSCRIPTION_ID] !== this.o.relayId) return m;
    const _meta = { ...holder._meta, [META_SUBSCRIPTION_ID]: this.clientId };
    return 'result' in m ? { ...m, result: { ...holder, _meta } } : { ...m, params: { ...holder, _meta } };
  }

  respond(_key: string, message: JsonRpcResponse): boolean {
    if (this.ended) return false;
    const delivered = this.reachable;
    this.ended = true;
    this.stop();
    if (!delivered) return false;
    let answer = this.retag(withId(message, this.clientId));
    if (this.o.transform && answer.result) answer = { ...answer, result: this.o.transform(answer.result as Record<string, unknown>) };
    if (!this.streaming) sendJson(this.out, answer.error ? statusOfServerError(answer.error.code) : 200, answer, this.o.headers);
    else writeJson(this.out, dataEvent(answer), true);
    return true;
  }

  /**
   * The request was cancelled (a 2026 client cancels by closing its stream): no answer is sent. Should the client
   * still be connected, its response ends empty: an SSE stream just ends, and one still in its JSON window becomes
   * an empty SSE stream (a request's answer is JSON or SSE; an empty JSON body would not parse).
   */
  cancelled(): void {
    if (this.ended) return;
    this.ended = true;
    this.stop();
    if (this.abandoned || this.out.destroyed) return;
    if (!this.out.headersSent) this.out.writeHead(200, sseHeaders(this.o.headers));
    this.out.end();
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

/**
 * Relays one 2026 client's request to a server and resolves when its response has closed. The relay keys ids per
 * server, and pooled servers are shared by unrelated clients, so every request gets a berth-wide id first.
 */
export function relayClient2026(
  relay: MessageRelay,
  res: ServerResponse,
  request: JsonRpcRequest,
  o: { jsonWindow: number; keepAlive: number; headers?: Record<string, string> },
): Promise<void> {
  const id = `berth-m${++nextId}`;
  const transform = request.method === 'server/discover' ? withAllVersions : undefined;
  const exchange = new Client2026Exchange(res, request.id, { ...o, headers: o.headers ?? {}, relayId: id, transform });
  exchange.onAbandon = () =>
    relay.fromClient(
      [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'the client closed the response stream' } }],
      exchange,
    );
  return new Promise((resolve) => {
    if (res.destroyed || res.closed) return resolve(); // the client left while berth found a server: nothing to cancel
    res.once('close', resolve);
    relay.fromClient([{ ...request, id }], exchange);
  });
}
