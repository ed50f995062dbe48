// The wire rules of MCP Streamable HTTP for the 2025 revisions (2025-03-26, 2025-06-18, 2025-11-25):
// which requests are well-formed, and the exact status + JSON-RPC error for each refusal.
import type { IncomingMessage } from 'node:http';
import { header, ORIGIN_HEADER, SESSION_HEADER, VERSION_HEADER } from './headers.js';
import { HttpError } from './http-error.js';
import { ErrorCode, idKey, invalidClientMessageReason, isRequest, type JsonRpcMessage, type ParsedBody } from './jsonrpc.js';
import type { WireRevision } from './era.js';

export const SUPPORTED_PROTOCOL_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'] as const;
export const LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0];
/** Without an MCP-Protocol-Version header the spec says to assume this one. */
export const DEFAULT_NEGOTIATED_VERSION = '2025-03-26';

export function sessionIdOf(req: IncomingMessage): string | undefined {
  return header(req, SESSION_HEADER);
}

/**
 * Loopback origins are allowed by default: a browser page elsewhere must not drive a local server (DNS rebinding).
 * `allowed` is server.allowedOrigins plus the runtime's cors.allowedOrigins: a page the runtime lets read its answers
 * is one it lets call.
 */
export function checkOrigin(req: IncomingMessage, allowed: readonly string[]): void {
  const origin = header(req, ORIGIN_HEADER);
  if (origin === undefined) return; // non-browser clients send no Origin
  if (allowed.includes('*') || allowed.includes(origin)) return;
  if (allowed.includes('loopback')) {
    try {
      const host = new URL(origin).hostname;
      if (host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host.endsWith('.localhost')) return;
    } catch {
      // fall through to the refusal
    }
  }
  throw new HttpError(
    403,
    ErrorCode.ServerError,
    `Forbidden: Origin ${JSON.stringify(origin)} is not allowed (server.allowedOrigins, or the runtime's cors.allowedOrigins)`,
  );
}

function accepts(req: IncomingMessage, type: string): boolean {
  const accept = header(req, 'accept') ?? '';
  return accept.split(',').some((part) => {
    const t = part.split(';')[0]!.trim().toLowerCase();
    return t === type || t === '*/*' || t === `${type.split('/')[0]}/*`;
  });
}

