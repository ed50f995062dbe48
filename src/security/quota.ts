// JSON-RPC messages per second per principal: a token bucket each, refilled continuously. An HTTP request takes
// one token before its body is read; a batch takes one more per further message once parsed (all or none).

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private takes = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  /**
   * Takes n tokens, all or none: 0 when allowed, else the seconds until n are available (Infinity when n is more
   * than the burst: waiting never helps).
   */
  take(key: string, n = 1): number {
    if (n > this.burst) return Infinity;
    const now = performance.now();
    if (++this.takes % 1024 === 0) this.forgetFull(now);
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens >= n) {
      b.tokens -= n;
      return 0;
    }
    return (n - b.tokens) / this.perSecond;
  }

  /** A full bucket is the same as none: dropping them keeps memory bounded by active principals. */
  private forgetFull(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(k);
  }
}
