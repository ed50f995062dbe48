// Servers shared by many clients: a stateless runtime's pool (2025 clients) and the pool that answers 2026-07-28
// clients. Members are started ahead of demand, replaced when they exit, and picked least busy first; a caller may
// reserve a member of its own (one call per server), which lets the pool grow within a bound and trim back after.
import type { Logger } from 'pino';
import { dispose, type Launched } from './launch.js';

export interface PoolMember<T> {
  server: Launched;
  /** What the start function learned (e.g. the server's initialize result). */
  info: T;
  inFlight: number;
}

export interface SharedPoolOptions<T> {
  /** Members kept ready. */
  size: number;
  /** Most members, counting those starting. */
  max: number;
  /** How long a pick waits for a member before it fails. */
  startupTimeout: number;
  stopGrace: number;
  log: Logger;
  /** Starts one member, ready to take requests. */
  start: () => Promise<{ server: Launched; info: T }>;
  /** A start failed: 'retry' (after a pause) or 'stop' (filling ends: the server cannot be pooled this way). */
  onStartError?: (err: Error) => 'retry' | 'stop';
  /** Work on a member besides its relayed calls (e.g. bridged calls suspended in it). */
  extraLoad?: (m: PoolMember<T>) => number;
  /** Members needed besides `size` (e.g. one per member busy with a call of its own). */
  extraTarget?: (members: readonly PoolMember<T>[]) => number;
  onAdopt?: (m: PoolMember<T>) => void;
  onExit?: (m: PoolMember<T>) => void;
}

export class SharedPool<T> {
  readonly members: PoolMember<T>[] = [];
  private starting = 0;
  private stopped = false;
  private closed = false;
  private readonly launches = new Set<Promise<unknown>>();
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly o: SharedPoolOptions<T>) {}

  /** Filling ended for good (see onStartError): no member will come. */
  get ended(): boolean {
    return this.stopped || this.closed;
  }

  load(m: PoolMember<T>): number {
    return m.inFlight + (this.o.extraLoad?.(m) ?? 0);
  }

  private get target(): number {
    return Math.min(this.o.size + (this.o.extraTarget?.(this.members) ?? 0), Math.max(this.o.size, this.o.max));
  }

  /** Takes in a member started elsewhere (e.g. the one that answered an era probe). */
  adopt(server: Launched, info: T): void {
    const m: PoolMember<T> = { server, info, inFlight: 0 };
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
    while (!this.ended && this.members.length + this.starting < this.target) {
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

  /** Stops members beyond the target that nothing uses any more. */
  trim(): void {
    for (const m of [...this.members]) {
      if (this.members.length <= this.target || this.closed) return;
      if (this.load(m) > 0) continue;
      this.members.splice(this.members.indexOf(m), 1);
      void dispose(m.server, this.o.stopGrace);
    }
  }

  /**
   * The least busy member, waiting up to startupTimeout for one; `unavailable` makes the error when none comes.
   * `exclusive` waits for an idle member while the pool may still grow, and reserves the member at once
   * (inFlight + 1, released by the caller), so concurrent picks never share it.
   */
  async pick(unavailable: () => Error, exclusive = false): Promise<PoolMember<T>> {
    const deadline = Date.now() + this.o.startupTimeout;
    const idle = () => this.members.some((m) => this.load(m) === 0);
    const canGrow = () => this.members.length + this.starting < Math.max(this.o.size, this.o.max);
    while (this.members.length === 0 || (exclusive && !idle() && canGrow() && Date.now() < deadline)) {
      if (this.ended || Date.now() > deadline) throw unavailable();
      this.fill();
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200).unref();
      });
    }
    const m = this.members.reduce((a, b) => (this.load(b) < this.load(a) ? b : a));
    if (exclusive) m.inFlight++;
    return m;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.launches]);
    await Promise.all(this.members.splice(0).map((m) => dispose(m.server, this.o.stopGrace)));
  }
}
