// One POST as the wire layer understood it: read, parsed, its client's era decided, and checked against that era's
// rules. Everything past the front door works on this type; nothing re-reads the body or casts `messages[0]`.
import type { IncomingMessage } from 'node:http';
import { classifyEra } from './era.js';
import type { JsonRpcNotification, JsonRpcRequest, ParsedBody } from './jsonrpc.js';
import { parseMessages, wire2025 } from './streamable-http.js';
import { wire2026 } from './streamable-http-2026.js';

/** A 2025 client's POST (initialize, a request, a batch, notifications or answers), within its session. */
export interface Post2025 {
  clientEra: '2025';
  body: Buffer;
  parsed: ParsedBody;
  /** The revision the request is served at (its header, or the default the spec names). */
  version: string;
}

/** A 2026-07-28 client's single request: self-contained, with its capabilities in `_meta`. */
export interface Request2026 {
  clientEra: '2026';
  body: Buffer;
  version: string;
  request: JsonRpcRequest;
  clientCapabilities: Record<string, unknown>;
}

/** A 2026-07-28 client's notification: none is defined on HTTP in that revision, so it is accepted and dropped. */
export interface Notification2026 {
  clientEra: '2026';
  body: Buffer;
  version: string;
  notification: JsonRpcNotification;
}

export type InboundPost = Post2025 | Request2026 | Notification2026;

/** Classifies a parsed POST body by its client's era; throws the exact refusal of the era it belongs to. */
export function inboundPost(req: IncomingMessage, body: Buffer, parsed: ParsedBody = parseMessages(body)): InboundPost {
  if (classifyEra(req, parsed) === '2025') return { clientEra: '2025', body, parsed, version: wire2025.validatePost(req, parsed).version };
  const ctx = wire2026.validatePost(req, parsed);
  if (ctx.era !== '2026') throw new Error('unreachable: the 2026 rules judged a POST of another era');
  if ('notification' in ctx) return { clientEra: '2026', body, version: ctx.version, notification: ctx.notification };
  return { clientEra: '2026', body, version: ctx.version, request: ctx.request, clientCapabilities: ctx.clientCapabilities };
}

/** What a log line names a parsed POST by: its method ("batch", "response"), and its id when it has one. */
export function describeParsed(parsed: ParsedBody): { method: string; id?: unknown } {
  if (parsed.batch) return { method: 'batch' };
  const m = parsed.messages[0]!;
  return { method: 'method' in m ? m.method : 'response', ...('id' in m ? { id: m.id } : {}) };
}

/** The id a refusal of this POST answers (null for a batch, a notification or a bare answer). */
export function idOf(p: InboundPost): string | number | null {
  if (p.clientEra === '2026') return 'request' in p ? p.request.id : null;
  if (p.parsed.batch) return null;
  const m = p.parsed.messages[0]!;
  return 'id' in m && m.id !== undefined ? m.id : null;
}

/** The POST opens a session (a 2025 initialize). */
export function createsSession(p: InboundPost): boolean {
  return p.clientEra === '2025' && p.parsed.messages.some((m) => 'method' in m && 'id' in m && m.method === 'initialize');
}
