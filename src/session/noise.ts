// A session server's noise (its stderr, and lines on stdout that are not JSON-RPC) goes to berth's log within a
// byte budget per session: a server that floods must cost berth neither memory nor the CPU of splitting, parsing
// and logging every line (issue 13: 400 MiB of stderr once grew berth to 990 MiB and slowed every session).
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { LimitsConfig } from '../config/schema.js';
import { eachLine, type LineGate } from '../util/lines.js';
import { Pacer } from '../util/pacer.js';

/** What one log line costs beyond its text (the JSON envelope): many tiny lines cannot log for free. */
const LINE_COST = 128;

export type NoiseStream = 'stderr' | 'stdout';

/** Bytes per second with a burst; once spent it stays shut until a quarter of the burst is back (no flapping). */
class ByteBudget {
  private tokens: number;
  private at = performance.now();
  private closed = false;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  get shut(): boolean {
    if (!this.closed) return false;
    this.refill();
    if (this.tokens >= this.burst / 4 && this.tokens > 0) this.closed = false;
    return this.closed;
  }

  take(n: number): boolean {
    if (this.shut) return false;
    this.refill();
    if (this.tokens >= n) {
      this.tokens -= n;
      return true;
    }
    this.closed = true;
    return false;
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }
}

/** Lines of a server's stderr kept for a start-up failure's report. */
const TAIL_LINES = 20;

export class ServerNoise {
  private readonly budget: ByteBudget;
  private readonly droppedBytes: Record<NoiseStream, number> = { stderr: 0, stdout: 0 };
  private warned = false;

  constructor(
    private readonly limits: Pick<LimitsConfig, 'stderrRate' | 'stderrBurst' | 'stderrLineSize' | 'stderrDrainRate'>,
    private readonly log: Logger,
    /** Counts what is dropped (berth_server_output_dropped_bytes_total). */
    private readonly onDrop?: (stream: NoiseStream, bytes: number) => void,
  ) {
    this.budget = new ByteBudget(limits.stderrRate, limits.stderrBurst);
  }

  /**
   * Logs the stream's lines within the budget; when it ends, one line tells what was dropped, if anything. `tail`
   * keeps the last lines logged.
   */
  follow(stream: Readable, tail?: string[]): void {
    const log = (line: string) => {
      this.log.info({ stream: 'stderr' }, line);
      // The last lines logged, for whoever must say why a server would not start (berth run).
      if (tail && tail.push(line) > TAIL_LINES) tail.shift();
    };
    eachLine(stream, this.limits.stderrLineSize, log, this.gate('stderr'));
    stream.once('close', () => {
      const { stderr, stdout } = this.droppedBytes;
      if (stderr + stdout > 0)
        this.log.warn(
          { droppedStderrBytes: stderr, droppedStdoutBytes: stdout },
          'server output dropped over its budget (limits.stderrRate, stderrBurst, stderrLineSize), in total',
        );
    });
  }

  /** Whether a line of `bytes` (stdout noise, say; at most `logged` of it logged) may be logged; false counts it dropped. */
  admit(stream: NoiseStream, bytes: number, logged = bytes): boolean {
    if (this.budget.take(Math.min(bytes, logged) + LINE_COST)) return true;
    this.dropped(stream, bytes);
    return false;
  }

  gate(stream: NoiseStream): LineGate {
    const budget = this.budget;
    // Reading and dropping costs berth CPU too (~0.5 s a GiB): past stderrDrainRate the flood waits in its pipe.
    // A tenth of a second's worth may be read at full speed; beyond it, pause until the debt is paid.
    const drain = new Pacer(this.limits.stderrDrainRate, this.limits.stderrDrainRate / 10);
    return {
      admit: (bytes) => budget.take(bytes + LINE_COST),
      get shut() {
        return budget.shut;
      },
      dropped: (bytes) => this.dropped(stream, bytes),
      drained: (bytes) => drain.add(bytes),
    };
  }

  private dropped(stream: NoiseStream, bytes: number): void {
    if (bytes <= 0) return;
    this.droppedBytes[stream] += bytes;
    this.onDrop?.(stream, bytes);
    if (this.warned) return;
    this.warned = true;
    this.log.warn(
      { stream, rate: this.limits.stderrRate, burst: this.limits.stderrBurst, lineSize: this.limits.stderrLineSize },
      'server output over its log budget: dropping what exceeds limits.stderrRate/stderrBurst (and lines past stderrLineSize), counted in berth_server_output_dropped_bytes_total; this is said once per session',
    );
  }
}
