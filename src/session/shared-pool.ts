// Servers shared by many requests: a stateless runtime's pool (2025 clients) and the pool that answers 2026-07-28
// clients. Members are started ahead of demand, replaced when they exit, and picked least busy first; a caller may
// reserve a member of its own (one call per server).
//
// A server keeps whatever its clients told it (roots, answers, remembered values), so a member never crosses
// principals: it starts fresh (no owner), is claimed by the first principal it serves, and from then on serves only
// that principal until it has been idle for `ownerIdle`, when it is stopped (never handed back). `size` fresh members
// are kept ready; under pressure an idle member of another principal is stopped to make room. A principal holds at
// most `maxPerOwner` members (claimed servers count as sessions would: limits.maxSessionsPerPrincipal).
import type { Logger } from 'pino';
import { ANONYMOUS, principalKey } from '../security/auth.js';
import { HttpError } from '../wire/http-error.js';
import { ErrorCode, type JsonRpcId } from '../wire/jsonrpc.js';
import { dispose, type Launched } from './launch.js';

/** A member just picked is never stopped: its caller counts its call (inFlight) only once the pick resolves. */
const PICKED_GRACE = 1000;

export interface PoolMember<T> {
  server: Launched;
  /** What the start function learned (e.g. the server's initialize result). */
  info: T;
  inFlight: number;
  /** The principal (principalKey) this member has served; undefined while fresh. */
  owner?: string;
  /** When it was last seen in use (for ownerIdle). */
  usedAt: number;
}

/** A pick refused because its principal holds as many members as it may, every one of them busy. */
export interface OwnerAtCap {
  held: number;
  limit: number;
}

/** limits.maxSessionsPerPrincipal as a pool's maxPerOwner: not applied without auth (the one principal "anonymous"). */
export function perPrincipalCap(limit: number): (owner: string) => number {
  const anonymous = principalKey(ANONYMOUS);
  return (owner) => (owner === anonymous ? Infinity : limit);
}

/** The 429 for a principal at its cap in a pool, worded as SessionTable's for sessions. */
export function pooledServersRefusal(subject: string, cap: OwnerAtCap, id: JsonRpcId | null): HttpError {
  return new HttpError(
    429,
    ErrorCode.ServerError,
    `Too Many Requests: ${subject} already holds ${cap.held} pooled servers, each busy with a call of its own (limits.maxSessionsPerPrincipal = ${cap.limit}); finish one first (a suspended call: retry it)`,
    { id, headers: { 'retry-after': '5' } },
  );
}

export interface SharedPoolOptions<T> {
  /** Fresh members kept ready. */
  size: number;
  /** Most members, counting those starting. */
  max: number;
  /** How long a pick waits for a member before it fails. */
  startupTimeout: number;
  stopGrace: number;
  /** A claimed member unused this long is stopped (ms). */
  ownerIdle: number;
  log: Logger;
  /** Starts one member, ready to take requests. */
  start: () => Promise<{ server: Launched; info: T }>;
  /** A start failed: 'retry' (after a pause) or 'stop' (filling ends: the server cannot be pooled this way). */
  onStartError?: (err: Error) => 'retry' | 'stop';
  /** Most members one principal may hold; none given: no cap. */
  maxPerOwner?: (owner: string) => number;
  /**
   * Work on a member besides its relayed calls (inFlight): bridged calls, suspended in it until their client's retry
   * or carried on by one. Unlike a relayed call, such work ends when the client comes back, not on its own.
   */
  extraLoad?: (m: PoolMember<T>) => number;
  onAdopt?: (m: PoolMember<T>) => void;
  /** A fresh member was claimed by its first principal. */
  onClaim?: (m: PoolMember<T>) => void;
  onExit?: (m: PoolMember<T>) => void;
}

