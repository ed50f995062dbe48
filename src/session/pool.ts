// Warm servers started ahead of demand: a new session takes one that is already running and answering.
// A fixed pool (min = max) holds its size. A pool with room to grow sizes itself from demand: a burst of new sessions
// outruns a pool of 2 (from the third session on, each would be a cold start), so each new session raises the target
// by the starts expected while one replacement comes up, and the servers above min are stopped once sessions stop.
import { freemem } from 'node:os';
import type { Logger } from 'pino';
import { startSlots, type WarmPoolSize } from '../config/schema.js';
import { dispose, launchReady, type LaunchContext, type Launched } from './launch.js';
import { StartGate } from './start-gate.js';

/** Memory assumed per warm server above min when limits.memory is unset. */
const ASSUMED_SERVER_BYTES = 256 * 2 ** 20;
/** Start time assumed until one was measured (a Node server here: ~0.2–0.5 s). */
const ASSUMED_START_MS = 500;

export class WarmPool {
  private readonly idle: Launched[] = [];
  private starting = 0;
  private readonly launches = new Set<Promise<unknown>>();
  private failures = 0;
  private closed = false;
  /** When recent sessions took a server (ms, monotonic), oldest first, within size.window. */
  private readonly takes: number[] = [];
  private lastTake = -Infinity;
  /** The most sessions that started within one window since demand was last forgotten (after shrinkAfter). */
  private peak = 0;
  /** Sessions waiting for a server started for them (the pool was empty). */
  private coldTakes = 0;
  /**
   * Those of them that take a refill instead, if one is ready before their own start (first come, first served):
   * a refill in flight is further along than a start not begun. Each returns false once it was served otherwise.
   */
  private readonly handoffs: Array<(l: Launched) => boolean> = [];
  /** Measured start-to-ready time of recent launches (ms, moving average). */
  private startMs = ASSUMED_START_MS;
  private shrinkTimer: NodeJS.Timeout | undefined;
  /** A refill held while a burst is served from warm servers: fill() again once arrivals pause. */
  private heldTimer: NodeJS.Timeout | undefined;
  private readonly size: WarmPoolSize;

  constructor(
    private readonly ctx: LaunchContext,
    size: number | WarmPoolSize,
    private readonly log: Logger,
    /** The runtime's start slots (limits.maxConcurrentStarts), shared with its clients' cold starts; else its own. */
    private readonly gate = new StartGate(startSlots(ctx.config.limits.maxConcurrentStarts, ctx.driver.name)),
  ) {
    this.size = typeof size === 'number' ? { min: size, max: size, window: 1, shrinkAfter: 0, burstGap: 0 } : size;
  }

  get available(): number {
    return this.idle.length;
  }

  /** Servers the pool aims to hold now: min, plus what recent demand asks for (never above max or the memory cap). */
  get target(): number {
    const { min, max } = this.size;
    if (max <= min) return min;
    const now = performance.now();
    this.forgetOlderThan(now);
    // Sessions expected while one replacement starts (rate × start time), doubled for headroom. The rate is taken over
    // at least one start time, so a burst of k sessions inside one start time asks for 2k more servers. And at least
    // the most sessions that started within one window since the pool last shrank: a burst that came once is
    // expected again, so its servers are ready before it (sessions arriving one after another, each waiting for a
    // start, would otherwise find the pool empty every time; between bursts the rate term alone falls back to 0).
    const span = this.takes.length ? Math.max(this.startMs, now - this.takes[0]!) : 1;
    const demand = Math.max(this.peak, Math.ceil((2 * this.takes.length * this.startMs) / span));
    if (demand === 0) return min;
    const perServer = this.ctx.config.limits.memory ?? ASSUMED_SERVER_BYTES;
    const byMemory = Math.floor(freemem() / 2 / perServer); // at most half the memory left goes to extra warm servers
    return Math.min(max, min + Math.min(demand, byMemory));
  }

