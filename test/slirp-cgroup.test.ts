// An egress session's slirp4netns runs in the session's own cgroup: slirp holds memory for every connection the
// server makes (~165 KB each; a review's 2,800 connections to a receiver that never read made it 462 MB), and it ran
// in berth's cgroup, so a server could push its memory onto berth's account, past its own limits. Real berth, real
// slirp4netns; no traffic leaves the session (the server makes none). Skipped, with the reason, where berth is not
// root, a driver or slirp4netns is missing, or no cgroup can be written.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupPath, detectCgroups } from '../src/sandbox/cgroups.ts';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { networkUnavailable } from '../src/sandbox/network.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

/** The processes in a session's pids cgroup (v1) or its cgroup (v2), read from the host: pid and name (comm). */
function processesIn(session: string): Array<{ pid: number; comm: string }> {
  const cg = detectCgroups();
  const dir = cg.version === 2 ? join('/sys/fs/cgroup', cgroupPath(session)) : join('/sys/fs/cgroup/pids', cgroupPath(session));
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((pid) => ({ pid: Number(pid), comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() }));
}

const why = async (d: typeof namespaceDriver) => {
  if (process.getuid?.() !== 0) return 'berth is not root: it makes no network of its own';
  const net = networkUnavailable('egress');
  if (net) return net;
  if (!detectCgroups().version) return 'no cgroup berth may write';
  const p = await d.probe(ROOT);
  return p.ok ? false : `${d.name} driver unavailable here: ${p.reason}`;
};

for (const driver of [namespaceDriver, gvisorDriver]) {
  const skip = await why(driver);
  if (skip) console.log(`# SKIP slirp4netns in the session's cgroup, ${driver.name}: ${skip}`);
  describe(`${driver.name}, network egress`, { skip, timeout: 180_000 }, () => {
    let berth: BerthProcess;
    before(async () => {
      berth = await runBerth(
        ['--isolation', driver.name, '--network', 'egress', '--warm-pool', '1'],
        await compiledFixture('hostile-server'),
      );
    });
    after(() => berth?.stop());

    test("the session's slirp4netns is in the session's cgroup, and is gone with the session", async () => {
      const c = await connect(berth.url);
      const session = JSON.parse(textOf(await c.client.callTool({ name: 'whoami', arguments: {} }))).session as string;
      const inside = processesIn(session);
      const slirp = inside.find((p) => p.comm === 'slirp4netns');
      assert.ok(slirp, `the session's cgroup holds ${inside.map((p) => p.comm).join(', ')}`);
      await c.transport.terminateSession();
      await c.client.close();
      for (let t = 0; existsSync(`/proc/${slirp.pid}`); t++) {
        assert.ok(t < 300, `the session's slirp4netns (pid ${slirp.pid}) outlived it`);
        await new Promise((r) => setTimeout(r, 50));
      }
    });
  });
}
