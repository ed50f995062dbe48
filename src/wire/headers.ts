// Every HTTP header berth reads or writes by name, and the one way to read a single value.
import type { IncomingMessage } from 'node:http';

/** 2025 revisions: the protocol session. */
export const SESSION_HEADER = 'mcp-session-id';
export const VERSION_HEADER = 'mcp-protocol-version';
export const LAST_EVENT_ID_HEADER = 'last-event-id';
/** 2026-07-28: the body's method and name, mirrored so that intermediaries can route without parsing JSON. */
export const METHOD_HEADER = 'mcp-method';
export const NAME_HEADER = 'mcp-name';
export const PARAM_HEADER_PREFIX = 'mcp-param-';
/** berth's runtime session: the sandbox a 2026 client (which has no protocol session) pins across calls. */
export const RUNTIME_SESSION_HEADER = 'berth-runtime-session';
/** AgentCore Runtime's own runtime-session header, accepted as an alias so its clients move over unchanged. */
export const AGENTCORE_SESSION_HEADER = 'x-amzn-bedrock-agentcore-runtime-session-id';
/** Cluster mode: a request a peer admitted and signed (never accepted from a client). */
export const FORWARDED_HEADER = 'berth-forwarded';
export const ORIGIN_HEADER = 'origin';

/** One header's value: the first when it came more than once, undefined when absent. */
export function header(req: Pick<IncomingMessage, 'headers'>, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
