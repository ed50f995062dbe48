// The bound every start-up step has: a server that dies or hangs while starting must never stall a pool (or shutdown).
import type { Sandbox } from '../sandbox/index.js';

/**
 * A start-up step bounded the way every one is: it fails when the server exits first, or after timeoutMs.
 * A server that dies or hangs while starting must never stall a pool (or shutdown).
 */
export function withinStartup<T>(sandbox: Sandbox, timeoutMs: number, work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${timeoutMs} ms (startupTimeout)`)), timeoutMs);
    timer.unref();
  });
  const died = sandbox.exited.then((info) => {
    throw new Error(`the server exited during start-up (${info.reason ?? `code ${info.code}, signal ${info.signal}`})`);
  });
  died.catch(() => undefined); // it may exit long after the race is over
  return Promise.race([work, died, late]).finally(() => clearTimeout(timer));
}
