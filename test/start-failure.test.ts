// A sandbox whose start fails after its cgroup is made (its program cannot be spawned, or a process dies before it
// joins the cgroup: ESRCH) is cleaned up at once, as a server's exit is: its cgroup, the driver's scratch space and
// network (cleanup), its working directory and its sweep record. Before, the spawn failure left all of them, and the
// failed cgroup join everything but the cgroup, to the next berth's sweep (a review saw a cgroup left behind while
// the host was out of open files). Real spawn, real cgroups (as root), real state directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupPath, cgroupRoots, detectCgroups } from '../src/sandbox/cgroups.ts';
import { startChild } from '../src/sandbox/child.ts';
import { hostName } from '../src/sandbox/host.ts';
import { useStateRoot } from '../src/sandbox/registry.ts';

/** Every file under dir, recursively. */
const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [e.name]));

test('a sandbox whose program cannot be spawned leaves no cgroup, scratch, working directory or record', async () => {
  const state = mkdtempSync(join(tmpdir(), 'berth-state-'));
  useStateRoot(state);
  const workDir = mkdtempSync(join(tmpdir(), 'berth-failing-'));
  const sessionId = `start-failure-${process.pid}`;
  let cleanedUp = 0;
  try {
    await assert.rejects(
      startChild({
        driver: 'process',
        file: join(workDir, 'no-such-program'),
        args: [],
        cwd: workDir,
        env: {},
        // A pids limit: as root, a cgroup is made before the spawn.
        spec: { sessionId, argv: [], cwd: workDir, workDir, env: {}, limits: { pids: 64 }, network: 'host', mounts: [] },
        cleanup: async () => void cleanedUp++,
      }),
      /cannot start .*no-such-program.*ENOENT/,
    );
    assert.equal(cleanedUp, 1, "the driver's cleanup ran once");
    assert.equal(existsSync(workDir), false, 'the working directory is removed');
    if (process.getuid?.() === 0 && detectCgroups().version)
      for (const root of cgroupRoots()) assert.equal(existsSync(join(root, cgroupPath(sessionId))), false, `no cgroup left in ${root}`);
    assert.deepEqual(
      files(state).filter((f) => f.startsWith(hostName(sessionId))),
      [],
      'no sweep record left',
    );
  } finally {
    rmSync(workDir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  }
});
