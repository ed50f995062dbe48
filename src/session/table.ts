// One runtime's sessions of one kind — protocol sessions (Mcp-Session-Id, 2025 clients) or runtime sessions
// (Berth-Runtime-Session, 2026 clients) — in one place: the caps (maxSessions, maxSessionsPerPrincipal, counting those
// still starting), a server that cannot be started answered as 503 or 502, and each session's audit lines and metrics
// from creation to end.
import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/schema.js';
import type { Metrics } from '../observe/metrics.js';
import { principalKey, type Principal } from '../security/auth.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode, type JsonRpcId } from '../wire/jsonrpc.js';
import { logId, type Launched } from './launch.js';
import { Session, type EndReason } from './session.js';
import { StartQueueTimeout } from './start-gate.js';
import { freeMemory } from '../util/free-memory.js';
import { DropTally } from '../util/tally.js';

export interface SessionTableOptions {
  runtime: string;
  config: RuntimeConfig;
  log: Logger;
  metrics?: Metrics;
  kind: 'protocol' | 'runtime';
}

/** What a session's audit lines carry besides who and which. */
export type AuditFields = Record<string, unknown>;

const MiB = 1024 * 1024;

export class SessionTable {
  private readonly live = new Set<Session>();
  /** Refusals for memory, said at most once per 10 s: a client retrying in a loop must not flood the log. */
  private readonly shortOfMemory: DropTally;
  private starting = 0;
  private readonly perPrincipal = new Map<string, number>();
  /** Sessions of this kind are called so in refusals. */
  private readonly noun: string;

  constructor(private readonly o: SessionTableOptions) {
    this.noun = o.kind === 'protocol' ? 'sessions' : 'runtime sessions';
    this.shortOfMemory = new DropTally(({ count, since }) =>
      o.log.warn(
        { count, since, minFreeMemory: o.config.limits.minFreeMemory },
        `${count} new ${this.noun} refused since ${since}: less memory free than limits.minFreeMemory (${Math.round(o.config.limits.minFreeMemory / MiB)} MiB)`,
      ),
    );
  }

  /** Sessions holding a place: live ones, and ended ones until their server has stopped. */
  get size(): number {
    return this.live.size;
  }

  /** Places taken under maxSessions: sessions holding one (size) and those still starting. */
  get places(): number {
    return this.live.size + this.starting;
  }

  list(): Session[] {
    return [...this.live].filter((s) => s.live);
  }

  /** A call is in flight in some session. */
  get busy(): boolean {
    return this.list().some((s) => s.inFlight > 0);
  }

