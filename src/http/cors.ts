// CORS for one runtime: lets a web page on an origin the runtime lists (cors.allowedOrigins) call its MCP endpoint
// from a browser. Its step in the front door's pipeline answers preflights (OPTIONS) and marks every other response
// — refusals included — so the page can read it. A runtime without cors.allowedOrigins gets none of this: no CORS
// headers, and OPTIONS goes on to be refused as before.
//
// Written here rather than with the `cors` package: that one answers every preflight 204 and has no way to refuse
// one with a status and a JSON-RPC body saying why, which is what berth answers everything else with.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CorsConfig } from '../config/schema.js';
import { header } from '../wire/headers.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import type { Step } from './compose.js';

/** The methods of the MCP endpoint. */
const METHODS = ['POST', 'GET', 'DELETE'];

/** Response headers a page may read besides the CORS-safelisted ones: the session, the era, why auth failed, when to retry. */
export const EXPOSED_HEADERS = 'Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Berth-Runtime-Session, Retry-After';

/**
 * Request headers a page may send: those of the MCP transport (both eras: the 2026 mirrors of the body's method,
 * name and params included), the credentials berth reads, and berth's runtime-session headers. A runtime's
 * forwardHeaders are added to these, since the server behind it reads them.
 */
const MCP_REQUEST_HEADERS = [
  'content-type',
  'accept',
  'authorization',
  'x-api-key',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
  'berth-runtime-session',
  'x-amzn-bedrock-agentcore-runtime-session-id',
];
const MCP_PARAM_PREFIX = 'mcp-param-';

export class CorsPolicy {
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly requestHeaders: ReadonlySet<string>;
  private readonly maxAgeSeconds: string;

  constructor(config: CorsConfig, forwardHeaders: readonly string[] = []) {
    this.anyOrigin = config.allowedOrigins.includes('*');
    this.origins = new Set(config.allowedOrigins);
    this.requestHeaders = new Set([...MCP_REQUEST_HEADERS, ...forwardHeaders.map((h) => h.toLowerCase())]);
    this.maxAgeSeconds = String(Math.floor(config.maxAge / 1000));
  }

  /** Whether this runtime answers browsers at all (cors.allowedOrigins set). */
  get enabled(): boolean {
    return this.anyOrigin || this.origins.size > 0;
  }

  allows(origin: string): boolean {
    return this.anyOrigin || this.origins.has(origin);
  }

  /**
   * Marks the response for a browser: set before any step can refuse, so a 401 or 429 carries them too. The
   * origin is echoed (never `*`, so the answer is the same with or without credentials), and caches told it varies.
   */
  decorate(req: IncomingMessage, res: ServerResponse): void {
    if (!this.enabled) return;
    res.setHeader('vary', 'Origin');
    const origin = header(req, 'origin');
    if (origin === undefined || !this.allows(origin)) return;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
  }

  /**
   * Answers a preflight: 204 granting the method and exactly the headers it asked for, when all are among
   * those berth takes from a browser; else a refusal naming what is not allowed (the browser then sends nothing).
   */
  preflight(req: IncomingMessage, res: ServerResponse, origin: string, method: string): void {
    if (!this.allows(origin))
      throw new HttpError(
        403,
        ErrorCode.ServerError,
        `Forbidden: Origin ${JSON.stringify(origin)} may not call this runtime from a browser (cors.allowedOrigins)`,
      );
    if (!METHODS.includes(method))
      throw new HttpError(405, ErrorCode.ServerError, `Method Not Allowed: ${method} (use POST, GET or DELETE)`, {
        headers: { allow: METHODS.join(', ') },
      });
    const asked = (header(req, 'access-control-request-headers') ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== '');
    const refused = asked.filter((h) => !this.requestHeaders.has(h) && !h.startsWith(MCP_PARAM_PREFIX));
    if (refused.length > 0)
      throw new HttpError(
        403,
        ErrorCode.ServerError,
        `Forbidden: a browser may not send ${refused.join(', ')} to this runtime (allowed: ${[...this.requestHeaders].join(', ')}, mcp-param-*)`,
      );
    res.writeHead(204, {
      'access-control-allow-methods': METHODS.join(', '),
      ...(asked.length > 0 ? { 'access-control-allow-headers': asked.join(', ') } : {}),
      'access-control-max-age': this.maxAgeSeconds,
      vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    });
    res.end();
  }
}

/** The pipeline step: marks the response, answers a preflight, and passes everything else on. */
export function corsStep<T extends { req: IncomingMessage; res: ServerResponse }>(policy: CorsPolicy): Step<T> {
  return async (t, next) => {
    if (!policy.enabled) return next();
    policy.decorate(t.req, t.res);
    const origin = header(t.req, 'origin');
    const method = header(t.req, 'access-control-request-method');
    // A preflight is an OPTIONS with an Origin and the method it asks for; any other OPTIONS is refused as before.
    if (t.req.method === 'OPTIONS' && origin !== undefined && method !== undefined) return policy.preflight(t.req, t.res, origin, method);
    return next();
  };
}
