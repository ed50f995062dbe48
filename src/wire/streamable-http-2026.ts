// The Streamable HTTP rules of MCP 2026-07-28: one JSON-RPC request or notification per POST, the
// per-request _meta envelope, the version/method/name headers that must mirror the body, and the exact status and
// JSON-RPC error of each refusal. Every error echoes the request id when the body had one.
import { header, METHOD_HEADER, NAME_HEADER, VERSION_HEADER } from './headers.js';
import { HttpError } from './http-error.js';
import type { IncomingMessage } from 'node:http';
import { ErrorCode, isNotification, isRequest, type JsonRpcId } from './jsonrpc.js';
import { META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, VERSIONS_2026, type RequestContext, type WireRevision } from './era.js';
import { SUPPORTED_PROTOCOL_VERSIONS } from './streamable-http.js';
import type { ParsedBody } from './jsonrpc.js';

export const ErrorCode2026 = {
  HeaderMismatch: -32020,
  MissingRequiredClientCapability: -32021,
  UnsupportedProtocolVersion: -32022,
} as const;

/** Every version berth answers to, newest first: what a -32022 tells the client it may retry with. */
export const ALL_SUPPORTED_VERSIONS: readonly string[] = [...VERSIONS_2026, ...SUPPORTED_PROTOCOL_VERSIONS];

/**
 * The HTTP status of a response that is one JSON-RPC error from the server: this revision gives some errors a status
 * of their own (an unknown method is 404; a missing capability or a version or header refusal is 400), others 200.
 */
export function statusOfServerError(code: number): number {
  if (code === ErrorCode.MethodNotFound) return 404;
  if (
    code === ErrorCode2026.HeaderMismatch ||
    code === ErrorCode2026.MissingRequiredClientCapability ||
    code === ErrorCode2026.UnsupportedProtocolVersion
  )
    return 400;
  return 200;
}

/** berth serves every version of both eras in front of any server, so a discover answer names them all. */
export function withAllVersions(result: Record<string, unknown>): Record<string, unknown> {
  const own = Array.isArray(result.supportedVersions) ? (result.supportedVersions as unknown[]) : [];
  return {
    ...result,
    supportedVersions: [...new Set([...ALL_SUPPORTED_VERSIONS, ...own.filter((v): v is string => typeof v === 'string')])],
  };
}

/** Requests of the handshake era that 2026-07-28 removed: 404 -32601, never forwarded. */
export const REMOVED_METHODS = new Set(['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']);

/** Which param the Mcp-Name header mirrors, per method. */
const NAME_PARAM: Record<string, 'name' | 'uri'> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A header value as the client meant it: `=?base64?…?=` is UTF-8 in base64; undefined when malformed. */
export function decodeHeaderValue(raw: string): string | undefined {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/i.exec(raw);
  if (!m) {
    if (raw.startsWith('=?base64?')) return undefined;
    // Node hands bytes beyond ASCII through as latin1: a raw value must be visible ASCII (or spaces).
    return /^[\x20-\x7e]*$/.test(raw) ? raw : undefined;
  }
  if (m[1]!.length % 4 !== 0) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(m[1]!, 'base64'));
  } catch {
    return undefined;
  }
}

function mismatch(id: JsonRpcId | null, message: string, data: Record<string, unknown>): HttpError {
  return new HttpError(400, ErrorCode2026.HeaderMismatch, `Bad Request: ${message}`, { id: id, data: { mismatch: data } });
}