export function checkPostHeaders(req: IncomingMessage): void {
  if (!accepts(req, 'application/json') || !accepts(req, 'text/event-stream')) {
    throw new HttpError(
      406,
      ErrorCode.ServerError,
      'Not Acceptable: the Accept header must list both application/json and text/event-stream',
    );
  }
  const ct = (header(req, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/json') {
    throw new HttpError(415, ErrorCode.ServerError, 'Unsupported Media Type: Content-Type must be application/json');
  }
}

export function checkGetHeaders(req: IncomingMessage): void {
  if (!accepts(req, 'text/event-stream')) {
    throw new HttpError(406, ErrorCode.ServerError, 'Not Acceptable: the Accept header must list text/event-stream');
  }
}

/** A present MCP-Protocol-Version header must name a revision this wire layer speaks. */
export function checkProtocolVersion(req: IncomingMessage): string {
  const v = header(req, VERSION_HEADER);
  if (v === undefined) return DEFAULT_NEGOTIATED_VERSION;
  if (!(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(v)) {
    throw new HttpError(
      400,
      ErrorCode.ServerError,
      `Bad Request: unsupported MCP-Protocol-Version ${JSON.stringify(v)} (supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    );
  }
  return v;
}

/** Reads a request body up to `limit` bytes; beyond it, 413 without reading the rest. */
export function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(header(req, 'content-length'));
    if (Number.isFinite(declared) && declared > limit) {
      reject(new HttpError(413, ErrorCode.ServerError, `Payload Too Large: body is ${declared} bytes, the limit is ${limit} bytes`));
      discard(req);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new HttpError(408, ErrorCode.ServerError, `Request Timeout: body not received within ${timeoutMs} ms`, {
          headers: { connection: 'close' },
        }),
      );
    }, timeoutMs);
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        cleanup();
        reject(new HttpError(413, ErrorCode.ServerError, `Payload Too Large: body exceeds the limit of ${limit} bytes`));
        discard(req);
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    // The client went away mid-upload (Node reports "aborted"): its refusal, not a failure of berth's.
    const onError = (e: Error) => {
      cleanup();
      reject(new HttpError(400, ErrorCode.ServerError, `Bad Request: the connection closed before the whole body arrived (${e.message})`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * Reads and throws away the rest of a refused upload, so the client (still sending) sees the 413 instead of a
 * reset connection; a client that keeps sending for long is cut off.
 */
function discard(req: IncomingMessage): void {
  req.resume();
  const t = setTimeout(() => {
    if (!req.complete) req.socket.destroy();
  }, 10_000);
  t.unref();
  req.once('end', () => clearTimeout(t));
}

/** JSON-RPC batches exist only in 2025-03-26 (and 2024-11-05); 2025-06-18 removed them. */
export function checkBatchAllowed(parsed: ParsedBody, protocolVersion: string): void {
  if (parsed.batch && protocolVersion !== '2025-03-26' && protocolVersion !== '2024-11-05') {
    throw new HttpError(
      400,
      ErrorCode.InvalidRequest,
      `Invalid Request: JSON-RPC batches are not part of protocol version ${protocolVersion}; send one message per POST`,
    );
  }
}

/** The 2025 revisions behind the interface both eras share (src/wire/era.ts). */
export const wire2025: WireRevision = {
  era: '2025',
  versions: SUPPORTED_PROTOCOL_VERSIONS,
  validatePost(req, parsed) {
    const version = checkProtocolVersion(req);
    checkBatchAllowed(parsed, version);
    return { era: '2025', version };
  },
  checkOther(req) {
    checkProtocolVersion(req);
  },
};

/**
 * The deepest nesting of arrays and objects a body may have. JSON.parse copes with any depth, but everything
 * after it recurses — JSON.stringify on the way to the server overflows the stack at a few thousand levels —
 * and no MCP message needs more than a few dozen.
 */
export const MAX_JSON_DEPTH = 512;

/** Whether valid JSON text nests arrays/objects deeper than `limit` (a scan, so it cannot overflow itself). */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // the escaped character cannot end the string
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** One decoder for every body: decode() without `stream` keeps no state between calls, and building one costs. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Parses a POST body into JSON-RPC messages (a single one, or a batch for 2025-03-26 clients). */
export function parseMessages(body: Buffer): ParsedBody {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new HttpError(400, ErrorCode.ParseError, 'Parse error: the body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, ErrorCode.ParseError, `Parse error: ${(e as Error).message}`);
  }
  if (nestedDeeperThan(text, MAX_JSON_DEPTH)) {
    throw new HttpError(400, ErrorCode.InvalidRequest, `Invalid Request: JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  const batch = Array.isArray(value);
  const items = batch ? (value as unknown[]) : [value];
  if (items.length === 0) throw new HttpError(400, ErrorCode.InvalidRequest, 'Invalid Request: empty batch');
  const ids = new Set<string>();
  items.forEach((item, i) => {
    const why = invalidClientMessageReason(item);
    if (why) throw new HttpError(400, ErrorCode.InvalidRequest, `Invalid Request${batch ? ` (batch item ${i})` : ''}: ${why}`);
    // Two requests with one id in one batch could not be told apart: one of them would go unanswered.
    const m = item as JsonRpcMessage;
    if (isRequest(m)) {
      const key = idKey(m.id);
      if (ids.has(key))
        throw new HttpError(
          400,
          ErrorCode.InvalidRequest,
          `Invalid Request (batch item ${i}): request id ${JSON.stringify(m.id)} is used twice in this batch`,
        );
      ids.add(key);
    }
  });
  return { messages: items as JsonRpcMessage[], batch };
}
