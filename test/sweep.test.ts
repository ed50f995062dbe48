// SIGKILL to berth leaves no orphaned sandboxes once a berth starts again: real berths, real sandboxes. A
// victim berth is killed outright; its processes, cgroups, mounts and directories are checked to be still there,
// then a new berth must remove them all while a concurrently live berth's sandboxes stay untouched.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import type { SandboxRecord } from '../src/sandbox/registry.ts';
import { ACCEPT_BOTH, rawInit, ROOT, runBerth, type BerthProcess } from './helpers/berth.ts';

// One state directory for the file, so only these tests' berths meet here (the sweeper is in this process).
const STATE = mkdtempSync(join(tmpdir(), 'berth-sweep-test-'));
process.env.BERTH_STATE_DIR = STATE;
const { createRuntime } = await import('../src/index.ts');

/** A minimal stdio MCP server that outlives berth: it ignores EOF on stdin and keeps a helper process. */
const STUBBORN = `
require('node:child_process').spawn('sleep', ['1000'], { stdio: 'ignore' });
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0; buf = buf.slice(i + 1)) {
    const m = JSON.parse(buf.slice(0, i));
    if (m.id === undefined || !m.method) continue;
    const result = m.method === 'initialize' ? { protocolVersion: m.params.protocolVersion, capabilities: {}, serverInfo: { name: 'stub', version: '1' } } : {};
    process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }) + '\\n');
  }
});
process.stdin.on('end', () => {});
process.stdout.on('error', () => {});
setInterval(() => {}, 1 << 30);
`;
const COMMAND = [process.execPath, '-e', STUBBORN];

type Rec = SandboxRecord;

function stat(pid: number): { start: number; ppid: number; pgid: number; state: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return f[0] === 'Z' ? undefined : { state: f[0]!, ppid: Number(f[1]), pgid: Number(f[2]), start: Number(f[19]) };
  } catch {
    return undefined;
  }
}

/** What of a sandbox is still on the host: live processes (its tree and group), cgroups, mounts, directories. */
function onHost(recs: Rec[]) {
  const procs = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => ({ pid: Number(p), ...stat(Number(p)) }))
    .filter((p) => p.start !== undefined);
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]);
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup').map((d) => join('/sys/fs/cgroup', d))];
  const out = { procs: [] as number[], cgroups: [] as string[], mounts: [] as string[], dirs: [] as string[], netns: [] as string[] };
  for (const r of recs) {
    // The top process if it is still the same one, its descendants, and its group while the id is still ours.
    const tree = new Set<number>();
    if (r.pid && stat(r.pid)?.start === r.start) tree.add(r.pid);
    const leader = r.pgid ? stat(r.pgid) : undefined;
    const groupOurs = !leader || leader.start === r.start;
    let size = -1;
    while (size !== tree.size) {
      size = tree.size;
      for (const p of procs) if (tree.has(p.ppid!) || (groupOurs && p.pgid === r.pgid)) tree.add(p.pid);
    }
    out.procs.push(...tree);
    if (r.cgroup) out.cgroups.push(...roots.map((x) => join(x, r.cgroup!)).filter((d) => existsSync(join(d, 'cgroup.procs'))));
    out.mounts.push(...r.mounts.filter((m) => mounted.includes(m)));
    out.dirs.push(...r.dirs.filter((d) => existsSync(d)));
    // Each session's network namespace (src/sandbox/network.ts), while its name is still there.
    out.netns.push(...(r.netns ?? []).filter((n) => existsSync(`/var/run/netns/${n}`)));
  }
  // A session's network is recorded twice: in its sandbox's record and in one of its own (made first).
  out.netns = [...new Set(out.netns)];
  return out;
}

/** The records of one berth process (its state directory is named by pid and start time). */
function records(b: BerthProcess): Rec[] {
  return allRecords(b).filter((r) => r.driver !== 'network');
}

/** Its sandboxes' records and its sessions' networks' own (src/sandbox/network.ts). */
function allRecords(b: BerthProcess): Rec[] {
  const dir = readdirSync(STATE).find((d) => d.startsWith(`i-${b.proc.pid}-`));
  if (!dir) return [];
  return readdirSync(join(STATE, dir))
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(STATE, dir, f), 'utf8')));
}

async function warm(url: string, n: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const h = await (await fetch(new URL('/healthz', url))).json();
    if (h.runtimes.default.warm >= n) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`berth did not warm ${n} servers in ${timeoutMs} ms`);
}

/** A berth holding `pool` warm sandboxes and one session: pool + 1 sandboxes in all. */
async function berthWithSandboxes(flags: string[], pool: number): Promise<{ berth: BerthProcess; session: string }> {
  const berth = await runBerth([...flags, '--warm-pool', String(pool)], COMMAND);
  await warm(berth.url, pool);
  const session = await rawInit(berth.url);
  await warm(berth.url, pool); // the pool refills after the session took a server
  return { berth, session };
}

const ping = (b: BerthProcess, session: string) =>
  fetch(`${b.url}`, {
    method: 'POST',
    headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json', 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
  });

