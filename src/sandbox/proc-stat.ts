// Reading a process's identity from /proc: what tells a live owner from a dead one (registry.ts, host-shell.ts).
import { readFileSync } from 'node:fs';

/**
 * A process's start time (clock ticks since boot), parent and process group from /proc/PID/stat, or undefined
 * when it is gone or a zombie. The start time tells a process apart from a later one that reused its pid.
 */
export function procStat(pid: number): { start: number; ppid: number; pgid: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on; comm may hold spaces
    if (f[0] === 'Z' || f[0] === 'X') return undefined;
    return { start: Number(f[19]), ppid: Number(f[1]), pgid: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/**
 * This process as an owner: its pid and start time, `PID-START`. State named with it (registry.ts's instance
 * directories, host-shell.ts's scratch directory) is another berth's to sweep once ownerAlive says it is gone.
 */
export function ownerTag(): string {
  return `${process.pid}-${procStat(process.pid)?.start ?? 0}`;
}

/** Whether the process an owner tag names still runs: same pid, same start time (not a later one reusing the pid). */
export const ownerAlive = (pid: number, start: number): boolean => procStat(pid)?.start === start;
