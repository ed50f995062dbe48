// Which handler a request goes to, by path:
//   /mcp                  -> the runtime named "default" (or the only one)
//   /runtimes/NAME/mcp    -> runtime NAME (either with /sessions/ID before /mcp: a runtime session named by the URL)
//   /healthz, /readyz     -> liveness and readiness (/readyz?runtime=NAME: one runtime's)
//   /.well-known/oauth-protected-resource/...  -> RFC 9728 metadata of runtimes with auth
//   /admin/...            -> the admin API and dashboard (its own token; off unless configured)
//   /metrics              -> Prometheus metrics
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClusterNode } from '../cluster/node.js';
import type { History } from '../observe/history.js';
import type { Metrics } from '../observe/metrics.js';
import type { HostedRuntime } from '../runtime/hosted-runtime.js';
import { AGENTCORE_SESSION_HEADER, header, RUNTIME_SESSION_HEADER } from '../wire/headers.js';
import { HttpError, sendJson } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { handleAdmin } from './admin.js';
import type { FrontDoor } from './front-door.js';
import { healthz, readyz } from './health.js';
import { METADATA_PREFIX, protectedResourceMetadata } from './metadata.js';

/**
 * Header fields per request (Apache's LimitRequestFields). Node keeps only the first maxHeadersCount and drops the
 * rest silently — a Host after them would look missing — so it keeps one more than this, and more is refused (431).
 */
export const MAX_HEADERS = 100;

/** What the router reads of the running berth. */
export interface RouterView {
  readonly doors: ReadonlyMap<string, FrontDoor>;
  readonly runtimes: ReadonlyMap<string, HostedRuntime>;
  /** The runtime answering at /mcp. */
  readonly defaultName: string | undefined;
  readonly stopping: boolean;
  readonly startedAt: number;
  readonly metrics: Metrics;
  readonly history: History;
  readonly adminDigest: Buffer | undefined;
  readonly cluster?: ClusterNode;
  readonly publicUrl: string;
  /** Throws 403 when the request's Host is not a name berth answers to (host-check.ts). */
  readonly checkHost: (req: IncomingMessage) => void;
}

export function route(v: RouterView, req: IncomingMessage, res: ServerResponse): void {
  if (req.rawHeaders.length / 2 > MAX_HEADERS) {
    return new HttpError(431, ErrorCode.ServerError, `Request Header Fields Too Large: more than ${MAX_HEADERS} header fields`, {
      headers: { connection: 'close' },
    }).send(res);
  }
  if (req.httpVersion === '1.1' && req.headers.host === undefined) {
    return new HttpError(400, ErrorCode.ServerError, 'Bad Request: an HTTP/1.1 request must carry a Host header', {
      headers: { connection: 'close' },
    }).send(res);
  }
  try {
    v.checkHost(req);
  } catch (e) {
    return HttpError.from(e).send(res);
  }
  const path = (req.url ?? '/').split('?')[0]!;
  if (path === '/healthz') {
    const { status, body } = healthz(v);
    return sendJson(res, status, body);
  }
  if (path === '/readyz') {
    try {
      const { status, body } = readyz(v, new URL(req.url ?? '/', 'http://x').searchParams.get('runtime') ?? undefined);
      return sendJson(res, status, body);
    } catch (e) {
      return HttpError.from(e).send(res);
    }
  }
  if (path === '/metrics' && req.method === 'GET') {
    v.metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': v.metrics.registry.contentType }).end(text),
      (e: Error) => HttpError.from(e).send(res),
    );
    return;
  }
  if (path === METADATA_PREFIX || path.startsWith(`${METADATA_PREFIX}/`))
    return metadata(v, res, path.slice(METADATA_PREFIX.length) || '/mcp');
  if (path === '/admin' || path.startsWith('/admin/')) {
    const ctx = { runtimes: v.runtimes, startedAt: v.startedAt, draining: v.stopping, history: v.history, cluster: v.cluster };
    handleAdmin(req, res, path, v.adminDigest, ctx).catch((e) => HttpError.from(e).send(res));
    return;
  }
  const at = doorAt(v, path);
  if (!at) {
    const paths = [...v.doors.keys()].map((n) => `/runtimes/${n}/mcp`).join(', ');
    return new HttpError(404, ErrorCode.ServerError, `Not Found: no MCP endpoint at ${path} (runtimes: ${paths})`).send(res);
  }
  // A runtime session may be named by the URL or by AgentCore's header, as well as by Berth-Runtime-Session.
  const named = [at.session, header(req, AGENTCORE_SESSION_HEADER), header(req, RUNTIME_SESSION_HEADER)].filter(
    (s): s is string => s !== undefined,
  );
  if (new Set(named).size > 1) {
    at.door.cors.decorate(req, res);
    return new HttpError(
      400,
      ErrorCode.ServerError,
      'Bad Request: the URL and the runtime-session headers name different runtime sessions',
    ).send(res);
  }
  void at.door.handle(req, res, named[0]);
}

/** `/mcp`, `/runtimes/NAME/mcp`, and either with `/sessions/ID` before `/mcp` (a runtime session named in the URL). */
function doorAt(v: RouterView, path: string): { door: FrontDoor; session?: string } | undefined {
  const m = /^(?:\/runtimes\/([^/]+))?(?:\/sessions\/([^/]+))?\/mcp$/.exec(path);
  if (!m) return undefined;
  try {
    const name = m[1] === undefined ? v.defaultName : decodeURIComponent(m[1]);
    const door = name === undefined ? undefined : v.doors.get(name);
    return door && { door, ...(m[2] === undefined ? {} : { session: decodeURIComponent(m[2]) }) };
  } catch {
    return undefined; // malformed percent-encoding: no such runtime
  }
}

function metadata(v: RouterView, res: ServerResponse, resourcePath: string): void {
  const rt = doorAt(v, resourcePath)?.door.runtime;
  const doc = rt && protectedResourceMetadata(rt, `${v.publicUrl}${resourcePath}`);
  if (!doc)
    return new HttpError(
      404,
      ErrorCode.ServerError,
      `Not Found: no protected resource at ${resourcePath} (runtimes without auth have no metadata)`,
    ).send(res);
  sendJson(res, 200, doc, { 'cache-control': 'max-age=300' });
}
