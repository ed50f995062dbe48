// Free memory: what this berth may still use (cluster placement, and each runtime's limits.minFreeMemory). In a pod
// that is its cgroup's memory.max − memory.current (os.freemem() would report the whole host); else the host's
// MemAvailable.
import { readFileSync } from 'node:fs';

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Bytes this process's cgroup (v2) may still use, else MemAvailable; undefined when neither can be read. */
export function freeMemory(): number | undefined {
  const line = read('/proc/self/cgroup')
    ?.split('\n')
    .find((l) => l.startsWith('0::'));
  if (line) {
    const dir = `/sys/fs/cgroup${line.slice(3)}`;
    const max = read(`${dir}/memory.max`);
    const cur = read(`${dir}/memory.current`);
    if (max && max !== 'max' && cur) return Math.max(0, Number(max) - Number(cur));
  }
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(read('/proc/meminfo') ?? '');
  return m ? Number(m[1]) * 1024 : undefined;
}
