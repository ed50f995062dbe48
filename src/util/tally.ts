// Something a peer can cause once per message or connection (a server's notifications displaced from retention,
// connections refused over server.maxConnections) is counted here and said in the log at most once per
// DROP_LOG_INTERVAL: one line per message let a server write 200,000 small notifications into 17 MB of berth's log in
// two seconds, and slowed every other session with the logging.
//
// Not the byte budget of a server's stderr (session/noise.ts): that one logs lines until the budget is spent and then
// says once that it dropped some, which suits a server's own words; a drop must be counted whole, so here every
// drop is counted and only the saying is bounded.

/**
 * How often, at most, one tally (one session's drops of one kind, say) is said. The first drop is said at once (an operator
 * sees it when it happens), the rest within this long in one line with their count; not a user setting.
 */
export const DROP_LOG_INTERVAL = 10_000;

/** One summary: `count` drops since `since` (ISO time), the first and last of them named (a method, say). */
export interface DropSummary {
  count: number;
  since: string;
  first: string;
  last: string;
}

export class DropTally {
  private count = 0;
  private since = 0;
  private first = '';
  private last = '';
  /** When the last summary was said (performance.now()); none yet: -Infinity. */
  private saidAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly say: (s: DropSummary) => void,
    private readonly interval = DROP_LOG_INTERVAL,
  ) {}

  /** One more dropped; `what` names it (a method). O(1): no log line, at most one timer per interval. */
  add(what: string): void {
    if (this.count === 0) {
      this.since = Date.now();
      this.first = what;
    }
    this.count++;
    this.last = what;
    if (this.timer) return;
    const wait = this.saidAt + this.interval - performance.now();
    if (wait <= 0) this.flush();
    else {
      this.timer = setTimeout(() => this.flush(), wait);
      this.timer.unref();
    }
  }

  /** Says what was counted since the last summary, if anything (the relay ends: nothing counted is left unsaid). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.count === 0) return;
    const s: DropSummary = { count: this.count, since: new Date(this.since).toISOString(), first: this.first, last: this.last };
    this.count = 0;
    this.saidAt = performance.now();
    this.say(s);
  }
}
