// A per-session overlay over a directory no session may change (a runtime's code, an image's unpacked root): reads
// see the lower directory, every write (and every mount point a runtime makes) lands in the session's own upper
// layer in its scratch directory, gone with the session. Root only: mounting an overlay needs CAP_SYS_ADMIN.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, run } from './host.js';

/** Mounts the overlay at scratch/merged and returns that path, or undefined when berth is not root or mount failed. */
export async function mountOverlay(lower: string, scratch: string): Promise<string | undefined> {
  if (!isRoot()) return undefined;
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => join(scratch, d)) as [string, string, string];
  for (const d of [upper, work, merged]) mkdirSync(d);
  // nodev, nosuid: an image's layers may hold device nodes and setuid files (umoci unpacks them as root); under a
  // mount of the host's user namespace a 0666 block device would be the host's disk.
  const opts = `nodev,nosuid,lowerdir=${lower},upperdir=${upper},workdir=${work}`;
  const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', opts, merged]);
  return r.code === 0 ? merged : undefined;
}