export const wire2026: WireRevision = {
  era: '2026',
  versions: VERSIONS_2026,

  validatePost(req: IncomingMessage, parsed: ParsedBody): RequestContext {
    if (parsed.batch)
      throw new HttpError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: batches are not part of protocol version 2026-07-28; send one message per POST',
      );
    const m = parsed.messages[0]!;
    const headerVersion = header(req, VERSION_HEADER);
    if (isNotification(m)) {
      // No client notification is defined on HTTP in this revision (cancelling = closing the stream): accept, drop.
      return { era: '2026', version: headerVersion ?? VERSIONS_2026[0], notification: m };
    }
    if (!isRequest(m))
      throw new HttpError(
        400,
        ErrorCode.InvalidRequest,
        'Invalid Request: protocol version 2026-07-28 has no client responses (there are no server requests to answer)',
      );
    const id = m.id;
    if (headerVersion === undefined) {
      throw mismatch(
        id,
        'the MCP-Protocol-Version header is required and must equal params._meta["io.modelcontextprotocol/protocolVersion"]',
        { header: 'MCP-Protocol-Version' },
      );
    }
    const meta = m.params?._meta;
    if (!isObject(meta))
      throw new HttpError(400, ErrorCode.InvalidParams, 'Invalid params: params._meta with the per-request protocol fields is required', {
        id: id,
      });
    const version = meta[META_PROTOCOL_VERSION];
    if (typeof version !== 'string')
      throw new HttpError(400, ErrorCode.InvalidParams, `Invalid params: params._meta["${META_PROTOCOL_VERSION}"] must be a string`, {
        id: id,
      });
    const caps = meta[META_CLIENT_CAPABILITIES];
    if (!isObject(caps))
      throw new HttpError(
        400,
        ErrorCode.InvalidParams,
        `Invalid params: params._meta["${META_CLIENT_CAPABILITIES}"] must be an object ({} for none)`,
        { id: id },
      );
    if (headerVersion !== version) {
      throw mismatch(id, `MCP-Protocol-Version ${JSON.stringify(headerVersion)} does not match the body's ${JSON.stringify(version)}`, {
        header: 'MCP-Protocol-Version',
        expected: version,
        received: headerVersion,
      });
    }
    if (!(VERSIONS_2026 as readonly string[]).includes(version)) {
      throw new HttpError(
        400,
        ErrorCode2026.UnsupportedProtocolVersion,
        `Unsupported protocol version ${JSON.stringify(version)} (supported: ${ALL_SUPPORTED_VERSIONS.join(', ')})`,
        {
          id: id,
          data: {
            supported: ALL_SUPPORTED_VERSIONS,
            requested: version,
          },
        },
      );
    }
    const method = header(req, METHOD_HEADER);
    if (method !== m.method) {
      throw mismatch(
        id,
        method === undefined
          ? 'the Mcp-Method header is required'
          : `Mcp-Method ${JSON.stringify(method)} does not match the body's method ${JSON.stringify(m.method)}`,
        {
          header: 'Mcp-Method',
          expected: m.method,
          ...(method !== undefined ? { received: method } : {}),
        },
      );
    }
    const param = NAME_PARAM[m.method];
    if (param) {
      const expected = m.params?.[param];
      if (typeof expected !== 'string')
        throw new HttpError(400, ErrorCode.InvalidParams, `Invalid params: ${m.method} needs a string params.${param}`, { id: id });
      const raw = header(req, NAME_HEADER);
      if (raw === undefined)
        throw mismatch(id, `the Mcp-Name header is required for ${m.method} (params.${param})`, { header: 'Mcp-Name', expected });
      const name = decodeHeaderValue(raw);
      if (name === undefined)
        throw mismatch(id, 'Mcp-Name is not a valid header value (raw visible ASCII, or =?base64?…?= UTF-8)', { header: 'Mcp-Name' });
      if (name !== expected)
        throw mismatch(id, `Mcp-Name does not match params.${param}`, { header: 'Mcp-Name', expected, received: name });
    }
    if (REMOVED_METHODS.has(m.method)) {
      throw new HttpError(404, ErrorCode.MethodNotFound, `Method not found: ${m.method} is not part of protocol version ${version}`, {
        id: id,
      });
    }
    return { era: '2026', version, request: m, clientCapabilities: caps };
  },

  /** A server of this revision has no GET stream and no sessions to delete. */
  checkOther(req: IncomingMessage): void {
    throw new HttpError(
      405,
      ErrorCode.ServerError,
      `Method Not Allowed: ${req.method} is not part of protocol version 2026-07-28 (POST only)`,
      { headers: { allow: 'POST' } },
    );
  },
};
