// The admin API (/admin/...): runtime status, and listing, inspecting and ending sessions, and the live dashboard
// (its page at /admin/, its feed at /admin/events). Behind its own token; off (404) unless server.admin is configured.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerConfig } from '../config/schema.js';
import { isAsset, serveAsset } from '../dashboard/assets.js';
import { streamSnapshots } from '../dashboard/events.js';
import { sessionLimits } from '../dashboard/limits.js';
import type { History } from '../observe/history.js';
import { MemoryReader } from '../observe/memory.js';
import type { HostedRuntime } from '../runtime/hosted-runtime.js';
import type { Session } from '../session/session.js';
import { HttpError, sendJson } from '../wire/http-error.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import type { ClusterNode } from '../cluster/node.js';
import { parseDuration } from '../util/units.js';

export interface AdminContext {
  runtimes: ReadonlyMap<string, HostedRuntime>;
  startedAt: number;
  draining: boolean;
  /** Live sessions and request rate over the last hour, for the dashboard's chart. */
  history?: History;
  /** Cluster mode: this node (drain, membership in /admin/status). */
  cluster?: ClusterNode;
}

/** Shared by every admin reader, so dashboards watching at once cost one /proc reading per couple of seconds. */
const memory = new MemoryReader();

/** The admin token's digest, or undefined when the API is off. Throws when configured but unusable. */
export function adminTokenDigest(admin: ServerConfig['admin']): Buffer | undefined {
  if (!admin) return undefined;
  if (admin.tokenSha256) return Buffer.from(admin.tokenSha256, 'hex');
  const token = process.env[admin.tokenEnv!];
  if (!token) throw new Error(`server.admin.tokenEnv: the environment variable ${admin.tokenEnv} is empty or unset`);
  return createHash('sha256').update(token).digest();
}

export function describeSession(s: Session, now = Date.now()): Record<string, unknown> {
  const server = s.server;
  const idleAt = s.idleExpiresAt;
  const seconds = (ms: number) => Math.max(0, Math.round(ms / 1000));
  return {
    id: s.id,
    kind: s.kind,
    runtime: s.runtimeName,
    state: s.state,
    principal: { kind: s.principal.kind, subject: s.principal.subject, issuer: s.principal.issuer },
    protocolVersion: s.protocolVersion,
    driver: server.sandbox.driver,
    pid: server.sandbox.pid,
    createdAt: new Date(s.createdAt).toISOString(),
    lastActivity: new Date(s.lastActivity).toISOString(),
    lastTraffic: new Date(s.lastTraffic).toISOString(),
    idleExpiresAt: s.idleExpiresAt === undefined ? null : new Date(s.idleExpiresAt).toISOString(),
    expiresAt: new Date(s.expiresAt).toISOString(),
    ageSeconds: seconds(now - s.createdAt),
    // Since the last message either way: a call streaming progress is not idle.
    idleSeconds: seconds(now - s.lastTraffic),
    // null while a call is in flight: a busy session is never idle.
    idleExpiresInSeconds: idleAt === undefined ? null : seconds(idleAt - now),
    expiresInSeconds: seconds(s.expiresAt - now),
    inFlight: s.inFlight,
    pendingServerRequests: server.upstream.pendingServerRequests,
    retainedEvents: server.upstream.retainedEvents,
    limits: sessionLimits(s.config, server.sandbox.driver),
  };
}

/** describeSession plus memory: the PSS of each session's sandbox process tree (null when it cannot be read). */
async function describeWithMemory(sessions: Session[]): Promise<Record<string, unknown>[]> {
  const mem = await memory.read(sessions.map((s) => s.server.sandbox.pid).filter((p): p is number => typeof p === 'number'));
  const now = Date.now();
  return sessions.map((s) => {
    const m = s.server.sandbox.pid === undefined ? undefined : mem.get(s.server.sandbox.pid);
    return { ...describeSession(s, now), memory: m ? { pssBytes: m.pssBytes, processes: m.processes } : null };
  });
}

/** Protocol sessions (Mcp-Session-Id) and runtime sessions (Berth-Runtime-Session) alike. */
function liveSessions(ctx: AdminContext): Session[] {
  return [...ctx.runtimes.values()].flatMap((r) => [...r.protocolSessionList, ...r.runtimeSessionList]);
}

function status(ctx: AdminContext): Record<string, unknown> {
  const runtimes = Object.fromEntries(
    [...ctx.runtimes].map(([n, r]) => [
      n,
      {
        mode: r.config.mode,
        upstream: r.config.upstream,
        // What the servers are: the image pinned by its digest, or the command (and an image's override of it).
        ...r.shown,
        isolation: r.driverName,
        auth: r.config.auth.kind,
        sessions: r.sessionCount,
        runtimeSessions: r.runtimeSessionList.length,
        warm: r.warmServers,
      },
    ]),
  );
  const draining = ctx.draining || !!ctx.cluster?.draining;
  return {
    status: draining ? 'draining' : 'ok',
    uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
    runtimes,
    ...(ctx.cluster ? { cluster: ctx.cluster.status() } : {}),
  };
}

