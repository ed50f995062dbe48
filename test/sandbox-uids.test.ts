// Each sandbox runs as a host uid of its own (src/sandbox/uids.ts; berth as root): the kernel counts some resources
// per user across namespaces — inotify instances above all (fs.inotify.max_user_instances, 128 by default) — and
// with every sandbox as uid 65534, one server holding them all left every other session without (fs.watch and
// `tail -f` failed or fell back to polling), and the host's own uid-65534 processes too. Real berth, the hostile
// fixture server, GNU tail (one inotify instance per `tail -f`). Skipped, with the reason, where the namespace
// driver cannot run or berth is not root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupPath, detectCgroups } from '../src/sandbox/cgroups.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { ownerTag } from '../src/sandbox/proc-stat.ts';
import { claimSandboxUid, SANDBOX_UIDS, sandboxUidOverlaps, sweepDeadLeases, UID_LEASE_DIR, useSandboxUids } from '../src/sandbox/uids.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { ACCEPT_BOTH, connect, initBody, ROOT, runBerth, shIn, serveConfig, textOf, type BerthProcess } from './helpers/berth.ts';
import { ConfigSchema } from '../src/config/schema.ts';

type Client = Awaited<ReturnType<typeof connect>>;
const sh = shIn;
const whoami = async (c: Client) => JSON.parse(textOf(await c.client.callTool({ name: 'whoami', arguments: {} }))).session as string;

/** The host uids of a session's processes, read from the host through its cgroup. */
function hostUids(session: string): number[] {
  const cg = detectCgroups();
  const dir = cg.version === 2 ? join('/sys/fs/cgroup', cgroupPath(session)) : join('/sys/fs/cgroup/pids', cgroupPath(session));
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((pid) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]));
}

const INSTANCES = Number(readFileSync('/proc/sys/fs/inotify/max_user_instances', 'utf8'));
const probe = await namespaceDriver.probe(ROOT);
const skip =
  process.getuid?.() !== 0
    ? 'berth is not root: every sandbox runs as berth’s own user'
    : !probe.ok
      ? `namespace driver unavailable here: ${probe.reason}`
      : !detectCgroups().version
        ? 'no cgroup berth may write (the test finds a session’s processes through it)'
        : INSTANCES > 400
          ? `fs.inotify.max_user_instances is ${INSTANCES}: more tail processes than the pids limit allows`
          : false;
if (skip) console.log(`# SKIP per-session uids: ${skip}`);

describe('namespace: every sandbox its own host uid', { skip, timeout: 240_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    const hostile = await compiledFixture('hostile-server');
    berth = await runBerth(['--isolation', 'namespace', '--network', 'none', '--warm-pool', '2'], hostile);
  });
  after(() => berth?.stop());

  test('two sessions run as two distinct uids from the sandbox range on the host, and as nobody inside', async () => {
    const a = await connect(berth.url);
    const b = await connect(berth.url);
    const [ua, ub] = [hostUids(await whoami(a)), hostUids(await whoami(b))];
    for (const uids of [ua, ub]) {
      assert.equal(new Set(uids).size, 1, `one uid for all of a session's processes: ${uids}`);
      assert.ok(uids[0]! >= SANDBOX_UIDS.first && uids[0]! < SANDBOX_UIDS.first + SANDBOX_UIDS.count, `uid ${uids[0]}`);
    }
    assert.notEqual(ua[0], ub[0]);
    const inside = await sh(a, 'id -u; id -g; stat -c %u .');
    assert.deepEqual(inside.stdout.split('\n').filter(Boolean), ['65534', '65534', '65534'], 'its working directory is its own');
    await Promise.all([a, b].map(async (c) => (await c.transport.terminateSession(), await c.client.close())));
  });

  test("a server holding every inotify instance its uid may have leaves another session's untouched", async () => {
    const a = await connect(berth.url);
    const b = await connect(berth.url);
    // A: one `tail -f` (one inotify instance each) past the per-user limit, each ending by itself within 60 s.
    const held = await sh(
      a,
      `: > f; i=0; while [ $i -lt ${INSTANCES + 4} ]; do timeout 60 tail -f f >/dev/null 2>>err & i=$((i+1)); done; ` +
        // Until every tail has either its instance or its complaint: both are said within a moment of starting.
        `n=0; while [ $n -lt 100 ] && [ "$(ls /proc/*/fd/* -l 2>/dev/null | grep -c anon_inode:inotify)" -lt ${INSTANCES} ] && ! grep -q inotify err; do sleep 0.1; n=$((n+1)); done; ` +
        `ls -l /proc/*/fd/* 2>/dev/null | grep -c anon_inode:inotify; cat err`,
    );
    const [count, ...complaints] = held.stdout.split('\n');
    assert.ok(Number(count) >= INSTANCES - 4, `A holds ${count} inotify instances (limit ${INSTANCES})`);
    assert.match(complaints.join('\n'), /inotify/, 'A itself ran out: its last tails fell back to polling');
    // B: its own uid, its own count.
    const mine = await sh(b, ': > g; timeout 1 tail -f g; echo "status $?"');
    assert.doesNotMatch(mine.stderr + mine.stdout, /inotify/, `B's tail had inotify: ${mine.stderr}`);
    assert.match(mine.stdout, /status 124/, 'tail -f ran until timeout stopped it');
    await Promise.all([a, b].map(async (c) => (await c.transport.terminateSession(), await c.client.close())));
  });
});

