// limits.memory has a default (DEFAULT_MEMORY, 2 GiB a session) wherever berth can set cgroup limits, and every
// sandboxed process runs at oom_score_adj 500: without them one server could take the host's memory, and the
// kernel's OOM killer then chose among all processes, berth included. Real berth processes and the hostile fixture
// server; a driver or a host without a memory cgroup berth may write is skipped with the reason printed. (Where berth
// cannot hold the default it starts anyway and says so once: pids-default.test.ts checks that line for both.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_MEMORY, LimitsSchema } from '../src/config/schema.ts';
import { cgroupPath, detectCgroups, memoryUnavailable, sessionMemory } from '../src/sandbox/cgroups.ts';
import { SANDBOX_OOM_SCORE_ADJ } from '../src/sandbox/child.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

type Client = Awaited<ReturnType<typeof connect>>;
const call = async (c: Client, name: string, args: Record<string, unknown> = {}) =>
  textOf(await c.client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 }));

/** The session's memory cgroup directory on the host, and the file holding its limit. */
function memoryLimitFile(session: string): string {
  const rel = cgroupPath(session);
  return detectCgroups().version === 2
    ? join('/sys/fs/cgroup', rel, 'memory.max')
    : join('/sys/fs/cgroup/memory', rel, 'memory.limit_in_bytes');
}

const oomScoreAdj = (pid: number | string) => readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim();

test('limits.memory: unset is the default where cgroups can hold it, 0 is no limit, a size is taken', () => {
  assert.equal(DEFAULT_MEMORY, 2 * 1024 ** 3);
  assert.equal(LimitsSchema.parse({}).memory, undefined, 'unset stays unset, so the default can be told from a configured limit');
  assert.equal(LimitsSchema.parse({ memory: 0 }).memory, 0);
  assert.equal(LimitsSchema.parse({ memory: '256MiB' }).memory, 256 * 1048576);
  assert.throws(() => LimitsSchema.parse({ memory: '256' }), /with its unit/);
  assert.equal(sessionMemory(0), undefined);
  assert.equal(sessionMemory(1048576), 1048576);
  assert.equal(sessionMemory(undefined), memoryUnavailable() ? undefined : DEFAULT_MEMORY);
});

const noCgroup = memoryUnavailable();
if (noCgroup) console.log(`# SKIP the memory default: no memory cgroup berth may write here (${noCgroup})`);

for (const driver of ['namespace', 'process'] as const) {
  let skip: string | false = noCgroup ? `no memory cgroup berth may write here: ${noCgroup}` : false;
  if (!skip && driver === 'namespace') {
    const p = await namespaceDriver.probe(ROOT);
    if (!p.ok) console.log(`# SKIP namespace memory default: ${p.reason}`);
    skip = p.ok ? false : `namespace driver unavailable here: ${p.reason}`;
  }

  describe(`${driver}: the default memory limit and the OOM killer's order`, { skip, timeout: 240_000 }, () => {
    let berth: BerthProcess;
    before(async () => {
      const hostile = await compiledFixture('hostile-server');
      berth = await runBerth(['--isolation', driver, '--network', 'none', '--warm-pool', '1'], hostile);
    });
    after(() => berth?.stop());

    test('a session with no memory configured gets 2 GiB; its processes, and what they start, rank first for the OOM killer; berth does not', async () => {
      const a = await connect(berth.url);
      const session = JSON.parse(await call(a, 'whoami')).session as string;
      const limitFile = memoryLimitFile(session);
      assert.equal(readFileSync(limitFile, 'utf8').trim(), String(DEFAULT_MEMORY), 'the session cgroup holds the default');

      // Every process of the session's cgroup (the server, and under namespace bubblewrap's), seen from the host…
      const procs = readFileSync(join(limitFile, '..', 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean);
      assert.ok(procs.length >= 1, 'the session has processes in its cgroup');
      for (const pid of procs) assert.equal(oomScoreAdj(pid), String(SANDBOX_OOM_SCORE_ADJ), `process ${pid} of the session`);
      // …and what the server starts later, seen from inside: a shell and its cat inherit it.
      const sh = JSON.parse(await call(a, 'sh', { cmd: 'cat /proc/self/oom_score_adj' })) as { status: number; stdout: string };
      assert.deepEqual([sh.status, sh.stdout.trim()], [0, String(SANDBOX_OOM_SCORE_ADJ)]);
      // berth itself keeps the host's order: it is never ranked with its tenants.
      assert.notEqual(oomScoreAdj(berth.proc.pid!), String(SANDBOX_OOM_SCORE_ADJ));

      await a.transport.terminateSession();
      await a.client.close();
      await waitFor(() => !existsSync(limitFile), 'the session cgroup to be removed', 30_000);
    });

    test('a server allocating past the default is killed for memory, alone, and its session says which limit', async () => {
      const a = await connect(berth.url);
      const b = await connect(berth.url);
      // Bounded: 2200 MiB, just past the 2048 MiB default; the kernel stops it well before on a host with less.
      const err = await a.client.callTool({ name: 'alloc', arguments: { mb: 2200 } }, undefined, { timeout: 120_000 }).then(
        (r) => `answered: ${textOf(r)}`,
        (e: unknown) => String(e),
      );
      assert.match(err, /out of memory \(memory limit of 2048 MiB, limits\.memory\)/);
      await waitFor(() => /"reason":"oom"/.test(berth.logs()), 'the session to end with reason oom', 30_000);
      // The other session goes on.
      assert.ok(JSON.parse(await call(b, 'whoami')).session);
      await b.transport.terminateSession();
      await Promise.all([a.client.close(), b.client.close()]);
    });
  });
}
