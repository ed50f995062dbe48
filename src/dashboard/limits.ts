// The limits a session runs under, as the admin API and the dashboard show them: its runtime's configured values,
// and which of them this host cannot enforce (berth warns once at start; an operator reading the dashboard later
// should not take a limit that is not there on trust).
import { DEFAULT_MEMORY, DEFAULT_PIDS, type RuntimeConfig } from '../config/schema.js';
import { detectCgroups } from '../sandbox/cgroups.js';

export interface SessionLimits {
  /** null: no limit. */
  memoryBytes: number | null;
  cpus: number | null;
  pids: number | null;
  /** Writable space (working directory, /tmp); null: no cap. */
  diskBytes: number | null;
  idleTimeoutSeconds: number;
  maxLifetimeSeconds: number;
  /** A call silent this long fails; null: never. */
  requestTimeoutSeconds: number | null;
  /** Configured limits this host does not enforce, with why (e.g. "memory: no cgroup controller"). */
  notEnforced: string[];
}

const CGROUP_CONTROLLER = { memory: 'memory', cpus: 'cpu', pids: 'pids' } as const;

export function sessionLimits(config: RuntimeConfig, driver: string): SessionLimits {
  const { limits } = config;
  const notEnforced: string[] = [];
  const cg = detectCgroups();
  // limits.pids unset: DEFAULT_PIDS, marked not enforced where this host cannot hold it (as a configured one is).
  const pids = limits.pids === undefined ? DEFAULT_PIDS : limits.pids || null;
  const memory = limits.memory === undefined ? DEFAULT_MEMORY : limits.memory || null; // as pids
  for (const key of ['memory', 'cpus', 'pids'] as const) {
    if (!(key === 'pids' ? pids : key === 'memory' ? memory : limits[key])) continue;
    if (!cg.version) notEnforced.push(`${key}: ${cg.reason}`);
    else if (!cg.controllers.includes(CGROUP_CONTROLLER[key])) notEnforced.push(`${key}: no ${CGROUP_CONTROLLER[key]} cgroup controller`);
  }
  // gVisor caps its tmpfs itself; the other drivers mount a sized tmpfs, which takes root.
  if (limits.disk && driver !== 'gvisor' && process.getuid?.() !== 0) notEnforced.push('disk: berth is not running as root');
  return {
    memoryBytes: memory,
    cpus: limits.cpus ?? null,
    pids,
    diskBytes: limits.disk || null,
    idleTimeoutSeconds: config.idleTimeout / 1000,
    maxLifetimeSeconds: config.maxLifetime / 1000,
    requestTimeoutSeconds: limits.requestTimeout ? limits.requestTimeout / 1000 : null,
    notEnforced,
  };
}
