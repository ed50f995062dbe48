// The one refusal class. Whatever layer refuses a request throws an HttpError; the front door (or Node's own
// error hooks) asks it to render itself: always a JSON-RPC error body, never HTML or an empty answer.
import { type IncomingMessage, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { header, VERSION_HEADER } from './headers.js';
import { ErrorCode, errorResponse, type JsonRpcId, unreadId } from './jsonrpc.js';
import { jsonBytes, jsonOf, writeJson } from './raw-json.js';

export interface HttpErrorDetails {
  /** Extra response headers (Retry-After, Allow, ...). */
  headers?: Record<string, string>;
  /** The request the refusal answers, when known (else the body's id follows `unreadId`). */
  id?: JsonRpcId | null;
  /** The JSON-RPC error's `data` (the 2026 codes carry one: supported versions, the mismatch). */
  data?: unknown;
}

export class HttpError extends Error {
  readonly headers: Record<string, string>;
  readonly id: JsonRpcId | null;
  readonly data: unknown;

  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    details: HttpErrorDetails = {},
  ) {
    super(message);
    this.headers = details.headers ?? {};
    this.id = details.id ?? null;
    this.data = details.data;
  }

  /** The same refusal answering another request (the id is only known once the body is parsed). */
  withId(id: JsonRpcId | null): HttpError {
    return new HttpError(this.status, this.code, this.message, { headers: this.headers, id, data: this.data });
  }

  /** Any thrown value as a refusal: an HttpError as it is, anything else a 500 naming it. */
  static from(e: unknown): HttpError {
    return e instanceof HttpError
      ? e
      : new HttpError(500, ErrorCode.InternalError, `Internal error: ${(e as Error)?.message ?? String(e)}`);
  }

  /**
   * The JSON-RPC error body. A refusal that cannot name its request follows the version in play (the request's
   * MCP-Protocol-Version): no id member from 2025-11-25 on, `id: null` before and when the version is unknown.
   */
  bodyFor(protocolVersion: string | undefined): string {
    return JSON.stringify(errorResponse(this.id ?? unreadId(protocolVersion), this.code, this.message, this.data));
  }

  /** Answers on a response; one already under way cannot be replaced (the bytes would corrupt it), so it is cut. */
  send(res: ServerResponse): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // Node keeps the request on its response; a response made without one (a test's) has no version to go by.
    const req = (res as { req?: IncomingMessage }).req;
    const body = this.bodyFor(req ? header(req, VERSION_HEADER) : undefined);
    res.writeHead(this.status, { ...this.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  /**
   * Answers on a bare socket: for requests Node's HTTP parser refused before any handler ran (malformed, head too
   * large, too slow) and for CONNECT. Still a JSON-RPC error body, then the connection is closed.
   */
  sendRaw(socket: Duplex): void {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // Node's parser refused the request: no header of it was read, so no version is known.
    const body = this.bodyFor(undefined);
    const extra = Object.entries(this.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    // A client still sending (a long chunked upload) must not meet a closed socket: unread data there would make
    // the kernel answer with a reset that destroys this answer in flight. What it sends is read and dropped.
    socket.resume();
    socket.end(
      `HTTP/1.1 ${this.status} ${STATUS_CODES[this.status] ?? 'Error'}\r\n${extra}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    // A peer that keeps sending (or never reads) must not hold the socket open.
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = jsonOf(value);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': jsonBytes(body) });
  writeJson(res, body, true);
}

/** The refusal for a `clientError` from Node's HTTP server (parser errors and the header/request timeouts). */
export function clientErrorAnswer(err: Error & { code?: string; reason?: string }, maxHeaderSize: number): HttpError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new HttpError(
        431,
        ErrorCode.ServerError,
        `Request Header Fields Too Large: the request line and headers exceed ${maxHeaderSize} bytes`,
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpError(
        408,
        ErrorCode.ServerError,
        'Request Timeout: the request headers (or a body nobody reads) did not arrive in time',
      );
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new HttpError(413, ErrorCode.ServerError, 'Payload Too Large: chunk extensions too long');
    default: {
      // The parser's reason names the offending part ("Invalid header value char", "Invalid method encountered").
      const why = typeof err.reason === 'string' && err.reason ? err.reason : (err.code ?? 'unparseable');
      return new HttpError(400, ErrorCode.ServerError, `Bad Request: not a valid HTTP/1.1 request (${why})`);
    }
  }
}
