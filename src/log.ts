import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Logs go to stderr (stdout is for the CLI's own output, such as the endpoint URL): JSON lines, or readable
 * lines (pino-pretty) when stderr is a terminal. BERTH_LOG_LEVEL sets the level, BERTH_LOG_FORMAT=json|pretty
 * overrides the choice.
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
  const dest = pino.destination({ dest: 2, sync: false, maxLength: MAX_LOG_BACKLOG });
  dest.on('drop', (data: string | Buffer) => void (dropped += Buffer.byteLength(data)));
  return pino({ level, base: { name: 'berth' } }, dest);
}

const MAX_LOG_BACKLOG = 16 * 1024 * 1024;
let dropped = 0;

/** Bytes of log lines dropped so far because stderr's reader was MAX_LOG_BACKLOG behind. */
export function droppedLogBytes(): number {
  return dropped;
}