/** What the dashboard shows, all at once: status, sessions with memory, and the chart's history. */
async function snapshot(ctx: AdminContext) {
  const history = ctx.history?.points ?? [];
  return {
    ...status(ctx),
    now: new Date().toISOString(),
    sessions: await describeWithMemory(liveSessions(ctx)),
    historyIntervalSeconds: (ctx.history?.intervalMs ?? 0) / 1000,
    history,
    historyAt: history.at(-1)?.t,
  };
}

function findSession(ctx: AdminContext, id: string): Session {
  const s = liveSessions(ctx).find((x) => x.id === id);
  if (s) return s;
  throw new HttpError(404, ErrorCode.ServerError, 'Not Found: no live session with that id');
}

export async function handleAdmin(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  digest: Buffer | undefined,
  ctx: AdminContext,
): Promise<void> {
  if (!digest) throw new HttpError(404, ErrorCode.ServerError, 'Not Found: the admin API is off (configure server.admin)');
  // The dashboard's files carry no data: a browser loads them without a header, then asks for the token.
  if (path === '/admin' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(308, { location: 'admin/' }).end(); // relative: right behind a proxy's path prefix too
    return;
  }
  if (isAsset(path, req.method)) return serveAsset(req, res, path);
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
  const presented = m ? createHash('sha256').update(m[1]!).digest() : undefined;
  if (!presented || !timingSafeEqual(presented, digest)) {
    throw new HttpError(401, ErrorCode.ServerError, 'Unauthorized: the admin API needs its token (Authorization: Bearer TOKEN)', {
      headers: { 'www-authenticate': 'Bearer realm="berth-admin"' },
    });
  }
  const method = req.method ?? 'GET';
  if (path === '/admin/status' && method === 'GET') {
    sendJson(res, 200, status(ctx));
    return;
  }
  if (path === '/admin/events' && method === 'GET') {
    streamSnapshots(req, res, () => snapshot(ctx));
    return;
  }
  if (path === '/admin/sessions' && method === 'GET') {
    sendJson(res, 200, { sessions: await describeWithMemory(liveSessions(ctx)) });
    return;
  }
  if (path === '/admin/drain' && (method === 'POST' || method === 'DELETE')) {
    if (!ctx.cluster)
      throw new HttpError(
        409,
        ErrorCode.ServerError,
        'Conflict: draining moves new sessions to other nodes; this berth is not in cluster mode (configure cluster:)',
      );
    if (method === 'DELETE') await ctx.cluster.undrain();
    else await ctx.cluster.drain(await drainDeadline(req));
    sendJson(res, 200, ctx.cluster.status());
    return;
  }
  // Cluster ids (c1.node.inc.rand.mac) have dots.
  const one = /^\/admin\/sessions\/([A-Za-z0-9_.-]{1,160})$/.exec(path);
  if (one && method === 'GET') {
    sendJson(res, 200, (await describeWithMemory([findSession(ctx, one[1]!)]))[0]);
    return;
  }
  if (one && method === 'DELETE') {
    await findSession(ctx, one[1]!).end('admin');
    res.writeHead(204).end();
    return;
  }
  throw new HttpError(
    404,
    ErrorCode.ServerError,
    `Not Found: ${method} ${path} (admin API: GET /admin/status, GET /admin/events, POST|DELETE /admin/drain, GET /admin/sessions, GET|DELETE /admin/sessions/ID; dashboard: /admin/)`,
  );
}

/** The optional {"deadline":"10m"} of POST /admin/drain: after it, the node's remaining sessions end. */
async function drainDeadline(req: IncomingMessage): Promise<number | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 4096) throw new HttpError(413, ErrorCode.ServerError, 'Payload Too Large: the drain body is at most 4 KiB');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, ErrorCode.ParseError, 'Parse error: the drain body must be JSON, e.g. {"deadline":"10m"}');
  }
  const d = (body as { deadline?: unknown } | null)?.deadline;
  if (d === undefined || d === null) return undefined;
  try {
    if (typeof d !== 'string' && typeof d !== 'number') throw new Error('not a duration');
    const ms = parseDuration(d);
    // Node timers hold at most 2^31-1 ms: a longer deadline would fire at once and end every session.
    if (ms > 2 ** 31 - 1) throw new Error('longer than 24 days');
    return ms;
  } catch (e) {
    throw new HttpError(
      400,
      ErrorCode.InvalidParams,
      `Bad Request: deadline: ${(e as Error).message} (a duration with its unit, like "90s" or "10m")`,
    );
  }
}
