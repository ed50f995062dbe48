// Memory of sandboxes: the proportional set size (PSS) of a sandbox's whole process tree, from /proc. PSS splits
// shared pages (the node binary, libraries) among the processes mapping them, so sessions' figures add up to what
// they really cost. Linux only; elsewhere (or for a process that is gone) the figure is undefined.
import { readdir, readFile } from 'node:fs/promises';

export interface TreeMemory {
  /** Sum of Pss over the tree, in bytes. */
  pssBytes: number;
  /** Processes counted (the top one and its descendants). */
  processes: number;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined; // exited meanwhile, or not Linux
  }
}

/** Parent of every live process, from one scan of /proc. */
async function parents(): Promise<Map<number, number>> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return new Map();
  }
  const table = new Map<number, number>();
  await Promise.all(
    names
      .filter((n) => /^\d+$/.test(n))
      .map(async (n) => {
        const stat = await readText(`/proc/${n}/stat`);
        if (!stat) return;
        // The command name may hold spaces and parentheses: the fields start after its last ')'.
        const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (state !== 'Z') table.set(Number(n), Number(ppid));
      }),
  );
  return table;
}

async function pssKb(pid: number): Promise<number | undefined> {
  const m = /^Pss:\s+(\d+) kB/m.exec((await readText(`/proc/${pid}/smaps_rollup`)) ?? '');
  return m ? Number(m[1]) : undefined;
}

/** PSS of each top pid's process tree; one /proc scan for all of them. A pid not running is left out. */
export async function treeMemory(tops: number[]): Promise<Map<number, TreeMemory>> {
  const out = new Map<number, TreeMemory>();
  if (tops.length === 0) return out;
  const table = await parents();
  const children = new Map<number, number[]>();
  for (const [pid, ppid] of table) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  await Promise.all(
    tops.map(async (top) => {
      if (!table.has(top)) return;
      const tree: number[] = [];
      for (const queue = [top]; queue.length;) {
        const pid = queue.pop()!;
        tree.push(pid);
        queue.push(...(children.get(pid) ?? []));
      }
      const kb = await Promise.all(tree.map(pssKb));
      const counted = kb.filter((k): k is number => k !== undefined);
      if (counted.length) out.set(top, { pssBytes: counted.reduce((a, b) => a + b, 0) * 1024, processes: counted.length });
    }),
  );
  return out;
}

/**
 * treeMemory behind a short cache: reading smaps_rollup walks page tables, so several dashboards watching
 * (each asking every second) share one reading per maxAgeMs.
 */
export class MemoryReader {
  private last: { at: number; key: string; result: Promise<Map<number, TreeMemory>> } | undefined;

  constructor(private readonly maxAgeMs = 2000) {}

  read(tops: number[]): Promise<Map<number, TreeMemory>> {
    const key = [...tops].sort((a, b) => a - b).join(',');
    const now = Date.now();
    if (this.last && this.last.key === key && now - this.last.at < this.maxAgeMs) return this.last.result;
    this.last = { at: now, key, result: treeMemory(tops) };
    return this.last.result;
  }
}
