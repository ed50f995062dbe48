// A directory the sandbox uid cannot read is refused at start, under every driver that drops to it, naming the
// directory, the uid and the fix — never a "listening" over servers that cannot start (a microVM pool once stayed
// silent for 240 s with the clone in /root, mode 0700).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { canaryHint, namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledProbe, ensureMicrovmAssets } from './fixtures/slow-boot.ts';
import { ROOT, runBerth } from './helpers/berth.ts';
import { which } from '../src/sandbox/host.ts';

/** How long a refusal may take: the drivers' canaries run first (a gVisor sandbox, a 3 s QEMU boot for microvm). */
const QUICK_MS = 30_000;

const root = process.getuid?.() === 0;
// mkdtemp makes it 0700: only its owner (root) may enter.
const locked = mkdtempSync(join(tmpdir(), 'berth-locked-'));
const [node, probe] = await compiledProbe();
copyFileSync(probe!, join(locked, 'server.mjs'));
const script = join(locked, 'server.mjs');
after(() => rmSync(locked, { recursive: true, force: true }));

/** Runs `berth ARGS` to its end: exit code, stderr, whether it said it listens, how long it took. */
function berthExit(args: string[]): Promise<{ code: number | null; stderr: string; listening: boolean; ms: number }> {
  const t0 = Date.now();
  const p = spawn(process.execPath, ['bin/berth.js', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (stderr += d));
  // Bounded: a berth that listens after all is stopped (and the test fails on it), never waited for.
  const limit = setTimeout(() => p.kill('SIGKILL'), 4 * QUICK_MS);
  return new Promise((resolve) => {
    p.once('exit', (code) => {
      clearTimeout(limit);
      resolve({ code, stderr, listening: /listening on/.test(out), ms: Date.now() - t0 });
    });
    p.stdout!.on('data', () => /listening on/.test(out) && p.kill('SIGTERM'));
  });
}

function assertRefused(r: Awaited<ReturnType<typeof berthExit>>): void {
  assert.equal(r.listening, false, 'berth said it listens');
  assert.notEqual(r.code, 0, r.stderr);
  assert.ok(r.ms < QUICK_MS, `the refusal took ${r.ms} ms`);
  // The directory, the uid, and both fixes.
  assert.ok(r.stderr.includes(locked), r.stderr);
  assert.match(r.stderr, /uid 65534|a uid of its own \(server\.sandboxUids\)/);
  assert.match(r.stderr, /--mount/);
  assert.match(r.stderr, /chmod/);
}

const unavailable = async (d: typeof namespaceDriver) => {
  if (!root) return "as non-root, namespace and microVM servers run as berth's own user and gVisor needs root here";
  const p = await d.probe(ROOT);
  if (!p.ok) console.log(`# SKIP ${d.name}: ${p.reason}`);
  return p.ok ? false : `${d.name} driver unavailable here: ${p.reason}`;
};

ensureMicrovmAssets();
const DRIVERS = { namespace: namespaceDriver, gvisor: gvisorDriver, microvm: microvmDriver };

for (const driver of ['namespace', 'gvisor', 'microvm'] as const) {
  const skip = await unavailable(DRIVERS[driver]);
  describe(`a directory uid 65534 cannot read, under ${driver}`, { skip }, () => {
    const flags = ['run', '--port', '0', '--isolation', driver, '--network', 'none'];
    test("as the server's script directory", async () => {
      assertRefused(await berthExit([...flags, '--', node!, script]));
    });
    test('as a --mount', async () => {
      assertRefused(await berthExit([...flags, '--mount', locked, '--', node!, `${ROOT}/test/.build/probe-server.mjs`]));
    });
    test("as the runtime's working directory", async () => {
      const config = join(tmpdir(), `berth-locked-${process.pid}-${driver}.yaml`);
      writeFileSync(
        config,
        JSON.stringify({
          server: { port: 0 },
          runtimes: { default: { cwd: locked, command: [node, 'server.mjs'], isolation: driver, network: 'none', warmPool: 1 } },
        }),
      );
      try {
        assertRefused(await berthExit(['serve', '--config', config]));
      } finally {
        rmSync(config, { force: true });
      }
    });
  });
}

describe('a directory only uid 65534 and its group may read, under namespace', async () => {
  // Sessions run as host uids and gids of their own (server.sandboxUids): nobody's bits are not theirs. Checked at
  // start, and by the canary; before, both reasoned as 65534 and passed, and every session then died with EACCES.
  const skip = root ? await unavailable(namespaceDriver) : 'needs root (per-session uids)';
  test('is refused at start, naming the uids of their own', { skip }, async () => {
    const nobodys = mkdtempSync(join(tmpdir(), 'berth-nobodys-'));
    try {
      copyFileSync(probe!, join(nobodys, 'server.mjs'));
      chownSync(nobodys, 65534, 65534);
      chownSync(join(nobodys, 'server.mjs'), 65534, 65534);
      chmodSync(nobodys, 0o750);
      const r = await berthExit([
        'run',
        '--port',
        '0',
        '--isolation',
        'namespace',
        '--network',
        'none',
        '--',
        node!,
        join(nobodys, 'server.mjs'),
      ]);
      assert.equal(r.listening, false, 'berth said it listens');
      assert.match(r.stderr, /a uid of its own \(server\.sandboxUids\)/);
      assert.ok(r.stderr.includes(nobodys), r.stderr);
    } finally {
      rmSync(nobodys, { recursive: true, force: true });
    }
  });
});

describe('the drivers that do not drop privileges', async () => {
  const skip = await unavailable(namespaceDriver);
  test('isolation auto refuses it too, rather than falling back to the process driver', { skip }, async () => {
    assertRefused(await berthExit(['run', '--port', '0', '--network', 'none', '--', node!, script]));
  });
  test(
    "the process driver (berth's own user) runs the server from it",
    { skip: root ? false : 'needs root, which owns the directory' },
    async () => {
      assert.equal(statSync(locked).mode & 0o777, 0o700);
      const berth = await runBerth(['--isolation', 'process', '--network', 'host'], [node!, script]);
      assert.equal(await berth.stop(), 0);
    },
  );
});

test("a failed namespace canary says what bwrap's complaint most likely means", { skip: !which('bwrap') && 'no bubblewrap here' }, () => {
  const bwrap = which('bwrap')!;
  // An older bubblewrap (Ubuntu 22.04's 0.6) does not know --disable-userns: the hint names the version needed and the one found.
  assert.match(
    canaryHint(bwrap, 'bwrap: Unknown option --disable-userns', '/srv/x'),
    /needs bubblewrap 0\.8 or later .*this host has bubblewrap \d/,
  );
  // Anything else: the directory the sandbox uid must read.
  assert.match(
    canaryHint(bwrap, "bwrap: Can't find source path /srv/x: No such file or directory", '/srv/x'),
    root ? /is \/srv\/x readable by every user \(sandboxes run as uids of their own\)\?/ : /is \/srv\/x readable by berth's user\?/,
  );
});
