// How a runtime's server starts are going. A runtime whose servers cannot start (a broken command, a limit the
// sandbox cannot live with) would otherwise look healthy: /healthz shows this record and /readyz refuses while
// no start has succeeded since the last failure. Closing it ends the starts still under way, so a shutdown does
// not wait out the startupTimeout of servers that will never answer.

export interface StartHealth {
  /** Starts that failed since the last one that succeeded. */
  consecutiveFailures: number;
  lastError: string | null;
  lastErrorAt: string | null;
  lastSuccessAt: string | null;
}

/** How the first start of a runtime went: berth run waits for it before it says it is listening. */
export type FirstStart = { ok: true } | { ok: false; error: string; stderr: string[] };

export class StartRecord {
  private failures = 0;
  private lastError: { message: string; at: number } | undefined;
  private lastSuccess: number | undefined;
  private isClosed = false;
  private closeWith!: (e: Error) => void;
  private settleFirst!: (outcome: FirstStart) => void;
  /** Resolves at the first start's outcome (never, when no server is started ahead of demand). */
  readonly first = new Promise<FirstStart>((resolve) => (this.settleFirst = resolve));
  /** Rejects once the runtime closes: a start still under way gives up then. */
  readonly closed = new Promise<never>((_, reject) => (this.closeWith = reject));

  constructor() {
    this.closed.catch(() => undefined);
  }

  succeeded(): void {
    this.settleFirst({ ok: true });
    this.failures = 0;
    this.lastSuccess = Date.now();
  }

  /** `stderr`: the server's last lines, when it got as far as writing any. */
  failed(e: unknown, stderr: string[] = []): void {
    if (this.isClosed) return; // given up at shutdown, not a failure of the server
    this.failures++;
    this.lastError = { message: e instanceof Error ? e.message : String(e), at: Date.now() };
    this.settleFirst({ ok: false, error: this.lastError.message, stderr: [...stderr] });
  }

  /** True while the latest start failed. */
  get failing(): boolean {
    return this.failures > 0;
  }

  close(): void {
    this.isClosed = true;
    this.closeWith(new Error('berth is shutting down'));
  }

  get health(): StartHealth {
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
    return {
      consecutiveFailures: this.failures,
      lastError: this.lastError?.message ?? null,
      lastErrorAt: iso(this.lastError?.at),
      lastSuccessAt: iso(this.lastSuccess),
    };
  }
}
