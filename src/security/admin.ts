// The admin API (/admin/...): runtime status, and listing, inspecting and ending sessions. Behind its own token;
// off (404) unless server.admin is configured.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerConfig } from '../config/schema.js';
import type { HostedRuntime } from '../runtime/base.js';
import { StatefulRuntime } from '../runtime/stateful.js';
import type { Session } from '../session/session.js';
import { HttpError, sendJson } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';

export interface AdminContext {
  runtimes: Map<string, HostedRuntime>;
  startedAt: number;
  draining: boolean;
}

/** The admin token's digest, or undefined when the API is off. Throws when configured but unusable. */
export function adminTokenDigest(admin: ServerConfig['admin']): Buffer | undefined {
  if (!admin) return undefined;
  if (admin.tokenSha256) return Buffer.from(admin.tokenSha256, 'hex');
  const token = process.env[admin.tokenEnv!];
  if (!token) throw new Error(`server.admin.tokenEnv: the environment variable ${admin.tokenEnv} is empty or unset`);
  return createHash('sha256').update(token).digest();
}

export function describeSession(s: Session): Record<string, unknown> {
  const server = s.server;
  return {
    id: s.id,
    runtime: s.runtimeName,
    state: s.state,
    principal: { kind: s.principal.kind, subject: s.principal.subject, issuer: s.principal.issuer },
    protocolVersion: s.protocolVersion,
    driver: server.sandbox.driver,
    pid: server.sandbox.pid,
    createdAt: new Date(s.createdAt).toISOString(),
    lastActivity: new Date(s.lastActivity).toISOString(),
    idleExpiresAt: s.idleExpiresAt === undefined ? null : new Date(s.idleExpiresAt).toISOString(),
    expiresAt: new Date(s.expiresAt).toISOString(),
    inFlight: s.inFlight,
    pendingServerRequests: server.kind === 'stdio' ? server.relay.pendingServerRequests : null,
    retainedEvents: server.kind === 'stdio' ? server.relay.streams.retainedEvents : null,
  };
}

function findSession(ctx: AdminContext, id: string): Session {
  for (const rt of ctx.runtimes.values()) {
    const s = rt instanceof StatefulRuntime ? rt.sessions.get(id) : undefined;
    if (s) return s;
  }
  throw new HttpError(404, ErrorCode.ServerError, 'Not Found: no live session with that id');
}

export async function handleAdmin(req: IncomingMessage, res: ServerResponse, path: string, digest: Buffer | undefined, ctx: AdminContext): Promise<void> {
  if (!digest) throw new HttpError(404, ErrorCode.ServerError, 'Not Found: the admin API is off (configure server.admin)');
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
  const presented = m ? createHash('sha256').update(m[1]!).digest() : undefined;
  if (!presented || !timingSafeEqual(presented, digest)) {
    throw new HttpError(401, ErrorCode.ServerError, 'Unauthorized: the admin API needs its token (Authorization: Bearer TOKEN)', { 'www-authenticate': 'Bearer realm="berth-admin"' });
  }
  const method = req.method ?? 'GET';
  if (path === '/admin/status' && method === 'GET') {
    const runtimes = Object.fromEntries(
      [...ctx.runtimes].map(([n, r]) => [n, { mode: r.config.mode, upstream: r.config.upstream, isolation: r.driverName, auth: r.auth.kind, sessions: r.sessionCount, warm: r.warmServers }]),
    );
    sendJson(res, 200, { status: ctx.draining ? 'draining' : 'ok', uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000), runtimes });
    return;
  }
  if (path === '/admin/sessions' && method === 'GET') {
    const sessions = [...ctx.runtimes.values()].flatMap((r) => (r instanceof StatefulRuntime ? [...r.sessions.values()].map(describeSession) : []));
    sendJson(res, 200, { sessions });
    return;
  }
  const one = /^\/admin\/sessions\/([A-Za-z0-9_-]{1,128})$/.exec(path);
  if (one && method === 'GET') {
    sendJson(res, 200, describeSession(findSession(ctx, one[1]!)));
    return;
  }
  if (one && method === 'DELETE') {
    await findSession(ctx, one[1]!).end('admin');
    res.writeHead(204).end();
    return;
  }
  throw new HttpError(404, ErrorCode.ServerError, `Not Found: ${method} ${path} (admin API: GET /admin/status, GET /admin/sessions, GET|DELETE /admin/sessions/ID)`);
}
