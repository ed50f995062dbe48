// Pacing a reader: what it took (bytes, or milliseconds of berth's main thread) is a debt paid off at `rate` per
// second. Up to `allowance` may be owed while reading at full speed; past it the reader stops for as long as paying
// the excess takes, and what it would have read waits in its pipe (the writer blocks), not in berth.
export class Pacer {
  private debt = 0;
  private at = performance.now();

  /** `rate` 0: no pacing. */
  constructor(
    private readonly rate: number,
    private readonly allowance: number,
  ) {}

  /** Adds `amount` to the debt; returns how long (ms) to stop reading, 0 to go on. */
  add(amount: number): number {
    if (this.rate === 0) return 0;
    const now = performance.now();
    this.debt = Math.max(0, this.debt - ((now - this.at) / 1000) * this.rate) + amount;
    this.at = now;
    const over = this.debt - this.allowance;
    return over > 0 ? Math.ceil((over / this.rate) * 1000) : 0;
  }
}