  fill(): void {
    // Back off after repeated start failures so a broken command does not spin.
    if (this.closed || this.failures >= 5) return;
    if (this.holdRefills()) return;
    const target = this.target;
    while (this.idle.length + this.starting < target) {
      this.starting++;
      // Parked inside the start slot: a session waiting in the start queue is handed this server before the slot is
      // released, so it leaves the queue instead of starting a server of its own.
      const p = this.gate
        .run(
          async () => {
            // Lowered only as every start is (limits.lowerStarts, off by default): on a host saturated by other work,
            // refills at nice 10 crawled past startupTimeout in CI and the pool stopped growing.
            const l = await this.launchTimed();
            this.starting--;
            this.failures = 0;
            this.park(l);
          },
          { refill: true },
        )
        .then(
          () => undefined,
          (err: Error) => {
            this.starting--;
            if (this.closed) return;
            this.failures++;
            this.log.error({ err: err.message }, 'warm server failed to start');
            if (!this.closed) setTimeout(() => this.fill(), 250 * this.failures).unref();
          },
        );
      this.launches.add(p);
      void p.finally(() => this.launches.delete(p));
    }
  }

  /**
   * Whether refills wait while a burst is being served: sessions keep arriving less than burstGap apart and warm
   * servers are left. A server starting takes a core for its start time, and on a small host that is the core the
   * burst's warm starts run on: in the bench's repeat burst (16 sessions one after another, 16 warm) holding refills
   * took the start p50 from 25–26 ms to 20–24 ms. Once the burst ends, or the pool is empty, refills go ahead; sessions
   * beyond the pool start cold either way (a refill begun mid-burst would be ready after its start time, past the
   * burst of this size the pool was grown for). Sessions opened one after another by one client come 20–40 ms apart
   * here, hence 100 ms for auto.
   */
  private holdRefills(): boolean {
    if (this.idle.length === 0 || this.size.burstGap <= 0) return false;
    const quietFor = performance.now() - this.lastTake;
    if (quietFor >= this.size.burstGap) return false;
    if (!this.heldTimer) {
      this.heldTimer = setTimeout(() => {
        this.heldTimer = undefined;
        this.fill();
      }, this.size.burstGap - quietFor);
      this.heldTimer.unref();
    }
    return true;
  }

  /**
   * A warm server if one is ready; else whichever comes first of a refill already starting and a server launched for
   * this session once a start slot is free (after waitMs in the queue that rejects with StartQueueTimeout; the other
   * of the two then waits in the pool). The caller refills (fill()) once its session has started, so the
   * replacement's start-up CPU does not compete with that session's initialize.
   */
  async take(o: { waitMs?: number; signal?: AbortSignal } = {}): Promise<Launched> {
    this.noteDemand();
    const l = this.idle.shift();
    if (l) return l;
    if (this.closed) throw new Error('the pool is closed');
    this.failures = 0;
    // A cold start is one of the pool's launches: close() waits for it (it gives up at shutdown and stops its server),
    // and one that comes up after close is stopped, never handed out — else berth exits with its sandbox running.
    this.coldTakes++;
    let served = false;
    const queued = new AbortController(); // leaves the start queue once a refill served this session
    const p = new Promise<Launched>((resolve, reject) => {
      const handoff = (refill: Launched) => {
        if (served || o.signal?.aborted) return false; // a client gone meanwhile leaves the refill to the next one
        served = true;
        queued.abort();
        resolve(refill);
        return true;
      };
      this.handoffs.push(handoff);
      const own = this.gate.run(
        async () => {
          const started = await this.launchTimed();
          // Still in the slot: a start that lost the race to a refill waits for the next session right away.
          if (served) this.park(started);
          return started;
        },
        {
          waitMs: o.waitMs,
          signal: o.signal ? AbortSignal.any([o.signal, queued.signal]) : queued.signal,
        },
      );
      own.then(
        async (started) => {
          if (served) return; // a refill came first: parked above
          served = true;
          if (!this.closed) return resolve(started);
          await dispose(started, this.ctx.config.limits.stopGrace);
          reject(new Error('the pool is closed'));
        },
        (err: Error) => {
          if (served) return; // left the queue because a refill served it
          served = true;
          reject(err);
        },
      );
      const unlist = () => {
        const i = this.handoffs.indexOf(handoff);
        if (i >= 0) this.handoffs.splice(i, 1);
      };
      own.then(unlist, unlist);
      // close() awaits every launch: a failed start must not fail the close. A session waiting for its cold start is
      // demand still arriving: the pool does not shrink under it, and the quiet period counts from its end.
      const settled = own.then(
        () => undefined,
        () => undefined,
      );
      this.launches.add(settled);
      void settled.finally(() => this.launches.delete(settled));
    });
    void p.then(
      () => this.tookCold(),
      () => this.tookCold(),
    );
    return p;
  }

