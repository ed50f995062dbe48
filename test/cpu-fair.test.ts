// A session shares the CPU as one, however many processes it runs. Without a cpu cgroup of its own each of its
// processes competed with every other session's on its own (and, under the kernel's autogroup, each child that
// calls setsid was a group of its own): a server that started 4 busy children per core left a session running one
// per core 14-15% of the work in a loaded run here (21-31% with this change), and berth as little. Now every session's processes are in a cpu cgroup of
// the session's (src/sandbox/cgroups.ts), with or without limits.cpus, and setsid does not leave it. This checks
// the mechanism on real berth as root (the hostile fixture's `burn` tool starts the children); how the scheduler
// then divides the CPU depends on the host's load and is not timed here.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';
import { cgroupPath, detectCgroups } from '../src/sandbox/cgroups.ts';

const cg = detectCgroups();
const skip =
  process.getuid?.() !== 0
    ? 'needs root (cgroups)'
    : !cg.controllers.includes('cpu')
      ? `no cpu cgroup controller (${cg.reason ?? cg.version})`
      : false;

/** The pids of a session's cgroup in a hierarchy (v1: memory, cpu; v2: the one). */
function procs(controller: 'memory' | 'cpu', sessionId: string): number[] {
  const dir = cg.version === 2 ? join('/sys/fs/cgroup', cgroupPath(sessionId)) : join('/sys/fs/cgroup', controller, cgroupPath(sessionId));
  const file = join(dir, 'cgroup.procs');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number).sort();
}

for (const isolation of ['process', 'namespace'] as const) {
  describe(`a cpu cgroup per session (${isolation})`, { skip }, () => {
    let berth: BerthProcess;
    before(async () => {
      const hostile = await compiledFixture('hostile-server');
      berth = await serveConfig({ server: { port: 0 }, runtimes: { default: { command: hostile, isolation, warmPool: 2 } } });
    });
    after(() => berth?.stop());

    test('without limits.cpus, a session and the children it detaches with setsid are in a cpu cgroup of its own', async () => {
      const [a, b] = [await connect(berth.url), await connect(berth.url)];
      const sessionOf = async (c: typeof a) =>
        (JSON.parse(textOf(await c.client.callTool({ name: 'whoami', arguments: {} }))) as { session: string }).session;
      const [sa, sb] = [await sessionOf(a), await sessionOf(b)];
      const children = 3;
      const burning = a.client.callTool({ name: 'burn', arguments: { procs: children, ms: 4000, setsid: true } }, undefined, {
        timeout: 120_000,
      });
      // The server and its busy children, all in the session's cpu cgroup, as in its memory cgroup.
      const inCpu = await waitFor(
        () => {
          const p = procs('cpu', sa);
          return p.length > children && p;
        },
        `${children} children in ${cgroupPath(sa)}'s cpu cgroup`,
      );
      if (cg.version === 1)
        assert.deepEqual(
          inCpu,
          procs('memory', sa).filter((p) => inCpu.includes(p)),
        );
      else assert.match(readFileSync(join('/sys/fs/cgroup', cgroupPath(sa), 'cgroup.controllers'), 'utf8'), /\bcpu\b/);
      // The other session has a cgroup of its own, holding none of them.
      const other = procs('cpu', sb);
      assert.ok(other.length >= 1, `${cgroupPath(sb)} holds the other session's server`);
      assert.ok(!other.some((p) => inCpu.includes(p)));
      assert.match(textOf(await burning), /"turns"/);
      await a.transport.terminateSession();
      await b.transport.terminateSession();
    });
  });
}