test('server.sandboxUids: a range holding nobody (or 65533), or running past the last uid, is refused; unset is 2^20 uids at 0x70000000', () => {
  const runtimes = { default: { command: ['node', 'server.js'] } };
  const server = (sandboxUids: unknown) => ConfigSchema.safeParse({ server: { sandboxUids }, runtimes });
  assert.deepEqual(ConfigSchema.parse({ runtimes }).server.sandboxUids, { first: 0x70000000, count: 2 ** 20 });
  assert.match(JSON.stringify(server({ first: 60000, count: 10000 }).error?.issues), /must not hold 65534/);
  assert.match(JSON.stringify(server({ first: 65520, count: 14 }).error?.issues), /nor 65533/);
  assert.match(JSON.stringify(server({ first: 2 ** 32 - 10, count: 16 }).error?.issues), /must end below 4294967295/);
  assert.match(JSON.stringify(server({ first: 0, count: 16 }).error?.issues), /too_small/);
  assert.equal(server({ first: 200_000, count: 16 }).success, true);
});

describe('namespace: server.sandboxUids', { skip, timeout: 240_000 }, () => {
  const FIRST = 0x71000000;
  let berth: BerthProcess;
  before(async () => {
    const hostile = await compiledFixture('hostile-server');
    berth = await serveConfig({
      server: { port: 0, sandboxUids: { first: FIRST, count: 16 } },
      runtimes: { default: { command: hostile, isolation: 'namespace', network: 'none', warmPool: 1 } },
    });
  });
  after(() => berth?.stop());

  test('sessions run as uids of the configured range', async () => {
    const clients = await Promise.all([connect(berth.url), connect(berth.url)]);
    const uids = await Promise.all(clients.map(async (c) => hostUids(await whoami(c))[0]!));
    for (const uid of uids) assert.ok(uid >= FIRST && uid < FIRST + 16, `uid ${uid}`);
    assert.notEqual(uids[0], uids[1]);
    await Promise.all(clients.map(async (c) => (await c.transport.terminateSession(), await c.client.close())));
  });
});

test('uid leases: a full range refuses, naming the setting; a lease released twice frees one uid, not two; overlaps with host users are found', () => {
  const saved = { ...SANDBOX_UIDS };
  try {
    useSandboxUids({ first: 5_000_000, count: 16 });
    const leases = Array.from({ length: 16 }, () => claimSandboxUid());
    assert.equal(new Set(leases.map((l) => l.uid)).size, 16, 'every uid of the range, each once');
    assert.throws(() => claimSandboxUid(), /every one of the 16 uids of server\.sandboxUids is taken/);
    leases[0]!.release();
    leases[0]!.release(); // an error path after the driver's own cleanup
    const again = claimSandboxUid();
    assert.equal(again.uid, leases[0]!.uid);
    assert.throws(() => claimSandboxUid(), /is taken/, 'the second release freed nothing: the uid is live again');
    for (const l of [again, ...leases.slice(1)]) l.release();
    useSandboxUids({ first: 0, count: 1 }); // below the schema's floor, to meet a user every host has
    assert.match(sandboxUidOverlaps().join('\n'), /user root \(uid 0, \/etc\/passwd\)/);
    useSandboxUids({ first: 0x70000000, count: 16 });
    assert.deepEqual(
      sandboxUidOverlaps().filter((o) => o.startsWith('user ')),
      [],
    );
  } finally {
    useSandboxUids(saved);
  }
});

