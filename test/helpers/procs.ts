// The processes below a pid, read from /proc (each task's children file), for tests that look at a sandbox's tree.
import { readFileSync } from 'node:fs';

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
