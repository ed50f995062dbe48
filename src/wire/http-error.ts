import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ErrorCode, errorResponse, type JsonRpcId } from './jsonrpc.js';

/** A refusal at the HTTP layer: always answered as a JSON-RPC error body, never HTML. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly id: JsonRpcId | null = null,
  ) {
    super(message);
  }
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(errorResponse(err.id, err.code, err.message));
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Answers on a bare socket: for requests Node's HTTP parser refused before any handler ran (malformed, head too
 * large, too slow) and for CONNECT. Still a JSON-RPC error body, then the connection is closed.
 */
export function sendRawError(socket: Duplex, err: HttpError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(errorResponse(err.id, err.code, err.message));
  const extra = Object.entries(err.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n${extra}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  // A peer that keeps sending (or never reads) must not hold the socket open.
  setTimeout(() => socket.destroy(), 2000).unref();
}

/** The refusal for a `clientError` from Node's HTTP server (parser errors and the header/request timeouts). */
export function clientErrorAnswer(err: Error & { code?: string; reason?: string }, maxHeaderSize: number): HttpError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new HttpError(431, ErrorCode.ServerError, `Request Header Fields Too Large: the request line and headers exceed ${maxHeaderSize} bytes`);
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpError(408, ErrorCode.ServerError, 'Request Timeout: the request headers (or a body nobody reads) did not arrive in time');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new HttpError(413, ErrorCode.ServerError, 'Payload Too Large: chunk extensions too long');
    default: {
      // The parser's reason names the offending part ("Invalid header value char", "Invalid method encountered").
      const why = typeof err.reason === 'string' && err.reason ? err.reason : (err.code ?? 'unparseable');
      return new HttpError(400, ErrorCode.ServerError, `Bad Request: not a valid HTTP/1.1 request (${why})`);
    }
  }
}
