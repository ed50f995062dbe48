// server.allSessions: what every session of the host may use together, as the limits of the cgroup all sessions'
// cgroups live under. Each session had its own limits, but nothing bounded their sum: 64 sessions at the default 512
// tasks could take every pid of a host with kernel.pid_max 32768, and twelve at the default 2 GiB a 24 GiB host's
// memory, from berth and the host alike. Real berth (as root, with cgroups), the real cgroup files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { allSessionsLimits } from '../src/sandbox/all-sessions.ts';
import { detectCgroups, sessionsParent } from '../src/sandbox/cgroups.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { runBerth } from './helpers/berth.ts';

const pidMax = Math.min(...['pid_max', 'threads-max'].map((f) => Number(readFileSync(`/proc/sys/kernel/${f}`, 'utf8'))));

test('"auto" is 80% of the host memory and 75% of the smaller of pid_max and threads-max; numbers pass, 0 is none', () => {
  assert.deepEqual(allSessionsLimits({ memory: 'auto', pids: 'auto' }), {
    memory: Math.floor(totalmem() * 0.8),
    pids: Math.floor(pidMax * 0.75),
  });
  assert.deepEqual(allSessionsLimits({ memory: 0, pids: 1000 }), { memory: 0, pids: 1000 });
  const server = (allSessions: unknown) => ConfigSchema.safeParse({ server: { allSessions }, runtimes: { default: { command: ['x'] } } });
  assert.deepEqual(server(undefined).data?.server.allSessions, { memory: 'auto', pids: 'auto' });
  assert.equal(server({ memory: '16GiB' }).data?.server.allSessions.memory, 16 * 1024 ** 3);
  assert.equal(server({ memory: '16' }).success, false, 'a size needs its unit');
  assert.equal(server({ pids: -1 }).success, false);
});

const cg = detectCgroups();
const skip =
  process.getuid?.() !== 0
    ? 'berth is not root: it writes no cgroup'
    : !cg.version || !cg.controllers.includes('memory') || !cg.controllers.includes('pids')
      ? 'no memory and pids cgroup controllers berth may write'
      : false;

test('a berth starting as root sets the sums on the sessions’ parent cgroup', { skip }, async () => {
  const berth = await runBerth(['--isolation', 'process', '--network', 'host', '--warm-pool', '0']);
  try {
    const want = allSessionsLimits({ memory: 'auto', pids: 'auto' });
    const v2 = cg.version === 2;
    const memory = Number(readFileSync(join(sessionsParent('memory')!, v2 ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8'));
    // v1 rounds a memory limit down to whole pages.
    assert.ok(memory <= want.memory && memory > want.memory - 4096 * 16, `memory limit ${memory}, wanted ${want.memory}`);
    assert.equal(Number(readFileSync(join(sessionsParent('pids')!, 'pids.max'), 'utf8')), want.pids);
  } finally {
    await berth.stop();
  }
});
