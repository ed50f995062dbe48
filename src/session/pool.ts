// Warm servers started ahead of demand: a new session takes one that is already running and answering.
import type { Logger } from 'pino';
import { dispose, launchReady, type LaunchContext, type Launched } from './launch.js';
import { StartGate } from './start-gate.js';

export class WarmPool {
  private readonly idle: Launched[] = [];
  private starting = 0;
  private readonly launches = new Set<Promise<unknown>>();
  private failures = 0;
  private closed = false;

  constructor(
    private readonly ctx: LaunchContext,
    private readonly size: number,
    private readonly log: Logger,
    /** The runtime's start slots (limits.maxConcurrentStarts), shared with its clients' cold starts; else its own. */
    private readonly gate = new StartGate(ctx.config.limits.maxConcurrentStarts),
  ) {}

  get available(): number {
    return this.idle.length;
  }

  fill(): void {
    // Back off after repeated start failures so a broken command does not spin.
    if (this.closed || this.failures >= 5) return;
    while (this.idle.length + this.starting < this.size) {
      this.starting++;
      const p = this.gate
        .run(() => (this.closed ? Promise.reject(new Error('the pool is closed')) : launchReady(this.ctx)), { refill: true })
        .then(
          (l) => {
            this.starting--;
            if (this.closed) return dispose(l, this.ctx.config.limits.stopGrace);
            this.failures = 0;
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
          },
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
   * A warm server if one is ready, else a freshly launched one, once a start slot is free: after waitMs in the
   * queue this rejects with StartQueueTimeout. The caller refills (fill()) once its session has started, so the
   * replacement's start-up CPU does not compete with that session's initialize.
   */
  async take(o: { waitMs?: number; signal?: AbortSignal } = {}): Promise<Launched> {
    const l = this.idle.shift();
    if (l) return l;
    if (this.closed) throw new Error('the pool is closed');
    this.failures = 0;
    // A cold start is one of the pool's launches: close() waits for it (it gives up at shutdown and stops its server),
    // and one that comes up after close is stopped, never handed out — else berth exits with its sandbox running.
    const p = this.gate
      .run(() => (this.closed ? Promise.reject(new Error('the pool is closed')) : launchReady(this.ctx)), o)
      .then(async (started) => {
        if (!this.closed) return started;
        await dispose(started, this.ctx.config.limits.stopGrace);
        throw new Error('the pool is closed');
      });
    const settled = p.then(
      () => undefined,
      () => undefined,
    ); // close() awaits all of them: a failed start must not fail the close
    this.launches.add(settled);
    void settled.finally(() => this.launches.delete(settled));
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.launches); // launches finishing now dispose themselves (closed)
    const all = this.idle.splice(0);
    await Promise.all(all.map((l) => dispose(l, this.ctx.config.limits.stopGrace)));
  }
}