  /**
   * A new session for `principal` on the server `take` gives: refused at the caps (503 at maxSessions, 429 at
   * maxSessionsPerPrincipal), 503 when no start slot came in time, 502 when the server could not be started. Its end
   * is audited and counted, and frees its place; `created()` records the start once the session is established.
   */
  async open(principal: Principal, requestId: JsonRpcId | null, take: () => Promise<Launched>, audit: AuditFields = {}): Promise<Session> {
    const { maxSessions, maxSessionsPerPrincipal, startQueueTimeout } = this.o.config.limits;
    // Sessions still being started count too, or concurrent starts could overshoot the cap.
    if (this.places >= maxSessions) {
      throw new HttpError(
        503,
        ErrorCode.ServerError,
        `Service Unavailable: this runtime holds its maximum of ${maxSessions} ${this.noun} (maxSessions)`,
        {
          id: requestId,
          headers: { 'retry-after': '5' },
        },
      );
    }
    this.checkMemory(requestId);
    const who = principalKey(principal);
    const held = this.perPrincipal.get(who) ?? 0;
    if (principal.kind !== 'anonymous' && held >= maxSessionsPerPrincipal) {
      const how = this.o.kind === 'protocol' ? 'end one (DELETE) first' : 'DELETE one first';
      throw new HttpError(
        429,
        ErrorCode.ServerError,
        `Too Many Requests: ${principal.subject} already holds ${held} live ${this.noun} (limits.maxSessionsPerPrincipal = ${maxSessionsPerPrincipal}); ${how}`,
        { id: requestId, headers: { 'retry-after': '30' } },
      );
    }
    this.perPrincipal.set(who, held + 1);
    this.starting++;
    let server: Launched;
    try {
      server = await take();
    } catch (e) {
      this.release(who);
      if (e instanceof StartQueueTimeout) {
        this.o.metrics?.startsRefused.inc({ runtime: this.o.runtime });
        throw new HttpError(
          503,
          ErrorCode.ServerError,
          `Service Unavailable: every start slot is busy (limits.maxConcurrentStarts = ${e.slots}) and this ${this.o.kind === 'protocol' ? 'initialize' : 'request'} waited its ${startQueueTimeout} ms (limits.startQueueTimeout); retry later`,
          { id: requestId, headers: { 'retry-after': String(Math.max(1, Math.ceil(startQueueTimeout / 1000))) } },
        );
      }
      throw new HttpError(502, ErrorCode.InternalError, `Bad Gateway: the MCP server could not be started: ${(e as Error).message}`, {
        id: requestId,
      });
    } finally {
      this.starting--;
    }
    const session = new Session(server, this.o.runtime, this.o.config, principal);
    session.kind = this.o.kind;
    this.live.add(session);
    const line = this.auditLine(session, audit);
    session.once('ended', (reason: EndReason, detail: string) => {
      // Its place is freed once its server is stopped (end() resolves then; called again it waits for the same end):
      // a server slow to stop must not let the caps admit new sandboxes beside the ones still running.
      void session.end(reason).finally(() => {
        this.release(who);
        this.live.delete(session);
      });
      this.o.metrics?.sessionsEnded.inc({ runtime: this.o.runtime, reason });
      // The audit trail: one line per session created and one per session ended (with why and how long).
      this.o.log.info(
        { audit: 'session.ended', ...line, reason, detail, durationMs: Date.now() - session.createdAt },
        `${this.label} ended`,
      );
    });
    return session;
  }

  /** Refuses a new session while less memory is free than limits.minFreeMemory (live sessions keep theirs). */
  private checkMemory(requestId: JsonRpcId | null): void {
    const min = this.o.config.limits.minFreeMemory;
    if (!min) return;
    const free = freeMemory();
    if (free === undefined || free >= min) return;
    this.o.metrics?.sessionsRefused.inc({ runtime: this.o.runtime, reason: 'memory' });
    this.shortOfMemory.add('memory');
    throw new HttpError(
      503,
      ErrorCode.ServerError,
      `Service Unavailable: this host has ${Math.round(free / MiB)} MiB of memory free, less than limits.minFreeMemory (${Math.round(min / MiB)} MiB); no new ${this.noun} until some end`,
      { id: requestId, headers: { 'retry-after': '10' } },
    );
  }

  /** The session is established (its initialize answered, or its first request started it): counted and audited. */
  created(session: Session, started: { t0: number; warm: 'yes' | 'no' } | undefined, audit: AuditFields = {}): void {
    const { sandbox } = session.server;
    this.o.metrics?.sessionsCreated.inc({ runtime: this.o.runtime });
    if (started)
      this.o.metrics?.sessionStartSeconds.observe(
        { runtime: this.o.runtime, driver: sandbox.driver, warm: started.warm },
        (performance.now() - started.t0) / 1000,
      );
    this.o.log.info(
      { audit: 'session.created', ...this.auditLine(session, audit), driver: sandbox.driver, pid: sandbox.pid },
      `${this.label} created`,
    );
  }

  private get label(): string {
    return this.o.kind === 'protocol' ? 'session' : 'runtime session';
  }

  private auditLine(session: Session, audit: AuditFields): Record<string, unknown> {
    const p = session.principal;
    return {
      ...(this.o.kind === 'runtime' ? { kind: 'runtime' } : {}),
      ...audit,
      session: logId(session.id),
      principal: p.subject,
      issuer: p.issuer,
      auth: p.kind,
    };
  }

  private release(who: string): void {
    const n = (this.perPrincipal.get(who) ?? 1) - 1;
    if (n > 0) this.perPrincipal.set(who, n);
    else this.perPrincipal.delete(who);
  }
}
