// One client POST and its response: plain JSON when the server answers quickly with nothing before the result;
// a resumable SSE stream when a related message (progress, elicitation, ...) must go out first, or when the call
// outlasts the JSON window (so a long call gets keep-alives and survives a dropped connection).
import type { ServerResponse } from 'node:http';
import { ErrorCode, errorResponse, type JsonRpcMessage, type JsonRpcResponse } from '../wire/jsonrpc.js';
import type { CallSink } from './sink.js';
import type { SseStream, StreamLog } from './stream-log.js';
import { SESSION_HEADER } from '../wire/headers.js';
import { sseHeaders } from '../wire/sse.js';
import { jsonBytes, jsonOf, writeJson, type Json } from '../wire/raw-json.js';

export interface ExchangeOptions {
  batch: boolean;
  headers?: Record<string, string>;
  /** Where an upgraded response's stream lives: the session's log (resumable) or a throwaway one. */
  streams: StreamLog;
  /** Send the 2025-11-25 priming event when the response becomes a stream. */
  priming: boolean;
  /** Upgrade to SSE when the final response has not come after this long; 0 streams at once. */
  jsonWindow: number;
}

export class Exchange implements CallSink {
  private readonly outstanding = new Set<string>();
  private readonly responses: JsonRpcResponse[] = [];
  private stream: SseStream | undefined;
  private finished = false;
  private clientGone = false;
  private timer: NodeJS.Timeout | undefined;
  private upgraded = false;
  readonly headers: Record<string, string>;

  /** Sees each final response before it is written; may still change `headers` while the response is JSON. */
  beforeRespond: ((message: JsonRpcResponse) => void) | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly opts: ExchangeOptions,
  ) {
    this.headers = opts.headers ?? {};
    res.on('close', () => {
      if (!res.writableFinished) this.clientGone = true;
    });
  }

  /** Names this exchange (stateless clients' ids are keyed by it); its stream's id once it has one. */
  get streamId(): string {
    return (this.stream ??= this.opts.streams.open()).id;
  }

  /** A message sent here now reaches the client: on an open connection, or when it resumes the stream. */
  get reachable(): boolean {
    if (this.finished) return false;
    if (this.upgraded) return this.stream!.reachable;
    return !this.clientGone && !this.res.destroyed;
  }

  /** A connection is open for this exchange right now. */
  get live(): boolean {
    if (this.finished) return false;
    if (this.upgraded) return this.stream!.attached;
    return !this.clientGone && !this.res.destroyed;
  }

  expect(key: string): void {
    this.outstanding.add(key);
    if (this.outstanding.size === 1 && !this.timer && !this.upgraded) {
      if (this.opts.jsonWindow === 0) this.upgrade();
      else {
        this.timer = setTimeout(() => this.reachable && this.upgrade(), this.opts.jsonWindow);
        this.timer.unref();
      }
    }
  }

  /** A message related to this POST's request(s), sent before the final response. */
  deliver(message: JsonRpcMessage, onLost?: () => void): boolean {
    if (!this.reachable) return false;
    if (!this.upgrade()) return false;
    this.stream!.send(message, onLost);
    return true;
  }

  /** The final response to one of the requests in this POST; ends the exchange after the last one. */
  respond(key: string, message: JsonRpcResponse): boolean {
    if (!this.outstanding.delete(key)) return false;
    const delivered = this.reachable;
    this.beforeRespond?.(message);
    if (this.upgraded) this.sendOnStream(message);
    else this.responses.push(message);
    if (this.outstanding.size === 0) this.finish();
    return delivered;
  }

  /**
   * The client cancelled one of this POST's requests: it gets no answer ("Not send a response for the cancelled
   * request", 2025-11-25 cancellation), and the exchange ends once nothing else is outstanding. A stream already
   * open simply ends: "The SSE stream SHOULD eventually include a JSON-RPC response" is a SHOULD the cancellation
   * utility's SHOULD NOT overrides. A primed stream (2025-11-25) that ends so is one the official SDK client (1.32)
   * tries to resume, as it does after any error response (only a result stops it): GET + Last-Event-ID, which berth
   * answers 400 (the stream is over); it gives up after its maxRetries, telling onerror, and its calls go on.
   */
  cancelled(key: string): void {
    if (!this.outstanding.delete(key)) return;
    if (this.outstanding.size === 0) this.finish();
  }

  /** Turns the response into an SSE stream (once); false when that is no longer possible. */
  private upgrade(): boolean {
    if (this.upgraded) return true;
    if (this.res.headersSent) return false;
    this.upgraded = true;
    this.stream ??= this.opts.streams.open();
    this.stream.attach(this.res, this.headers, 0, this.opts.priming);
    // Batch responses that came while this was still plain JSON go first.
    for (const r of this.responses.splice(0)) this.sendOnStream(r);
    return true;
  }

  private sendOnStream(message: JsonRpcResponse): void {
    try {
      this.stream!.send(message);
    } catch (e) {
      this.stream!.send(unsendable(message, e));
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    if (this.upgraded) {
      this.stream!.finish();
      return;
    }
    if (this.clientGone || this.res.destroyed) return;
    if (this.responses.length === 0) {
      // Everything in this POST was cancelled inside its JSON window, before a byte was written. A request must be
      // answered with application/json or text/event-stream (Streamable HTTP), and JSON has nothing to carry: so an
      // empty SSE stream, without the priming event, since there is nothing to resume. The official TypeScript SDK
      // client (1.32) reads it and does nothing more: no message, no error, no reconnection (it resumes a POST
      // stream only after an event with an id). 202 is for notifications and responses; an empty JSON body or 204
      // fails that client's parse ("Unexpected content type").
      this.res.writeHead(200, sseHeaders(this.headers));
      this.res.end();
      return;
    }
    let body: Json;
    try {
      body = this.opts.batch ? JSON.stringify(this.responses) : jsonOf(this.responses[0]);
    } catch {
      const sendable = this.responses.map((r) => {
        try {
          JSON.stringify(r);
          return r;
        } catch (e) {
          return unsendable(r, e);
        }
      });
      body = JSON.stringify(this.opts.batch ? sendable : sendable[0]);
    }
    this.res.writeHead(200, { ...this.headers, 'content-type': 'application/json', 'content-length': jsonBytes(body) });
    writeJson(this.res, body, true);
  }
}

