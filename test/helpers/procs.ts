// The processes below a pid, read from /proc (each task's children file), for tests that look at a sandbox's tree.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Every descendant of pid, breadth first; processes gone meanwhile are skipped. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      // gone
    }
    out.push(...kids);
    queue.push(...kids);
  }
  return out;
}

/** What each open descriptor of pid points at ("pipe:[…]", a path); empty when the process is gone. */
export function fdTargets(pid: number): string[] {
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    // gone
  }
  return fds.map((n) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${n}`);
    } catch {
      return ''; // closed meanwhile
    }
  });
}
