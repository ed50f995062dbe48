// JSON-RPC 2.0 message shapes, classification and error construction.

export type JsonRpcId = string | number;
export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: JsonRpcId;
  method: string;
  params?: Record<string, unknown>;
}
export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: Record<string, unknown>;
}
export interface JsonRpcResponse {
  jsonrpc: '2.0';
  /** null or absent: an error answering a request whose id could not be read (see `unreadId`). */
  id?: JsonRpcId | null;
  result?: unknown;
  error?: JsonRpcErrorObject;
}
export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;
/** A POST body: one message, or a batch of them. */
export interface ParsedBody {
  messages: JsonRpcMessage[];
  batch: boolean;
}

export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Generic server/transport error (used by the MCP SDKs for HTTP-level refusals). */
  ServerError: -32000,
  /** Session unknown, ended or expired (same code the MCP TypeScript SDK uses). */
  SessionNotFound: -32001,
  /** The session or its server ended while the request was in flight. */
  SessionEnded: -32002,
  /** The request was cancelled by its sender. */
  RequestCancelled: -32800,
} as const;

export function isRequest(m: JsonRpcMessage): m is JsonRpcRequest {
  return 'method' in m && 'id' in m && m.id !== undefined && m.id !== null;
}
export function isNotification(m: JsonRpcMessage): m is JsonRpcNotification {
  return 'method' in m && !('id' in m && m.id !== undefined && m.id !== null);
}
export function isResponse(m: JsonRpcMessage): m is JsonRpcResponse {
  return !('method' in m) && ('result' in m || 'error' in m);
}

/** An error response; an `id` of undefined leaves the member out (see `unreadId`). */
export function errorResponse(id: JsonRpcId | null | undefined, code: number, message: string, data?: unknown): JsonRpcResponse {
  const error: JsonRpcErrorObject = { code, message };
  if (data !== undefined) error.data = data;
  return id === undefined ? { jsonrpc: '2.0', error } : { jsonrpc: '2.0', id, error };
}

/**
 * Revisions whose schema makes an error response's id optional (`JSONRPCErrorResponse.id?: RequestId`, never null):
 * "Error responses MUST include the same ID as the request they correspond to (except in error cases where the ID
 * could not be read due a malformed request)" (2025-11-25 and 2026-07-28, basic/index, Error Responses).
 */
const ID_MAY_BE_OMITTED = new Set(['2025-11-25', '2026-07-28']);

/**
 * The id of an error that cannot name its request, under the protocol version in play: left out (undefined) from
 * 2025-11-25 on, JSON-RPC 2.0's `null` before. An unknown version (no MCP-Protocol-Version header, or one berth does
 * not speak) is taken as 2025-03-26, as the Streamable HTTP transport tells a server to assume when nothing else
 * says the version; so is a request refused before any header was read. `null` is also what every JSON-RPC 2.0
 * peer accepts.
 */
export function unreadId(protocolVersion: string | undefined): null | undefined {
  return protocolVersion !== undefined && ID_MAY_BE_OMITTED.has(protocolVersion) ? undefined : null;
}

/** Why a parsed value is not a JSON-RPC 2.0 message, or undefined when it is one. */
export function invalidMessageReason(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'a JSON-RPC message must be a JSON object';
  const o = v as Record<string, unknown>;
  if (o.jsonrpc !== '2.0') return 'the "jsonrpc" member must be exactly "2.0"';
  const hasId = 'id' in o && o.id !== undefined;
  if (hasId && typeof o.id !== 'string' && !(typeof o.id === 'number' && Number.isFinite(o.id)) && o.id !== null) {
    return 'the "id" member must be a string or a number';
  }
  if ('method' in o) {
    if (typeof o.method !== 'string' || o.method.length === 0) return 'the "method" member must be a non-empty string';
    if (hasId && o.id === null) return 'a request "id" must not be null';
    if ('params' in o && o.params !== undefined && (typeof o.params !== 'object' || o.params === null)) {
      return 'the "params" member must be an object or an array';
    }
    return undefined;
  }
  if (!hasId) return 'a message needs a "method" (request or notification) or an "id" with "result" or "error" (response)';
  if ('result' in o === 'error' in o) return 'a response must carry exactly one of "result" and "error"';
  if ('error' in o) {
    const e = o.error as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || typeof e.code !== 'number' || typeof e.message !== 'string') {
      return 'a response "error" must be an object with a numeric "code" and a string "message"';
    }
  }
  return undefined;
}

const CALL_MEMBERS = new Set(['jsonrpc', 'id', 'method', 'params']);
const RESPONSE_MEMBERS = new Set(['jsonrpc', 'id', 'result', 'error']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Why a message from a client is not one an MCP server takes, or undefined. Stricter than JSON-RPC alone, as MCP
 * is: no members beyond JSON-RPC's own, `params` and `result` are objects, `params._meta` an object whose
 * progressToken is a string or a number, error codes are integers. A server handed anything else (the official
 * SDKs among them) drops the message without a word, so the client's call would hang instead of being refused.
 */
export function invalidClientMessageReason(v: unknown): string | undefined {
  const why = invalidMessageReason(v);
  if (why) return why;
  const o = v as Record<string, unknown>;
  const call = 'method' in o;
  const allowed = call ? CALL_MEMBERS : RESPONSE_MEMBERS;
  const extra = Object.keys(o).find((k) => !allowed.has(k));
  if (extra !== undefined) {
    return `unexpected member ${JSON.stringify(extra.slice(0, 50))}: a JSON-RPC ${call ? 'request or notification' : 'response'} has only ${[...allowed].join(', ')}`;
  }
  if (call && o.params !== undefined) {
    if (!isObject(o.params)) return 'the "params" member must be an object (MCP)';
    const meta = o.params._meta;
    if (meta !== undefined) {
      if (!isObject(meta)) return '"params._meta" must be an object';
      const token = meta.progressToken;
      if (token !== undefined && typeof token !== 'string' && !(typeof token === 'number' && Number.isFinite(token))) {
        return '"params._meta.progressToken" must be a string or a number';
      }
    }
  }
  if (!call && 'result' in o && !isObject(o.result)) return 'a response "result" must be an object (MCP)';
  if (!call && 'error' in o && !Number.isInteger((o.error as { code: number }).code)) return 'a response error "code" must be an integer';
  return undefined;
}

/** A key for maps of ids: 1 and "1" are different JSON-RPC ids. */
export function idKey(id: JsonRpcId): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}
