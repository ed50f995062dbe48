// What every session on this host may use together: the limits of the cgroup all sessions' cgroups live under
// (cgroups.ts sessionsParent), written once as berth starts. Each session has its own limits.memory and limits.pids,
// but nothing bounded their sum: 64 sessions at the default 512 tasks could take every pid of a host with
// kernel.pid_max 32768, and twelve at the default 2 GiB the memory of a 24 GiB host, from berth and the host's
// services alike. With these, past the sum a fork fails with EAGAIN (or the kernel's OOM killer ends a session's
// process) inside the sessions, and berth and the host keep the rest. It does not make sessions fair to each other:
// that is each session's own limit.
import { readFileSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { detectCgroups, sessionsParent } from './cgroups.js';

export interface AllSessions {
  memory: number | 'auto';
  pids: number | 'auto';
}

/** What "auto" leaves the host: a fifth of its memory, a quarter of its pids. */
const AUTO_MEMORY_SHARE = 0.8;
const AUTO_PIDS_SHARE = 0.75;

const readNumber = (path: string) => {
  try {
    return Number(readFileSync(path, 'utf8').trim());
  } catch {
    return undefined;
  }
};

/** The sums as numbers (0: none): "auto" is 80% of the host's memory and 75% of the smaller of pid_max and threads-max. */
export function allSessionsLimits(o: AllSessions): { memory: number; pids: number } {
  const pidMax = Math.min(readNumber('/proc/sys/kernel/pid_max') ?? Infinity, readNumber('/proc/sys/kernel/threads-max') ?? Infinity);
  return {
    memory: o.memory === 'auto' ? Math.floor(totalmem() * AUTO_MEMORY_SHARE) : o.memory,
    pids: o.pids === 'auto' ? (Number.isFinite(pidMax) ? Math.floor(pidMax * AUTO_PIDS_SHARE) : 0) : o.pids,
  };
}

/**
 * Writes the sums to the sessions' parent cgroup; returns what was set, and why what could not be was not (no cgroup
 * berth may write: not root; a limit below what the sessions already use).
 */
export function limitAllSessions(o: AllSessions): { set: { memory?: number; pids?: number }; problems: string[] } {
  const want = allSessionsLimits(o);
  const out: { set: { memory?: number; pids?: number }; problems: string[] } = { set: {}, problems: [] };
  const v2 = detectCgroups().version === 2;
  const apply = (controller: 'memory' | 'pids', value: number, file: string, none: string) => {
    const dir = sessionsParent(controller);
    if (!dir)
      return void out.problems.push(`server.allSessions.${controller}: ${detectCgroups().reason ?? `no ${controller} cgroup controller`}`);
    try {
      writeFileSync(join(dir, file), value ? String(value) : none);
      if (value) out.set[controller] = value;
    } catch (e) {
      out.problems.push(`server.allSessions.${controller} (${value}) could not be set on ${dir}: ${(e as Error).message}`);
    }
  };
  apply('memory', want.memory, v2 ? 'memory.max' : 'memory.limit_in_bytes', v2 ? 'max' : '-1');
  apply('pids', want.pids, 'pids.max', 'max');
  return out;
}
