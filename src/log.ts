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
    return pino({ level, base: { name: 'berth' }, transport: { target: 'pino-pretty', options: { destination: 2, ignore: 'pid,hostname,name', translateTime: 'HH:MM:ss.l' } } });
  }
  return pino({ level, base: { name: 'berth' } }, pino.destination(2));
}