/**
 * An answer berth cannot write (valid JSON nested deeper than JSON.stringify's stack allows, from a hostile server)
 * becomes an error for that call alone; thrown on, it would leave the client waiting and the session busy.
 */
function unsendable(m: JsonRpcResponse, e: unknown): JsonRpcResponse {
  return errorResponse(m.id, ErrorCode.InternalError, `the server's answer could not be passed on: ${(e as Error).message}`);
}

/**
 * An initialize's exchange whose error answer is first offered to `onError`, which may answer in its place: under
 * serverEra auto a 2026-era server refuses a 2025 initialize (-32022) and bridge B answers instead.
 */
export class InitExchange extends Exchange {
  onError: ((m: JsonRpcResponse) => Promise<JsonRpcResponse>) | undefined;
  override respond(key: string, message: JsonRpcResponse): boolean {
    const f = this.onError;
    this.onError = undefined;
    if (!message.error || !f) return super.respond(key, message);
    void f(message).then((r) => super.respond(key, r));
    return true;
  }
}

/**
 * The exchange that answers a 2025 initialize, and so opens a session: as JSON (the protocol version, and with it
 * priming, is not known before the answer), carrying the new session's id unless the answer is an error. `answered`
 * sees the answer before it is written (the session ends on an error); `onError` as for InitExchange.
 */
export function sessionOpening(
  res: ServerResponse,
  o: {
    sessionId: string;
    streams: StreamLog;
    answered: (m: JsonRpcResponse) => void;
    onError?: (m: JsonRpcResponse) => Promise<JsonRpcResponse>;
  },
): InitExchange {
  const exchange = new InitExchange(res, {
    batch: false,
    headers: { [SESSION_HEADER]: o.sessionId },
    streams: o.streams,
    priming: false,
    jsonWindow: 60_000,
  });
  exchange.beforeRespond = (m) => {
    if (m.error) delete exchange.headers[SESSION_HEADER];
    o.answered(m);
  };
  exchange.onError = o.onError;
  return exchange;
}