// Two berths on one host lease uids in one place (/run/berth-uids): before, each drew at random among its own
// sandboxes only, so with 1000 sessions on each of two berths a shared uid was more likely than not. Here the test
// itself holds 14 of a 16-uid range (as a third, live berth would), so the two berths must find the two free ones.
describe('namespace: uids are leased host-wide, across berths', { skip, timeout: 240_000 }, () => {
  const FIRST = 0x72000000;
  const COUNT = 16;
  const lease = (uid: number) => join(UID_LEASE_DIR, String(uid));
  const config = (hostile: string) => ({
    server: { port: 0, sandboxUids: { first: FIRST, count: COUNT } },
    runtimes: { default: { command: hostile, isolation: 'namespace', network: 'none', warmPool: 0 } },
  });
  const free = [FIRST + 3, FIRST + 11];
  const held = Array.from({ length: COUNT }, (_, i) => FIRST + i).filter((u) => !free.includes(u));
  const berths: BerthProcess[] = [];
  let hostile: string;
  before(async () => {
    hostile = await compiledFixture('hostile-server');
    mkdirSync(UID_LEASE_DIR, { recursive: true, mode: 0o700 });
    for (const uid of held) symlinkSync(ownerTag(), lease(uid));
  });
  after(async () => {
    await Promise.all(berths.map((b) => b.stop())); // SIGTERM: each gives its leases back
    for (const uid of held) rmSync(lease(uid), { force: true });
  });

  test('two berths take the two uids no one holds; a third session waits for one to be given back; a killed berth’s is freed by the next berth’s sweep', async () => {
    const [a, b] = await Promise.all([serveConfig(config(hostile)), serveConfig(config(hostile))]);
    berths.push(a, b);
    const onA = await connect(a.url);
    const onB = await connect(b.url);
    const [ua] = hostUids(await whoami(onA));
    const [ub] = hostUids(await whoami(onB));
    assert.deepEqual([ua, ub].sort(), free, 'each berth leased one of the two free uids, a different one');
    for (const uid of free) assert.match(readlinkSync(lease(uid)), /^\d+-\d+$/, `uid ${uid}'s lease names its berth`);

    // The range is full host-wide: A's next session cannot start, and says why.
    const third = await fetch(a.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT_BOTH },
      body: initBody(),
    });
    assert.match(await third.text(), /every one of the 16 uids of server\.sandboxUids is taken by a live sandbox of a berth on this host/);

    // B's session ends: its uid is given back, and A's next session takes it.
    await onB.transport.terminateSession();
    await onB.client.close();
    for (let i = 0; i < 200 && existsSync(lease(ub!)); i++) await new Promise((r) => setTimeout(r, 50));
    const again = await connect(a.url);
    assert.deepEqual([...new Set(hostUids(await whoami(again)))], [ub]);

    // A dies without cleaning up, holding both uids. A new berth's start sweeps A's sandboxes, then frees their leases.
    await a.stop('SIGKILL');
    const c = await serveConfig(config(hostile));
    berths.push(c);
    const onC = await connect(c.url);
    assert.ok(free.includes(hostUids(await whoami(onC))[0]!), 'C leased a uid the dead berth held');
    await onC.transport.terminateSession();
  });
});

test('the lease sweep frees a dead berth’s uid only once no process runs as it', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('not root: uids are not leased');
  const [busy, idle] = [0x73000000, 0x73000001];
  mkdirSync(UID_LEASE_DIR, { recursive: true, mode: 0o700 });
  // A pid above any pid_max: an owner that is surely dead.
  for (const uid of [busy, idle]) symlinkSync('4194305-1', join(UID_LEASE_DIR, String(uid)));
  const proc = spawn('setpriv', [`--reuid=${busy}`, `--regid=${busy}`, '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  try {
    for (
      let i = 0;
      i < 200 && !/^Uid:\s+\d+\s+(\d+)/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]?.startsWith(String(busy));
      i++
    )
      await new Promise((r) => setTimeout(r, 20));
    sweepDeadLeases();
    assert.equal(existsSync(join(UID_LEASE_DIR, String(idle))), false, 'no process runs as it: freed');
    assert.equal(readlinkSync(join(UID_LEASE_DIR, String(busy))), '4194305-1', 'a process still runs as it: kept');
  } finally {
    proc.kill('SIGKILL');
    for (const uid of [busy, idle]) rmSync(join(UID_LEASE_DIR, String(uid)), { force: true });
  }
});
