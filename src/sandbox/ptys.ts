// A namespace sandbox's pseudo-terminals: a devpts instance of its own with at most limits.ptys of them, which berth
// (root) mounts in the sandbox's scratch directory and bwrap shows at /dev/pts (its /dev/ptmx points there).
// Why: the kernel hands out ptys from one pool, kernel.pty.max (4096, of which kernel.pty.reserve, 1024, only the
// host's own /dev/pts may use). bubblewrap's devpts has no max=, so a review's server opened 3071 ptys and every
// other session, and every container on the host, got ENOSPC. With max= the session gets ENOSPC at its own cap.
// Threat model: the instance is newinstance (the session sees none of the host's or another session's terminals),
// ptmxmode 0666 so the nobody inside may open it, mode 0620 on each pty (its opener's; no one else's to read).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './host.js';

export interface PtyMount {
  /** The host path of the instance, for bwrap's --dev-bind to /dev/pts. */
  readonly dir: string;
  release(): Promise<void>;
}

/** Mounts a devpts instance of at most `max` ptys at scratch/pts; undefined when berth is not root (bwrap's own, uncapped). */
export async function mountPtys(scratch: string, max: number): Promise<PtyMount | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const dir = join(scratch, 'pts');
  await mkdir(dir, { mode: 0o755 });
  const r = await run('mount', ['-t', 'devpts', '-o', `newinstance,ptmxmode=0666,mode=0620,max=${max}`, 'devpts', dir]);
  if (r.code !== 0) throw new Error(`cannot cap the session's ptys (mount devpts on ${dir}): ${r.stderr.trim()}`);
  return { dir, release: async () => void (await run('umount', ['-l', dir])) };
}