  private tookCold(): void {
    this.coldTakes--;
    this.lastTake = performance.now();
  }

  /** A server that is ready goes to the first session waiting for one, else waits in the pool. */
  private park(l: Launched): void {
    if (this.closed) return void dispose(l, this.ctx.config.limits.stopGrace);
    while (this.handoffs.length) if (this.handoffs.shift()!(l)) return;
    // A session's own start that lost to a refill, with the pool already full: never above max.
    if (this.idle.length >= this.size.max) return void dispose(l, this.ctx.config.limits.stopGrace);
    this.idle.push(l);
    // A warm server that dies while waiting is replaced, never handed out.
    void l.sandbox.exited.then(() => {
      const i = this.idle.indexOf(l);
      if (i >= 0) {
        this.idle.splice(i, 1);
        void dispose(l, 0);
        this.fill();
      }
    });
    this.shrinkIfIdle();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.shrinkTimer);
    clearTimeout(this.heldTimer);
    await Promise.all(this.launches); // launches finishing now dispose themselves (closed)
    const all = this.idle.splice(0);
    await Promise.all(all.map((l) => dispose(l, this.ctx.config.limits.stopGrace)));
  }

  /** One launch in its start slot, timed from the slot to ready: the start time the target is sized by. */
  private async launchTimed(): Promise<Launched> {
    if (this.closed) throw new Error('the pool is closed');
    const t0 = performance.now();
    const l = await launchReady(this.ctx);
    this.startMs = 0.7 * this.startMs + 0.3 * (performance.now() - t0);
    return l;
  }

  private forgetOlderThan(now: number): void {
    while (this.takes.length && this.takes[0]! <= now - this.size.window) this.takes.shift();
  }

  private noteDemand(): void {
    this.lastTake = performance.now(); // a fixed pool reads it too: its refills may wait out a burst (burstGap)
    if (this.size.max <= this.size.min) return;
    this.takes.push(this.lastTake);
    this.forgetOlderThan(this.lastTake);
    this.peak = Math.max(this.peak, this.takes.length);
    if (!this.shrinkTimer) this.armShrink(this.size.shrinkAfter);
  }

  private armShrink(ms: number): void {
    this.shrinkTimer = setTimeout(() => {
      this.shrinkTimer = undefined;
      const quietFor = performance.now() - this.lastTake;
      if (this.coldTakes > 0 || quietFor < this.size.shrinkAfter) return this.armShrink(Math.max(100, this.size.shrinkAfter - quietFor));
      this.takes.length = 0; // demand forgotten: the target is min again
      this.peak = 0;
      this.shrinkIfIdle();
    }, ms);
    this.shrinkTimer.unref();
  }

  /** Once no session has started for shrinkAfter, the warm servers above the target are stopped (refills landing late too). */
  private shrinkIfIdle(): void {
    if (this.closed || this.size.max <= this.size.min) return;
    if (this.coldTakes > 0 || performance.now() - this.lastTake < this.size.shrinkAfter) return;
    const surplus = this.idle.length - this.target;
    if (surplus <= 0) return;
    const stopped = this.idle.splice(this.target, surplus);
    this.log.info({ stopped: stopped.length, warm: this.idle.length }, 'warm pool shrunk: no new session for shrinkAfter');
    for (const l of stopped) void dispose(l, this.ctx.config.limits.stopGrace);
  }
}
