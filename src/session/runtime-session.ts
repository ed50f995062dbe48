// Runtime sessions: how a 2026-07-28 client (which has no protocol session) reaches the same sandbox across calls.
// The client names one in the Berth-Runtime-Session header; berth creates its sandbox on first use and keeps it
// under the same lifecycle as a protocol session (Session: idle timeout, max lifetime, principal binding, audit).
// The key is runtime + principal + id, so another principal naming the same id gets a sandbox of its own.
import { HttpError } from '../wire/http-error.js';
import type { StartGate } from './start-gate.js';
import type { Logger } from 'pino';
import type { Metrics } from '../observe/metrics.js';
import { principalKey, type Principal } from '../security/auth.js';
import { SessionTable } from './table.js';
import { ErrorCode } from '../wire/jsonrpc.js';
import type { LaunchContext } from './launch.js';
import { WarmPool } from './pool.js';
import type { EndReason, Session } from './session.js';

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
  private readonly pool: WarmPool;
  /** Caps, start failures, audit and metrics, as for protocol sessions. */
  private readonly table: SessionTable;
  private closed = false;

  constructor(
    private readonly ctx: LaunchContext,
    log: Logger,
    metrics?: Metrics,
    /** The runtime's start slots, shared with its other pools. */
    starts?: StartGate,
  ) {
    this.pool = new WarmPool(ctx, ctx.config.warmPool, log, starts);
    this.table = new SessionTable({ runtime: ctx.runtimeName, config: ctx.config, log, metrics, kind: 'runtime' });
  }

  get size(): number {
    return this.live.size;
  }

  /** The live runtime sessions (for the admin API). */
  list(): Session[] {
    return this.table.list();
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
    if (this.closed) {
      throw new HttpError(503, ErrorCode.ServerError, 'Service Unavailable: berth is shutting down', {
        id: requestId,
        headers: { 'retry-after': '5' },
      });
    }
    for (const [k, t] of this.tombstones) if (t.until <= Date.now()) this.tombstones.delete(k);
    // Refilled after this start, not competing with it.
    const take = () => this.pool.take().finally(() => setTimeout(() => this.pool.fill(), 250).unref());
    const audit = { runtimeSession: id.slice(0, 8) };
    const session = await this.table.open(principal, requestId, take, audit);
    this.table.created(session, undefined, audit);
    session.once('ended', (reason, detail) => {
      if (this.live.get(key)) this.live.delete(key);
      if (reason !== 'deleted') this.tombstones.set(key, { reason, detail, until: session.createdAt + this.ctx.config.maxLifetime });
    });
    return session;
  }

  get busy(): boolean {
    return this.table.busy;
  }

  async close(): Promise<void> {
    this.closed = true;
    const sessions = await Promise.allSettled([...this.live.values()]);
    await Promise.all(sessions.map((s) => (s.status === 'fulfilled' ? s.value.end('shutdown') : undefined)));
    await this.pool.close();
  }
}
