// A session's writable space, capped (limits.disk): a tmpfs of that size that berth mounts (root only) where the
// session writes, so a server that fills it gets ENOSPC and the host's disk never sees a byte of it. tmpfs lives
// in memory (and swap): what a session writes is charged to its memory cgroup too, so with a memory limit below
// the disk cap the session is OOM-killed first. Sizes are bytes.
import { statfs } from 'node:fs/promises';
import { run } from './host.js';

export interface CappedMount {
  readonly dir: string;
  /** Stops watching and detaches the mount (lazily: a straggler's open file must not keep it). */
  release(): Promise<void>;
}

/**
 * Mounts a tmpfs of `bytes` at dir (which must exist), owned by `owner`; undefined when berth is not root. When it
 * fills up, `onFull` hears it once (checked every 2 s, off the hot path): the server only sees ENOSPC.
 */
export async function mountCapped(
  dir: string,
  bytes: number,
  owner: number,
  mode: number,
  onFull?: (what: string) => void,
): Promise<CappedMount | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const r = await run('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${bytes},mode=${mode.toString(8)},uid=${owner},gid=${owner},nosuid,nodev`,
    'tmpfs',
    dir,
  ]);
  if (r.code !== 0) throw new Error(`cannot cap the session's disk space (mount tmpfs on ${dir}): ${r.stderr.trim()}`);
  const timer = setInterval(() => {
    statfs(dir)
      .then((s) => {
        if (s.bavail > 0) return;
        clearInterval(timer);
        onFull?.(`the session's writable space is full (limits.disk = ${bytes} bytes): its writes fail with ENOSPC`);
      })
      .catch(() => clearInterval(timer));
  }, 2000);
  timer.unref();
  return {
    dir,
    async release() {
      clearInterval(timer);
      await run('umount', ['-l', dir]);
    },
  };
}
