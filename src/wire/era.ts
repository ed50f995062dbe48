// Which era of MCP a client speaks, decided per request once its body is parsed: "2026" (2026-07-28 on, no
// handshake, per-request _meta) or "2025" (the initialize-handshake revisions up to 2025-11-25). Both are served
// on one endpoint at once; each era's wire rules sit behind WireRevision.
import type { IncomingMessage } from 'node:http';
import type { JsonRpcNotification, JsonRpcRequest, ParsedBody } from './jsonrpc.js';
import { header, SESSION_HEADER, VERSION_HEADER } from './headers.js';

export type Era = '2025' | '2026';

export const VERSIONS_2026 = ['2026-07-28'] as const;
export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
/** Tags every message of a subscriptions/listen stream: the listen request's JSON-RPC id. */
export const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';

/** What the wire layer learned about one valid POST: its client's era, and for a 2026 client the one message. */
export type RequestContext =
  | { era: '2025'; version: string }
  /** No client notification is defined on HTTP in 2026-07-28: it is accepted and dropped. */
  | { era: '2026'; version: string; notification: JsonRpcNotification }
  | { era: '2026'; version: string; request: JsonRpcRequest; clientCapabilities: Record<string, unknown> };

/** One era's Streamable HTTP rules: 2025 in streamable-http.ts, 2026-07-28 in streamable-http-2026.ts. */
export interface WireRevision {
  readonly era: Era;
  readonly versions: readonly string[];
  /** Checks a parsed POST against this revision's rules; throws the exact refusal. */
  validatePost(req: IncomingMessage, parsed: ParsedBody): RequestContext;
  /** Checks a GET or DELETE; throws the exact refusal. */
  checkOther(req: IncomingMessage): void;
}

export function is2026Version(v: string | undefined): boolean {
  return v !== undefined && (VERSIONS_2026 as readonly string[]).includes(v);
}

/** The per-request envelope's protocol version key is present (whatever its value). */
export function hasEnvelope(message: unknown): boolean {
  const params = (message as { params?: unknown }).params;
  const meta = typeof params === 'object' && params !== null ? (params as { _meta?: unknown })._meta : undefined;
  return typeof meta === 'object' && meta !== null && META_PROTOCOL_VERSION in meta;
}

/**
 * The envelope decides first (a request carrying the 2026 _meta is a 2026 client's, even with a session id). Without
 * one, a batch, `initialize` or an `Mcp-Session-Id` means 2025, and so does a missing, 2025 or unknown version header
 * (unknown ones keep their 2025 refusal); only a 2026 version header makes a bare message 2026, so that it is
 * refused by the 2026 rules (missing _meta, batch) rather than the 2025 ones.
 */
export function classifyEra(req: IncomingMessage, parsed: ParsedBody): Era {
  const first = parsed.messages[0]!;
  if (!parsed.batch && hasEnvelope(first)) return '2026';
  const header2026 = is2026Version(header(req, VERSION_HEADER));
  if (parsed.batch) return header2026 ? '2026' : '2025';
  if ((first as { method?: string }).method === 'initialize') return '2025';
  if (header(req, SESSION_HEADER) !== undefined) return '2025';
  return header2026 ? '2026' : '2025';
}

/** GET and DELETE carry no body: a 2026 version header alone makes them 2026. */
export function classifyBodiless(req: IncomingMessage): Era {
  return is2026Version(header(req, VERSION_HEADER)) ? '2026' : '2025';
}
