// An image's environment under the namespace driver goes to bwrap as NUL-separated arguments (--args 4): a NUL inside
// a name or value would end an argument early and let the rest be read as bwrap's own options (a --bind of the host's
// root, say). Such an environment is refused before anything is made: no process, mount or namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespaceDriver } from '../src/sandbox/namespace.ts';

test("a NUL byte in an image's environment is refused before the sandbox is made", async () => {
  const work = mkdtempSync(join(tmpdir(), 'berth-image-env-'));
  try {
    for (const env of [{ X: 'a\0--bind\0/\0/host' }, { ['X\0--bind']: 'v' }]) {
      await assert.rejects(
        namespaceDriver.start({
          sessionId: 'nul-env',
          argv: ['/bin/true'],
          cwd: '/',
          workDir: work,
          env,
          limits: {},
          network: 'none',
          mounts: [],
          image: { rootfs: join(work, 'no-root'), cwd: '/', uid: 1000, gid: 1000 },
        }),
        /the environment variable "X(\\u0000--bind)?" holds a NUL byte/,
      );
    }
    await assert.rejects(
      namespaceDriver.start({
        sessionId: 'eq-env',
        argv: ['/bin/true'],
        cwd: '/',
        workDir: work,
        env: { 'A=B': 'v' },
        limits: {},
        network: 'none',
        mounts: [],
        image: { rootfs: join(work, 'no-root'), cwd: '/', uid: 1000, gid: 1000 },
      }),
      /the environment variable name "A=B" is empty or holds "="/,
    );
    assert.deepEqual(readdirSync(work), [], 'nothing was made for it');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