const skipUnless = async (d: typeof namespaceDriver) => {
  const p = await d.probe(ROOT);
  if (!p.ok) console.log(`# SKIP ${d.name} sweep test: ${p.reason}`);
  return p.ok ? false : `${d.name} driver unavailable here: ${p.reason}`;
};

after(() => rmSync(STATE, { recursive: true, force: true }));

/** Starts and stops a berth in this process (it sweeps at start); how many dead sandboxes it swept. */
async function sweepOnce(): Promise<number> {
  const b = createRuntime({ server: { port: 0 }, runtimes: { default: { command: COMMAND, isolation: 'process', warmPool: 0 } } });
  await b.start();
  await b.stop();
  return b.sweptSandboxes;
}

// What survives berth's SIGKILL differs: bwrap (--die-with-parent) takes its namespace down, leaving the mount,
// cgroup and directories; a plain process and runsc outlive berth.
const CASES = [
  { driver: 'namespace', skip: await skipUnless(namespaceDriver), procsSurvive: false },
  { driver: 'process', skip: false as const, procsSurvive: true },
  { driver: 'gvisor', skip: await skipUnless(gvisorDriver), procsSurvive: true },
];
const cgroupsHere = process.getuid?.() === 0;
if (!cgroupsHere) console.log('# cgroup checks skipped: berth is not root here, so sessions get no cgroups');

for (const c of CASES) {
  describe(`${c.driver}: sandboxes of a SIGKILLed berth`, { skip: c.skip }, () => {
    const flags = ['--isolation', c.driver, ...(cgroupsHere ? ['--memory', '256m'] : [])];
    let live: { berth: BerthProcess; session: string };
    before(async () => {
      live = await berthWithSandboxes(flags, 1);
    });
    after(async () => {
      await live.berth.stop();
    });

    test('are left on the host by the kill, and removed by the next berth to start, sparing a live berth', async () => {
      const victim = await berthWithSandboxes(flags, 2);
      const sandboxes = records(victim.berth);
      assert.equal(sandboxes.length, 3, 'two warm sandboxes and one session, each recorded');
      assert.ok(sandboxes.every((r) => r.driver === c.driver && r.pid && r.start && r.dirs.length >= 1));
      const recs = allRecords(victim.berth);
      // As root each session has a network namespace, recorded on its own before it is made, with its scratch
      // directory (resolv.conf); a berth killed while making one used to leave both behind.
      const nets = recs.filter((r) => r.driver === 'network');
      if (process.getuid?.() === 0 && c.driver !== 'gvisor') {
        assert.equal(nets.length, 3, 'a network record per sandbox (root)');
        assert.ok(
          nets.every((r) => r.netns?.length === 1 && r.dirs.length === 1 && existsSync(r.dirs[0]!)),
          JSON.stringify(nets),
        );
      }
      const liveRecs = records(live.berth);
      assert.equal(liveRecs.length, 2);
      const liveBefore = onHost(liveRecs);
      const before = onHost(recs);
      assert.ok(before.procs.length >= 3 && before.dirs.length >= 3, JSON.stringify(before));
      // An overlay, a devpts of limits.ptys and a tmpfs of limits.disk (the session's writable space) per sandbox (root).
      if (c.driver === 'namespace') assert.equal(before.mounts.length, 9, 'an overlay, a devpts and a capped tmpfs per sandbox (root)');
      if (process.getuid?.() === 0) assert.equal(before.netns.length, 3, 'a network namespace per sandbox (root)');
      if (cgroupsHere) assert.ok(before.cgroups.length >= 3, 'a memory cgroup per sandbox');

      await victim.berth.stop('SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      const orphaned = onHost(recs);
      assert.deepEqual({ ...orphaned, procs: [] }, { ...before, procs: [] }, 'cgroups, mounts and directories outlive the kill');
      if (c.procsSurvive)
        assert.ok(orphaned.procs.length >= 3, `the servers and their helpers outlive berth: ${JSON.stringify(orphaned.procs)}`);

      // The next berth sweeps at start (in this process, to read its count and log).
      const logs: string[] = [];
      const logger = pino({ level: 'info' }, { write: (l: string) => void logs.push(l) });
      const sweeper = createRuntime(
        { server: { port: 0 }, runtimes: { default: { command: COMMAND, isolation: 'process', warmPool: 0 } } },
        { logger },
      );
      await sweeper.start();
      try {
        assert.equal(sweeper.sweptSandboxes, 3);
        const swept = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'swept a sandbox left by a dead berth');
        assert.deepEqual(swept.flatMap((l) => l.dirs).sort(), before.dirs.sort(), 'each sandbox swept is logged with what was removed');
        assert.deepEqual(onHost(recs), { procs: [], cgroups: [], mounts: [], dirs: [], netns: [] }, 'nothing of the dead berth is left');
        assert.ok(!readdirSync(STATE).some((d) => d.includes(`-${victim.berth.proc.pid}-`)), 'its records are gone');
        // The live berth lost nothing: same records, same processes, and its session still answers.
        assert.deepEqual(records(live.berth), liveRecs);
        assert.deepEqual(onHost(liveRecs), liveBefore);
        const r = await ping(live.berth, live.session);
        assert.equal(r.status, 200, await r.text());
      } finally {
        await sweeper.stop();
      }
    });

    test('a second sweep finds nothing, and a berth stopped gracefully leaves no records', async () => {
      assert.equal(await sweepOnce(), 0);
      const liveRecs = records(live.berth);
      assert.equal(liveRecs.length, 2);
      await live.berth.stop();
      assert.ok(!readdirSync(STATE).some((d) => d.startsWith(`i-${live.berth.proc.pid}-`)), 'a clean exit removes its state directory');
      assert.deepEqual(onHost(liveRecs), { procs: [], cgroups: [], mounts: [], dirs: [], netns: [] });
    });
  });
}

