// A bounded in-memory history for the dashboard's chart: live sessions and request rate, one sample per interval
// (default 10 s) over a window (default 1 h). Nothing is kept on disk; a restarted berth starts a new history.

export interface Sample {
  /** Epoch milliseconds. */
  t: number;
  /** Live sessions across runtimes at t. */
  sessions: number;
  /** Requests per second since the previous sample (0 for the first). */
  requestRate: number;
}

export interface HistorySource {
  /** Live sessions now, and the total of requests counted so far (a counter that only grows). */
  read(): Promise<{ sessions: number; requests: number }> | { sessions: number; requests: number };
}

export class History {
  private readonly samples: Sample[] = [];
  private readonly capacity: number;
  private last: { t: number; requests: number } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: HistorySource,
    readonly intervalMs = 10_000,
    windowMs = 3_600_000,
  ) {
    this.capacity = Math.max(1, Math.ceil(windowMs / intervalMs));
  }

  /** Takes one sample now (also called by the timer); the oldest falls out beyond the window. */
  async sample(now = Date.now()): Promise<Sample> {
    const { sessions, requests } = await this.source.read();
    const seconds = this.last ? (now - this.last.t) / 1000 : 0;
    // A counter reset (a new registry) would make the difference negative: count it as no traffic.
    const requestRate = seconds > 0 ? Math.max(0, requests - this.last!.requests) / seconds : 0;
    this.last = { t: now, requests };
    const s = { t: now, sessions, requestRate };
    this.samples.push(s);
    if (this.samples.length > this.capacity) this.samples.splice(0, this.samples.length - this.capacity);
    return s;
  }

  /** Oldest first; a copy. */
  get points(): Sample[] {
    return [...this.samples];
  }

  start(): void {
    if (this.timer) return;
    void this.sample().catch(() => undefined);
    this.timer = setInterval(() => void this.sample().catch(() => undefined), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
