import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stderr (stdout is for the CLI's own output, such as the endpoint URL). */
export function createLogger(level = process.env.BERTH_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { name: 'berth' } }, pino.destination(2));
}
