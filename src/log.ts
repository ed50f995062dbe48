import { pino, type Logger } from 'pino';
import { parseDuration } from './util/units.js';

export type { Logger };

/**
 * Logs go to stderr (stdout is for the CLI's own output, such as the endpoint URL): JSON lines, or readable
 * lines (pino-pretty) when stderr is a terminal. BERTH_LOG_LEVEL sets the level, BERTH_LOG_FORMAT=json|pretty
 * overrides the choice, BERTH_LOG_FLUSH how long a JSON line may wait to be written with the next ones (default
 * 20ms; 0 writes each line at once).
 */
export function createLogger(level = process.env.BERTH_LOG_LEVEL ?? 'info'): Logger {
  const format = process.env.BERTH_LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
  if (format === 'pretty') {
    return pino({
      level,
      base: { name: 'berth' },
      transport: { target: 'pino-pretty', options: { destination: 2, ignore: 'pid,hostname,name', translateTime: 'HH:MM:ss.l' } },
    });
  }
  // Asynchronous writes with a bound: a reader of berth's stderr that falls behind (or stops) makes berth drop log
  // lines (counted: berth_log_dropped_bytes_total), never buffer them without end or block the event loop.
  //
  // Lines are gathered for up to BERTH_LOG_FLUSH (or LOG_BATCH_CHARS) and handed to stderr together. Written one
  // by one, each request's line cost a write(2) on a libuv worker thread and two thread wake-ups: about 0.1 ms of
  // CPU per relayed call, as much as all of berth's own JavaScript (docs/benchmarks.md, "Where the time goes").
  // Lines still gathered are written when berth exits (the timer is not unref()ed, so a natural exit waits for it;
  // process.exit() is met by the exit handler); only a SIGKILL loses the last BERTH_LOG_FLUSH of them.
  const flushAfter = logFlush(process.env.BERTH_LOG_FLUSH ?? DEFAULT_LOG_FLUSH);
  const dest = pino.destination({ dest: 2, sync: false, maxLength: MAX_LOG_BACKLOG });
  dest.on('drop', (data: string | Buffer) => void (dropped += Buffer.byteLength(data)));
  return pino({ level, base: { name: 'berth' } }, flushAfter > 0 ? new GatheredLines(dest, flushAfter) : dest);
}

/** A pino destination that gathers lines and writes them to `to` in one piece, at most `after` ms later. */
class GatheredLines {
  private lines = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly to: ReturnType<typeof pino.destination>,
    private readonly after: number,
  ) {
    // pino's own exit handler flushes `to`; this one runs after it, so it hands over what is gathered and flushes again.
    process.once('exit', () => {
      try {
        this.flush();
        this.to.flushSync();
      } catch {
        // stderr is closed or broken: there is nowhere left to write them
      }
    });
  }

  write(line: string): boolean {
    this.lines += line;
    if (this.lines.length >= LOG_BATCH_CHARS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.after);
    return true;
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.lines === '') return;
    const lines = this.lines;
    this.lines = '';
    this.to.write(lines);
  }
}

const DEFAULT_LOG_FLUSH = '20ms';

function logFlush(value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw new Error(`BERTH_LOG_FLUSH: ${(e as Error).message}`, { cause: e });
  }
}
/** Lines gathered up to this many characters are written at once, without waiting. */
const LOG_BATCH_CHARS = 16 * 1024;

const MAX_LOG_BACKLOG = 16 * 1024 * 1024;
let dropped = 0;

/** Bytes of log lines dropped so far because stderr's reader was MAX_LOG_BACKLOG behind. */
export function droppedLogBytes(): number {
  return dropped;
}
