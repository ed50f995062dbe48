// limits.pids has a default (DEFAULT_PIDS, 512 tasks per session) wherever berth can set cgroup limits: every
// sandbox runs as the same uid, so without it one session's fork bomb took the pids every other session and the
// host share. Real berth processes and the hostile fixture server; a driver or a host without a pids cgroup berth
// may write is skipped with the reason printed. Where berth cannot hold the default (not root), it starts anyway and
// says so once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PIDS, LimitsSchema } from '../src/config/schema.ts';
import { cgroupPath, detectCgroups, pidsUnavailable, sessionPids } from '../src/sandbox/cgroups.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { descendants } from './helpers/procs.ts';
import { waitFor } from './helpers/unit.ts';

type Client = Awaited<ReturnType<typeof connect>>;
const call = async (c: Client, name: string, args: Record<string, unknown> = {}) =>
  textOf(await c.client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 }));

/** A live process (a zombie holds no pid of the session's budget, and is its parent's to reap). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The session's pids cgroup directory on the host. */
function pidsCgroup(session: string): string {
  const rel = cgroupPath(session);
  return detectCgroups().version === 2 ? join('/sys/fs/cgroup', rel) : join('/sys/fs/cgroup/pids', rel);
}

const readTasks = (dir: string) =>
  readFileSync(join(dir, detectCgroups().version === 2 ? 'cgroup.threads' : 'tasks'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(Number);

test('limits.pids: unset is the default where cgroups can hold it, 0 is no limit, a number is taken, a negative one refused', () => {
  assert.equal(DEFAULT_PIDS, 512);
  assert.equal(LimitsSchema.parse({}).pids, undefined, 'unset stays unset, so the default can be told from a configured limit');
  assert.equal(LimitsSchema.parse({ pids: 0 }).pids, 0);
  assert.throws(() => LimitsSchema.parse({ pids: -1 }));
  assert.throws(() => LimitsSchema.parse({ pids: 1.5 }));
  assert.equal(sessionPids(0), undefined);
  assert.equal(sessionPids(100), 100);
  assert.equal(sessionPids(undefined), pidsUnavailable() ? undefined : DEFAULT_PIDS);
});

const noCgroup = pidsUnavailable();
if (noCgroup) console.log(`# SKIP the pids default under load: no pids cgroup berth may write here (${noCgroup})`);

for (const driver of ['namespace', 'process'] as const) {
  let skip: string | false = noCgroup ? `no pids cgroup berth may write here: ${noCgroup}` : false;
  if (!skip && driver === 'namespace') {
    const p = await namespaceDriver.probe(ROOT);
    if (!p.ok) console.log(`# SKIP namespace pids default: ${p.reason}`);
    skip = p.ok ? false : `namespace driver unavailable here: ${p.reason}`;
  }

  describe(`${driver}: the default pids limit`, { skip, timeout: 240_000 }, () => {
    let berth: BerthProcess;
    before(async () => {
      // Bundled (no tsx): the server's own threads are then few and fixed, so the count is the children's.
      const hostile = await compiledFixture('hostile-server');
      berth = await runBerth(['--isolation', driver, '--network', 'none', '--warm-pool', '2'], hostile);
    });
    after(() => berth?.stop());

    test('a session that forks 2000 children is stopped near 512 tasks; another session still starts processes and answers; ending it leaves nothing', async (t) => {
      const a = await connect(berth.url);
      const b = await connect(berth.url);
      const session = JSON.parse(await call(a, 'whoami')).session as string;
      const cgroup = pidsCgroup(session);
      assert.equal(readFileSync(join(cgroup, 'pids.max'), 'utf8').trim(), String(DEFAULT_PIDS), 'the session cgroup holds the default');

      // Bounded: at most 2000 children, each ending by itself within a minute, stopping at the first refusal.
      const r = JSON.parse(await call(a, 'fork', { count: 2000, sleepS: 60 })) as { started: number; failed: string };
      t.diagnostic(`${driver}: ${r.started} children started, then ${r.failed}`);
      assert.equal(r.failed, 'EAGAIN', JSON.stringify(r));
      // 512 tasks in all: the server's own threads (about a dozen; under namespace also bubblewrap's two) and its children.
      assert.ok(r.started < DEFAULT_PIDS && r.started > DEFAULT_PIDS - 64, JSON.stringify(r));
      const tasks = readTasks(cgroup);
      assert.ok(tasks.length <= DEFAULT_PIDS, `${tasks.length} tasks in the session's cgroup`);
      assert.ok(Number(readFileSync(join(cgroup, 'pids.current'), 'utf8')) <= DEFAULT_PIDS);

      // The other session is untouched: it starts processes of its own and answers.
      const other = JSON.parse(await call(b, 'fork', { count: 50, sleepS: 1 })) as { started: number; failed: string };
      assert.deepEqual(other, { started: 50, failed: '' });
      const sh = JSON.parse(await call(b, 'sh', { cmd: 'echo $((6 * 7)) & wait' })) as { status: number; stdout: string };
      assert.deepEqual([sh.status, sh.stdout], [0, '42\n']);
      // The flooding server lives on within its limit.
      assert.equal(JSON.parse(await call(a, 'whoami')).session, session);

      // Ending the session ends every one of its processes, the children still sleeping included, and its cgroup.
      const procs = readFileSync(join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
      assert.ok(procs.length > DEFAULT_PIDS / 2, `${procs.length} processes in the session's cgroup`);
      await a.transport.terminateSession();
      await a.client.close();
      await waitFor(() => !existsSync(cgroup), 'the session cgroup to be removed', 30_000);
      // The refusals were EAGAINs inside the sandbox: berth's log says, once the session ended, that they happened
      // (said at the server's exit, so before the cgroup goes, but its line may reach this pipe a moment after).
      const said =
        /the session reached its limit of 512 processes and threads \(limits\.pids\): [1-9]\d* forks or new threads were refused with EAGAIN/;
      await waitFor(() => said.test(berth.logs()), `berth to log the refused forks; it logged:\n${berth.logs().slice(-2000)}`, 30_000);
      await waitFor(() => procs.every((p) => !alive(p)), 'every process of the session to be gone', 30_000);
      // Nothing of it below berth either: no process of the session, no child still sleeping its minute.
      const cmdline = (p: number) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8');
        } catch {
          return '';
        }
      };
      const below = descendants(berth.proc.pid!).filter(alive);
      assert.deepEqual(
        below.filter((p) => procs.includes(p) || cmdline(p) === '/bin/sleep\x0060\x00'),
        [],
        'no process of the ended session is left below berth',
      );

      assert.equal(JSON.parse(await call(b, 'whoami')).session !== session, true);
      await b.transport.terminateSession();
      await b.client.close();
    });
  });
}

// Where berth cannot set cgroup limits, the default is no reason to refuse: berth starts, says once why the default
// is not applied, and serves. As root this runs berth as uid 65534 (no cgroup it may write); as another user, as itself.
describe('without cgroups berth may write', { timeout: 120_000 }, () => {
  const asRoot = process.getuid?.() === 0;
  const setpriv = asRoot ? spawnSync('which', ['setpriv'], { encoding: 'utf8' }).stdout.trim() : '';
  const skip =
    asRoot && !setpriv
      ? 'setpriv (util-linux) is not installed: cannot run berth as another user'
      : !asRoot && !noCgroup
        ? 'this user may write a pids cgroup: the default applies'
        : false;
  if (skip) console.log(`# SKIP ${skip}`);
  const state = mkdtempSync(join(tmpdir(), 'berth-pids-state-'));
  after(() => rmSync(state, { recursive: true, force: true }));

  test('the default does not stop berth from starting; it is said once; a configured limit is still warned about', { skip }, async (t) => {
    const hostile = await compiledFixture('hostile-server');
    if (asRoot) {
      spawnSync('chown', ['65534:65534', state]);
      // uid 65534 must reach the checkout and the bundled fixture.
      const blocked = [ROOT, hostile[1]!].find(
        (p) => spawnSync(setpriv, ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'test', '-r', p]).status !== 0,
      );
      if (blocked) return t.skip(`uid 65534 cannot read ${blocked}`);
    }
    const launcher = asRoot ? [setpriv, '--reuid', '65534', '--regid', '65534', '--clear-groups'] : [];
    const env = { BERTH_STATE_DIR: state, HOME: state, XDG_CACHE_HOME: state };
    for (const pids of [[], ['--pids', '64']]) {
      const berth = await startBerth(
        ['run', '--port', '0', '--isolation', 'process', '--network', 'host', '--disk', '0', '--warm-pool', '1', ...pids, '--', ...hostile],
        env,
        launcher,
      );
      try {
        const c = await connect(berth.url);
        const r = JSON.parse(await call(c, 'fork', { count: 20, sleepS: 1 })) as { started: number };
        assert.equal(r.started, 20);
        await c.transport.terminateSession();
        await c.client.close();
        const said = berth
          .logs()
          .split('\n')
          .filter((l) => l.includes('the default per-session limits'));
        assert.equal(said.length, 1, berth.logs());
        assert.match(said[0]!, /not applied \(berth is not running as root/);
        assert.match(said[0]!, /limits\.memory \(2 GiB, --memory\)/, 'memory is unset in both runs');
        if (pids.length) {
          assert.doesNotMatch(said[0]!, /limits\.pids/, 'a configured limit is not the default');
          assert.match(berth.logs(), /resource limits cannot be enforced on this host/);
        } else assert.match(said[0]!, /limits\.pids \(512 processes and threads, --pids\)/);
      } finally {
        await berth.stop();
      }
    }
  });
});
