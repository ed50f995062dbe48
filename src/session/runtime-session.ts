// Runtime sessions: how a 2026-07-28 client (which has no protocol session) reaches the same sandbox across calls.
// The client names one in the Berth-Runtime-Session header; berth creates its sandbox on first use and keeps it
// under the same lifecycle as a protocol session (Session: idle timeout, max lifetime, principal binding, audit).
// The key is runtime + principal + id, so another principal naming the same id gets a sandbox of its own.
import { HttpError } from '../wire/http-error.js';
import type { StartGate } from './start-gate.js';
import type { Logger } from 'pino';
import type { Metrics } from '../observe/metrics.js';
import { principalKey, type Principal } from '../security/auth.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import { logId, type LaunchContext, type Launched } from './launch.js';
import { WarmPool } from './pool.js';
import { Session, type EndReason } from './session.js';

const ID = /^[A-Za-z0-9_-]{22,128}$/;

/** A session that ended other than by DELETE keeps answering 404 with why, so lost state is never silent. */
interface Tombstone {
  reason: EndReason;
  detail: string;
  until: number;
}

export class RuntimeSessions {
  private readonly live = new Map<string, Promise<Session>>();
  private readonly tombstones = new Map<string, Tombstone>();
  private readonly perPrincipal = new Map<string, number>();
  private readonly sessions = new Set<Session>();
  private readonly pool: WarmPool;
  private closed = false;

  constructor(
    private readonly ctx: LaunchContext,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    /** The runtime's start slots, shared with its other pools. */
    starts?: StartGate,
  ) {
    this.pool = new WarmPool(ctx, ctx.config.warmPool, log, starts);
  }

  get size(): number {
    return this.live.size;
  }

  /** The live runtime sessions (for the admin API). */
  list(): Session[] {
    return [...this.sessions].filter((s) => s.live);
  }

  /** The header's id, checked; undefined when the request names no runtime session. */
  static idOf(value: string | string[] | undefined, requestId: string | number | null): string | undefined {
    if (value === undefined) return undefined;
    const id = Array.isArray(value) ? value[0]! : value;
    if (!ID.test(id))
      throw new HttpError(
        400,
        ErrorCode.ServerError,
        'Bad Request: Berth-Runtime-Session must be 22 to 128 characters of A-Z a-z 0-9 _ -',
        { id: requestId },
      );
    return id;
  }

  private key(id: string, principal: Principal): string {
    return JSON.stringify([this.ctx.runtimeName, principalKey(principal), id]);
  }

  /** The caller's session of that id, created (from fresh, never-shared servers) on first use. */
  async get(id: string, principal: Principal, requestId: string | number): Promise<Session> {
    const key = this.key(id, principal);
    const grave = this.tombstones.get(key);
    if (grave && grave.until > Date.now()) {
      throw new HttpError(
        404,
        -31001,
        `Runtime session ended (${grave.reason}: ${grave.detail}); its state is gone. Name a new id to start another`,
        { id: requestId, data: { reason: grave.reason } },
      );
    }
    this.tombstones.delete(key);
    let pending = this.live.get(key);
    if (!pending) {
      pending = this.create(key, id, principal, requestId);
      this.live.set(key, pending);
      pending.catch(() => this.live.delete(key));
    }
    const session = await pending;
    if (!session.live) throw new HttpError(404, -31001, 'Runtime session ended; name a new id to start another', { id: requestId });
    session.touch();
    return session;
  }

  /** Ends the caller's session of that id (DELETE); false when there is none. */
  async end(id: string, principal: Principal): Promise<boolean> {
    const pending = this.live.get(this.key(id, principal));
    if (!pending) return false;
    const session = await pending.catch(() => undefined);
    if (!session?.live) return false;
    await session.end('deleted');
    return true;
  }

  private async create(key: string, id: string, principal: Principal, requestId: string | number): Promise<Session> {
    if (this.closed)
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', {
        id: requestId,
        headers: { 'retry-after': '5' },
      });
    const { maxSessions, maxSessionsPerPrincipal } = this.ctx.config.limits;
    if (this.live.size >= maxSessions) {
      throw new HttpError(
        503,
        ErrorCode.ServerError,
        `Service Unavailable: this runtime holds its maximum of ${maxSessions} runtime sessions (maxSessions)`,
        { id: requestId, headers: { 'retry-after': '5' } },
      );
    }
    const who = principalKey(principal);
    const held = this.perPrincipal.get(who) ?? 0;
    if (principal.kind !== 'anonymous' && held >= maxSessionsPerPrincipal) {
      throw new HttpError(
        429,
        ErrorCode.ServerError,
        `Too Many Requests: ${principal.subject} already holds ${held} runtime sessions (limits.maxSessionsPerPrincipal); DELETE one first`,
        { id: requestId, headers: { 'retry-after': '30' } },
      );
    }
    this.perPrincipal.set(who, held + 1);
    for (const [k, t] of this.tombstones) if (t.until <= Date.now()) this.tombstones.delete(k);
    let server: Launched;
    try {
      server = await this.pool.take();
    } catch (e) {
      this.release(who);
      throw new HttpError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server could not be started: ${(e as Error).message}`, {
        id: requestId,
      });
    } finally {
      setTimeout(() => this.pool.fill(), 250).unref(); // refill after this start, not competing with it
    }
    const session = new Session(server, this.ctx.runtimeName, this.ctx.config, principal);
    session.kind = 'runtime';
    this.sessions.add(session);
    const audit = {
      runtimeSession: id.slice(0, 8),
      session: logId(session.id),
      principal: principal.subject,
      issuer: principal.issuer,
      auth: principal.kind,
    };
    this.log.info(
      { audit: 'session.created', kind: 'runtime', ...audit, driver: server.sandbox.driver, pid: server.sandbox.pid },
      'runtime session created',
    );
    this.metrics?.sessionsCreated.inc({ runtime: this.ctx.runtimeName });
    session.once('ended', (reason, detail) => {
      this.release(who);
      this.sessions.delete(session);
      if (this.live.get(key)) this.live.delete(key);
      if (reason !== 'deleted') this.tombstones.set(key, { reason, detail, until: session.createdAt + this.ctx.config.maxLifetime });
      this.metrics?.sessionsEnded.inc({ runtime: this.ctx.runtimeName, reason });
      this.log.info(
        { audit: 'session.ended', kind: 'runtime', ...audit, reason, detail, durationMs: Date.now() - session.createdAt },
        'runtime session ended',
      );
    });
    return session;
  }

  private release(who: string): void {
    const n = (this.perPrincipal.get(who) ?? 1) - 1;
    if (n > 0) this.perPrincipal.set(who, n);
    else this.perPrincipal.delete(who);
  }

  get busy(): boolean {
    return [...this.sessions].some((s) => s.inFlight > 0);
  }

  async close(): Promise<void> {
    this.closed = true;
    const sessions = await Promise.allSettled([...this.live.values()]);
    await Promise.all(sessions.map((s) => (s.status === 'fulfilled' ? s.value.end('shutdown') : undefined)));
    await this.pool.close();
  }
}