test('two berths starting at once sweep each dead sandbox exactly once', async () => {
  const victim = await berthWithSandboxes(['--isolation', 'process'], 2);
  assert.equal(records(victim.berth).length, 3);
  const recs = allRecords(victim.berth);
  await victim.berth.stop('SIGKILL');
  const config = { server: { port: 0 }, runtimes: { default: { command: COMMAND, isolation: 'process' as const, warmPool: 0 } } };
  const quiet = pino({ level: 'silent' });
  const [a, b] = [createRuntime(config, { logger: quiet }), createRuntime(config, { logger: quiet })];
  await Promise.all([a.start(), b.start()]);
  await Promise.all([a.stop(), b.stop()]);
  assert.equal(a.sweptSandboxes + b.sweptSandboxes, 3);
  assert.deepEqual(onHost(recs), { procs: [], cgroups: [], mounts: [], dirs: [], netns: [] });
});

test('server.stateDir in the config chooses where the records are kept', async () => {
  const { writeFileSync } = await import('node:fs');
  const { startBerth, PROBE } = await import('./helpers/berth.ts');
  const dir = mkdtempSync(join(tmpdir(), 'berth-statedir-'));
  const state = join(dir, 'state');
  const file = join(dir, 'berth.json');
  writeFileSync(
    file,
    JSON.stringify({ server: { port: 0, stateDir: state }, runtimes: { default: { command: PROBE, isolation: 'process', warmPool: 1 } } }),
  );
  const berth = await startBerth(['serve', '--config', file], { BERTH_STATE_DIR: join(dir, 'not-this-one') });
  try {
    await rawInit(berth.url);
    // Beside it: the host shell's scratch directory (host-*, src/sandbox/host-shell.ts).
    const instances = readdirSync(state).filter((n) => n.startsWith('i-'));
    assert.equal(instances.length, 1, 'one instance directory');
    assert.ok(readdirSync(join(state, instances[0]!)).length >= 1, 'records of its sandboxes');
    assert.equal(existsSync(join(dir, 'not-this-one')), false);
  } finally {
    await berth.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a host shell's scratch directory left by a berth killed with its shell is removed; a live berth's is kept", async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const dead = spawnSync('true').pid!; // exited: its pid names no live berth (or a later process with another start time)
  const left = join(STATE, `host-${dead}-12345-Ab1Cd2`);
  const live = join(STATE, `host-${process.pid}-${stat(process.pid)!.start}-Ef3Gh4`);
  for (const d of [left, live]) {
    mkdirSync(d);
    writeFileSync(join(d, '7'), "a command's stderr");
  }
  await sweepOnce();
  assert.equal(existsSync(left), false, "the dead berth's host-shell directory is swept");
  assert.equal(existsSync(join(live, '7')), true, "a live berth's is kept");
  rmSync(live, { recursive: true, force: true });
});

test(
  "the sweep removes a recorded directory only if it is still berth's: one another user took the name of is left",
  {
    skip: process.getuid?.() !== 0 && 'needs root to make a directory of another user',
  },
  async () => {
    const { spawnSync } = await import('node:child_process');
    const { chownSync, mkdirSync, writeFileSync } = await import('node:fs');
    const dead = spawnSync('true').pid!;
    const mine = mkdtempSync(join(tmpdir(), 'berth-net-'));
    const taken = mkdtempSync(join(tmpdir(), 'berth-net-'));
    writeFileSync(join(taken, 'theirs'), 'another user made this directory after berth removed its own');
    chownSync(taken, 4242, 4242);
    const instance = join(STATE, `i-${dead}-12345`);
    mkdirSync(instance);
    writeFileSync(join(instance, 'net-x.json'), JSON.stringify({ driver: 'network', mounts: [], dirs: [mine, taken] }));
    try {
      await sweepOnce();
      assert.equal(existsSync(mine), false, "berth's own directory is removed");
      assert.equal(existsSync(join(taken, 'theirs')), true, "another user's is left as it is");
      assert.equal(existsSync(instance), false, 'the record is swept');
    } finally {
      rmSync(mine, { recursive: true, force: true });
      rmSync(taken, { recursive: true, force: true });
    }
  },
);