export class SharedPool<T> {
  readonly members: PoolMember<T>[] = [];
  private starting = 0;
  /** Picks waiting for a member of their own (each wants one more fresh member). */
  private wanted = 0;
  private stopped = false;
  private closed = false;
  private readonly launches = new Set<Promise<unknown>>();
  private readonly waiters: Array<() => void> = [];
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly o: SharedPoolOptions<T>) {
    this.sweep = setInterval(() => this.trim(), Math.max(1000, Math.min(o.ownerIdle, 30_000)));
    this.sweep.unref();
  }

  /** Filling ended for good (see onStartError): no member will come. */
  get ended(): boolean {
    return this.stopped || this.closed;
  }

  load(m: PoolMember<T>): number {
    return m.inFlight + (this.o.extraLoad?.(m) ?? 0);
  }

  private get fresh(): number {
    return this.members.filter((m) => m.owner === undefined).length;
  }

  private get room(): boolean {
    return this.members.length + this.starting < Math.max(this.o.size, this.o.max);
  }

  /** Takes in a member started elsewhere (e.g. the one that answered an era probe); it is fresh. */
  adopt(server: Launched, info: T): void {
    const m: PoolMember<T> = { server, info, inFlight: 0, usedAt: Date.now() };
    this.members.push(m);
    void server.sandbox.exited.then(() => {
      const i = this.members.indexOf(m);
      if (i >= 0) this.members.splice(i, 1);
      this.o.onExit?.(m);
      void dispose(server, 0);
      setTimeout(() => this.fill(), 100).unref();
    });
    this.o.onAdopt?.(m);
    for (const w of this.waiters.splice(0)) w();
  }

  fill(): void {
    while (!this.ended && this.fresh + this.starting < this.o.size + this.wanted && this.room) {
      this.starting++;
      const p = this.o.start().then(
        ({ server, info }) => {
          this.starting--;
          if (this.closed) return dispose(server, 0);
          this.adopt(server, info);
        },
        (err: Error) => {
          this.starting--;
          if (this.o.onStartError?.(err) === 'stop') {
            this.stopped = true;
            for (const w of this.waiters.splice(0)) w();
            return;
          }
          this.o.log.error({ err: err.message }, 'pooled server failed to start');
          if (!this.closed) setTimeout(() => this.fill(), 1000).unref();
        },
      );
      this.launches.add(p);
      void p.finally(() => this.launches.delete(p));
    }
  }

  /** Stops claimed members unused for ownerIdle, and fresh ones beyond what is wanted. */
  trim(): void {
    const now = Date.now();
    for (const m of [...this.members]) {
      if (this.closed) return;
      if (this.load(m) > 0) m.usedAt = now;
      else if (m.owner !== undefined ? now - m.usedAt >= Math.max(this.o.ownerIdle, PICKED_GRACE) : this.fresh > this.o.size + this.wanted)
        this.stop(m);
    }
  }

  private stop(m: PoolMember<T>): void {
    this.members.splice(this.members.indexOf(m), 1);
    void dispose(m.server, this.o.stopGrace);
  }

  /** The pool is full and `owner` has nothing to use: an idle member of another principal makes room. */
  private evictFor(owner: string): void {
    // A start under way is the room already made: without this, every poll of a waiting pick stopped one more.
    if (this.room || this.starting > 0) return;
    const idle = this.members.filter(
      (m) => m.owner !== undefined && m.owner !== owner && this.load(m) === 0 && Date.now() - m.usedAt > PICKED_GRACE,
    );
    if (idle.length === 0) return;
    this.stop(idle.reduce((a, b) => (b.usedAt < a.usedAt ? b : a)));
  }

  /**
   * The least busy member `owner` may use (its own, else a fresh one it then claims), waiting up to startupTimeout;
   * `unavailable` makes the error when none comes. A principal spreads its requests over at most `size` members of
   * its own, as the pool did before it was per principal. `exclusive` waits for an idle one while the pool may still
   * grow (or make room), and reserves the member at once (inFlight + 1, released by the caller), so concurrent picks
   * never share it. A principal holding `maxPerOwner` members gets only its own: an exclusive pick waits for one of
   * them to be idle, and `unavailable(atCap)` makes the refusal when none is.
   */
  async pick(owner: string, unavailable: (atCap?: OwnerAtCap) => Error, exclusive = false): Promise<PoolMember<T>> {
    const deadline = Date.now() + this.o.startupTimeout;
    const limit = this.o.maxPerOwner?.(owner) ?? Infinity;
    const mine = () => this.members.filter((m) => m.owner === owner);
    const usable = () => {
      const own = mine();
      const more = own.length < limit && (exclusive || own.length < this.o.size);
      return more ? [...own, ...this.members.filter((m) => m.owner === undefined)] : own;
    };
    const canMakeRoom = () =>
      this.room || this.starting > 0 || this.members.some((m) => m.owner !== owner && m.owner !== undefined && this.load(m) === 0);
    // A full pool lets an exclusive pick share a busy member; at its own cap it may not: it waits for an idle one.
    const enough = (ms: PoolMember<T>[]) =>
      ms.length > 0 && (!exclusive || ms.some((m) => this.load(m) === 0) || (mine().length < limit && !canMakeRoom()));
    // Only a pick that may claim one more wants a fresh member: one at its cap never makes the pool start or evict.
    let wanting = false;
    const want = (on: boolean) => {
      if (on !== wanting) this.wanted += on ? 1 : -1;
      wanting = on;
    };
    try {
      while (!enough(usable())) {
        const own = mine();
        const atCap = own.length >= limit ? { held: own.length, limit } : undefined;
        // Refused at once when every member of its own is held only by bridged calls: each frees when its client
        // retries (within limits.pendingInputTimeout, 15 min by default, far beyond startupTimeout), and that client
        // is often the one waiting on this very request, so waiting would hold the request only to refuse it later.
        // A relayed call in flight ends on its own: that is worth waiting for.
        if (atCap && own.every((m) => m.inFlight === 0)) throw unavailable(atCap);
        if (this.ended || Date.now() > deadline) throw unavailable(atCap);
        want(!atCap);
        if (!atCap) {
          this.evictFor(owner);
          this.fill();
        }
        await new Promise<void>((r) => {
          this.waiters.push(r);
          setTimeout(r, 200).unref();
        });
      }
    } finally {
      want(false);
    }
    // Least busy; between equals, one already claimed (a fresh member is kept for a principal that has none).
    const rank = (m: PoolMember<T>) => this.load(m) * 2 + (m.owner === undefined ? 1 : 0);
    const m = usable().reduce((a, b) => (rank(b) < rank(a) ? b : a));
    m.usedAt = Date.now();
    if (exclusive) m.inFlight++;
    if (m.owner === undefined) {
      m.owner = owner;
      this.o.onClaim?.(m);
      this.fill(); // a fresh one in its place
    }
    return m;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    await Promise.allSettled([...this.launches]);
    await Promise.all(this.members.splice(0).map((m) => dispose(m.server, this.o.stopGrace)));
  }
}
