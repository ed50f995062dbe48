// Linux /proc readers: CPU time, memory and the child processes of a pid. Every reader tolerates a process
// that vanished between listing and reading (it answers 0 / undefined instead of throwing).
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for /proc/PID/stat times; 100 on every Linux this bench targets. */
export const CLK_TCK = 100;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Fields of /proc/PID/stat after the command name (which may contain spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  const s = read(`/proc/${pid}/stat`);
  if (!s) return undefined;
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU time of a process (all threads), in milliseconds. */
export function cpuMs(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  // After the name: [0]=state [1]=ppid ... [11]=utime [12]=stime (fields 14 and 15 of stat(5)).
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** When the process started (clock ticks since boot): with the pid, identifies one process across pid reuse. */
export function startTime(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[19]) : undefined;
}

export function alive(pid: number): boolean {
  const f = statFields(pid);
  return f !== undefined && f[0] !== 'Z';
}

/** Resident set size in KiB. */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : 0;
}

/** Page tables of a process in KiB (kernel memory that PSS does not count). */
export function pteKb(pid: number): number {
  const m = /VmPTE:\s+(\d+)/.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : 0;
}

/** Threads of a process (each takes a pid from kernel.pid_max). */
export function threads(pid: number): number {
  const m = /Threads:\s+(\d+)/.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : 0;
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** The soft limit on open files of a process. */
export function openFilesLimit(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(read(`/proc/${pid}/limits`) ?? '');
  return !m ? NaN : m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** Threads alive on the whole machine, and the kernel's pid_max (threads take pids too). */
export function machineTasks(): { tasks: number; pidMax: number } {
  let tasks = 0;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      tasks += readdirSync(`/proc/${name}/task`).length;
    } catch {
      // gone
    }
  }
  return { tasks, pidMax: Number((read('/proc/sys/kernel/pid_max') ?? '').trim()) };
}

/** Proportional set size in KiB: shared pages (node binary, libraries) are split among the processes mapping them. */
export function pssKb(pid: number): number | undefined {
  const m = /^Pss:\s+(\d+)/m.exec(read(`/proc/${pid}/smaps_rollup`) ?? '');
  return m ? Number(m[1]) : undefined;
}

/** pid -> parent pid of every live process, from one scan of /proc. */
export function processTable(): Map<number, number> {
  const t = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && f[0] !== 'Z') t.set(Number(name), Number(f[1]));
  }
  return t;
}

/** Direct children of a process (the kernel's task/children file is not always built in, so /proc is scanned). */
export function childrenOf(pid: number, table = processTable()): number[] {
  return [...table].filter(([, ppid]) => ppid === pid).map(([p]) => p);
}

/** Every descendant of a process, children first. */
export function descendantsOf(pid: number, table = processTable()): number[] {
  const kids = new Map<number, number[]>();
  for (const [p, pp] of table) kids.set(pp, [...(kids.get(pp) ?? []), p]);
  const out: number[] = [];
  const queue = [...(kids.get(pid) ?? [])];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(kids.get(p) ?? []));
  }
  return out;
}

/** One variable of a process's initial environment (readable for our own processes, or as root). */
export function envOf(pid: number, name: string): string | undefined {
  const env = read(`/proc/${pid}/environ`);
  if (!env) return undefined;
  const entry = env.split('\0').find((e) => e.startsWith(`${name}=`));
  return entry?.slice(name.length + 1);
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
export function systemCpu(): { busy: number; total: number } {
  const line = (read('/proc/stat') ?? '').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}
