// A sandbox asked to yield while starting runs at a lower CPU priority (nice 10, and its autogroup's nice where the
// kernel groups CPU time by session) until its server answers, so a storm of new sessions yields the CPU to live ones
// (issue 17). Real sandboxes (the process and namespace drivers), then a real berth: by default it lowers no start;
// with --lower-starts (limits.lowerStarts) a starting server is at nice 10, and at 0 once it has answered.
// As root only: only root may give the priority back.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SandboxDriver } from '../src/sandbox/driver.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { processDriver } from '../src/sandbox/process.ts';
import { warm } from './fixtures/slow-boot.ts';
import { connect, ROOT, startBerth, type BerthProcess } from './helpers/berth.ts';
import { descendants } from './helpers/procs.ts';

const root = process.getuid?.() === 0;

/** A process's nice value (field 19 of /proc/PID/stat), or undefined once it is gone. */
function niceOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  } catch {
    return undefined;
  }
}

/** The nice of pid's autogroup ("/autogroup-12 nice 10"), or undefined on a kernel without autogroups. */
function autogroupNiceOf(pid: number): number | undefined {
  try {
    return Number(/nice (-?\d+)/.exec(readFileSync(`/proc/${pid}/autogroup`, 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const drivers: Array<[string, SandboxDriver]> = [
  ['process', processDriver],
  ['namespace', namespaceDriver],
];

describe('a sandbox started ahead of demand yields the CPU until its server answers', { skip: root ? false : 'needs root' }, () => {
  for (const [name, driver] of drivers) {
    test(`${name}: started at nice 10 (process tree and autogroup), at 0 after started()`, async (t) => {
      const probed = await driver.probe(ROOT);
      if (!probed.ok) return t.skip(probed.reason);
      const workDir = mkdtempSync(join(tmpdir(), 'berth-prio-'));
      const sandbox = await driver.start({
        sessionId: `prio-${name}-${process.pid}`,
        // A shell that forks: the child must inherit the starting priority too.
        argv: ['sh', '-c', 'sleep 60 & wait'],
        cwd: ROOT,
        workDir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        limits: {},
        network: 'host',
        mounts: [],
        yieldWhileStarting: true,
      });
      try {
        const pid = sandbox.pid!;
        // Every process of the sandbox, once the shell has forked its sleep.
        const tree = await until('the sleep inside the sandbox', () => {
          const all = [pid, ...descendants(pid)];
          return all.some((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('sleep')) ? all : undefined;
        });
        assert.deepEqual(
          tree.map(niceOf),
          tree.map(() => 10),
          'every process starts at nice 10',
        );
        if (existsSync(`/proc/${pid}/autogroup`)) assert.equal(autogroupNiceOf(pid), 10);

        sandbox.started();
        await until('every process back at nice 0', () => (tree.every((p) => niceOf(p) === 0) ? true : undefined));
        if (existsSync(`/proc/${pid}/autogroup`)) assert.equal(autogroupNiceOf(pid), 0);
      } finally {
        await sandbox.stop(2000);
        rmSync(workDir, { recursive: true, force: true });
      }
    });
  }

  test('a start a client waits for (no yieldWhileStarting) runs at nice 0 from the first', async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'berth-prio-'));
    const sandbox = await processDriver.start({
      sessionId: `prio-urgent-${process.pid}`,
      argv: ['sleep', '60'],
      cwd: ROOT,
      workDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      limits: {},
      network: 'host',
      mounts: [],
    });
    try {
      assert.equal(niceOf(sandbox.pid!), 0);
      if (existsSync(`/proc/${sandbox.pid}/autogroup`)) assert.equal(autogroupNiceOf(sandbox.pid!), 0);
    } finally {
      await sandbox.stop(2000);
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  describe('berth', () => {
    let berth: BerthProcess | undefined;
    after(async () => {
      await berth?.stop();
    });

    test('berth lowers none of its own starts: its warm servers and their processes run at nice 0', async () => {
      // The bundled demo server, berth's default sandbox, a pool of 0..2 (every warm server is growth above min).
      // Lowering the pool's growth starved it on a saturated host (CI), so berth does not use yieldWhileStarting.
      berth = await startBerth(['run', '--port', '0', '--warm-pool', '0..2']);
      const session = await connect(berth.url);
      await warm(berth.url, 1, 60_000);
      await session.client.close();
      const servers = descendants(berth.proc.pid!).filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('demo/server.js');
        } catch {
          return false;
        }
      });
      assert.ok(servers.length >= 1, `found ${servers.length} demo servers among berth's processes`);
      // started() runs right after the server answers; allow it that moment.
      await until('the warm servers at nice 0', () => (servers.every((p) => niceOf(p) === 0) ? true : undefined), 5000).catch(() =>
        assert.fail(`nice of the warm servers: ${servers.map(niceOf).join(', ')}`),
      );
      for (const p of servers) if (existsSync(`/proc/${p}/autogroup`)) assert.equal(autogroupNiceOf(p), 0);
    });

    test('with --lower-starts, a starting server runs at nice 10 and at 0 once it has answered', async () => {
      // The server waits at a gate (armed after berth is up) before it execs the demo server: the test sees it starting.
      const dir = mkdtempSync(join(tmpdir(), 'berth-prio-gate-'));
      after(() => rmSync(dir, { recursive: true, force: true }));
      const [armed, gate] = [join(dir, 'armed'), join(dir, 'gate')];
      const wait = `if [ -e ${armed} ]; then i=0; while [ ! -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; fi`;
      const lowered = await startBerth([
        'run',
        '--port',
        '0',
        '--warm-pool',
        '0',
        '--isolation',
        'process',
        '--lower-starts',
        '--',
        'sh',
        '-c',
        `${wait}; exec node ${ROOT}/dist/demo/server.js`,
      ]);
      try {
        writeFileSync(armed, '');
        const connecting = connect(lowered.url);
        // Should an assertion below fail, stopping berth rejects this too: the failure reported must be the assertion.
        connecting.catch(() => undefined);
        const waiting = await until('the server waiting at its gate', () =>
          descendants(lowered.proc.pid!).find((p) => {
            try {
              return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('sh\0-c');
            } catch {
              return false;
            }
          }),
        );
        assert.equal(niceOf(waiting), 10, 'a start is lowered'); // from its exec on: berth starts it through nice
        // Its autogroup (made by the setsid at spawn) is lowered just after the spawn returns: a loaded machine may
        // show the test the moment between.
        if (existsSync(`/proc/${waiting}/autogroup`))
          await until('its autogroup at nice 10', () => (autogroupNiceOf(waiting) === 10 ? true : undefined), 10_000).catch(() =>
            assert.fail(`autogroup nice of the starting server: ${autogroupNiceOf(waiting)}`),
          );
        writeFileSync(gate, '');
        const session = await connecting;
        // The shell exec'd the demo server in place: the same pid, back at 0 once it answered initialize.
        await until('the server back at nice 0', () => (niceOf(waiting) === 0 ? true : undefined), 10_000).catch(() =>
          assert.fail(`nice of the server: ${niceOf(waiting)}`),
        );
        if (existsSync(`/proc/${waiting}/autogroup`)) assert.equal(autogroupNiceOf(waiting), 0);
        await session.client.close();
      } finally {
        await lowered.stop();
      }
    });
  });
});
