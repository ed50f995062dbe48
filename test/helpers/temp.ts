// Temporary directories for a test file, removed when its process exits normally (pass or fail; a process killed by a
// signal runs no exit handler), so runs of the suite do not pile them up in the temp directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.once('exit', () => {
  for (const d of made) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // a child still writing into it (ENOTEMPTY): never fail a test file over its scratch space
    }
  }
});

/** A new directory under the OS temp dir, named `prefix` and random characters; gone once this process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
