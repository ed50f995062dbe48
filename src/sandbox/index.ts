import { ISOLATION_KINDS } from '../config/schema.js';
import type { SandboxDriver } from './driver.js';
import { processDriver } from './process.js';

export type { Sandbox, SandboxDriver, SandboxSpec, ExitInfo, SandboxLimits } from './driver.js';

const drivers: Record<string, SandboxDriver> = { process: processDriver };

/** The driver for an --isolation value; unknown or not-yet-built kinds are a clear error. */
export function driverFor(kind: string): SandboxDriver {
  // Strongest first; only the process driver exists in this build.
  if (kind === 'auto') return processDriver;
  const d = drivers[kind];
  if (d) return d;
  if ((ISOLATION_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`isolation "${kind}" is not available in this build of berth yet; available: ${Object.keys(drivers).join(', ')}`);
  }
  throw new Error(`unknown isolation "${kind}"; expected one of: ${ISOLATION_KINDS.join(', ')}`);
}
