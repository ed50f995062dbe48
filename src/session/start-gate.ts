// At most N servers of a runtime start at once (limits.maxConcurrentStarts). A server's start is a burst of CPU
// (a Node server: ~0.5 s of one core); 500 initializes once started ~49 at a time and stalled /healthz and every
// live session for over 10 s. Further starts queue: a client's first, then pool refills. Refills hold at most all
// slots but one, and a client whose only obstacle is refills starts beside them (one over the cap, as long as no
// other client's start runs): a client's start never waits behind speculative ones alone, even with one slot.

export class StartQueueTimeout extends Error {
  constructor(
    message: string,
    /** The gate's slots, for the refusal to name. */
    readonly slots: number,
  ) {
    super(message);
  }
}

interface Waiter {
  grant: () => void;
}

export class StartGate {
  private running = 0;
  private refillsRunning = 0;
  private readonly refillSlots: number;
  private readonly clients: Waiter[] = [];
  private readonly refills: Waiter[] = [];

  constructor(private readonly slots: number) {
    this.refillSlots = Math.max(1, slots - 1);
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.clients.length + this.refills.length;
  }

  /**
   * Runs work in a start slot. A client's start (refill false) waits at most waitMs for one, then rejects with
   * StartQueueTimeout; it also leaves the queue when `signal` aborts (the client went away).
   */
  async run<T>(work: () => Promise<T>, o: { refill?: boolean; waitMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    await this.acquire(o);
    try {
      return await work();
    } finally {
      if (o.refill) this.refillsRunning--;
      this.release();
    }
  }

  private acquire(o: { refill?: boolean; waitMs?: number; signal?: AbortSignal }): Promise<void> {
    // A client goes ahead of queued refills (they may be waiting only for the refill cap); a refill goes behind anyone.
    if (!o.refill && this.clients.length === 0 && this.clientMayStart()) {
      this.running++;
      return Promise.resolve();
    }
    const free = this.running < this.slots && this.clients.length === 0;
    if (free && o.refill && this.refills.length === 0 && this.refillsRunning < this.refillSlots) {
      this.running++;
      this.refillsRunning++;
      return Promise.resolve();
    }
    const queue = o.refill ? this.refills : this.clients;
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const leave = (err: Error) => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', aborted);
        reject(err);
      };
      const aborted = () => leave(new Error('the client went away while its server waited to start'));
      const waiter: Waiter = {
        grant: () => {
          if (o.refill) this.refillsRunning++;
          clearTimeout(timer);
          o.signal?.removeEventListener('abort', aborted);
          resolve();
        },
      };
      if (o.signal?.aborted) return aborted();
      if (!o.refill && o.waitMs !== undefined) {
        if (o.waitMs === 0) return leave(new StartQueueTimeout('every start slot is busy', this.slots));
        timer = setTimeout(() => leave(new StartQueueTimeout(`no start slot came free within ${o.waitMs} ms`, this.slots)), o.waitMs);
      }
      o.signal?.addEventListener('abort', aborted, { once: true });
      queue.push(waiter);
    });
  }

  /** A client may start below the cap, or beside refills alone (never more than one client over it). */
  private clientMayStart(): boolean {
    return this.running < this.slots || this.running === this.refillsRunning;
  }

  /**
   * A freed slot goes to the next waiters: clients first (below the cap, or beside refills alone), then refills
   * (below the cap and refillSlots, when no client waits).
   */
  private release(): void {
    this.running--;
    while (this.clients.length > 0 && this.clientMayStart()) {
      this.running++;
      this.clients.shift()!.grant();
    }
    while (this.clients.length === 0 && this.refills.length > 0 && this.running < this.slots && this.refillsRunning < this.refillSlots) {
      this.running++;
      this.refills.shift()!.grant(); // counts itself in refillsRunning
    }
  }
}
