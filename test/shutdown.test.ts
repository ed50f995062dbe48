// SIGTERM ends berth within its drainTimeout plus a few seconds whatever it is doing — a microVM still booting,
// SSE streams open — and leaves no sandbox process (bwrap, QEMU, the server) behind. (Servers failing to start:
// test/traps.test.ts.)
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { procStat } from '../src/sandbox/host.ts';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledProbe, ensureMicrovmAssets } from './fixtures/slow-boot.ts';
import { ACCEPT_BOTH, connect, rawInit, startBerth, type BerthProcess } from './helpers/berth.ts';

const DRAIN_MS = 2000;
/** What SIGTERM may take beyond drainTimeout: ending sessions, stopping sandboxes (stopGrace is 1 s below). */
const SLACK_MS = 5000;

/** A directory of its own holding the bundled probe server: its path in a process's command line marks it as ours. */
async function serverDir(): Promise<{ dir: string; command: string[] }> {
  const [node, probe] = await compiledProbe();
  const dir = mkdtempSync(join(tmpdir(), 'berth-shutdown-'));
  chmodSync(dir, 0o755); // the sandbox uid reads it
  copyFileSync(probe!, join(dir, 'server.mjs'));
  return { dir, command: [node!, join(dir, 'server.mjs')] };
}

/** `berth serve` of one runtime rooted at dir, with a short drainTimeout. */
async function serve(dir: string, runtime: Record<string, unknown>): Promise<BerthProcess> {
  const file = join(dir, 'berth.json.yaml');
  writeFileSync(
    file,
    JSON.stringify({
      server: { port: 0, drainTimeout: `${DRAIN_MS}ms` },
      runtimes: { default: { cwd: dir, ...runtime, limits: { stopGrace: '1s', ...(runtime.limits as object) } } },
    }),
  );
  return startBerth(['serve', '--config', file]);
}

const childrenOf = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
};

/**
 * Every sandbox process that was ever below berth while it ran, with start times (a pid reused later by someone else
 * is not ours). A sandbox is a process group of its own, so it outlives berth if berth forgets it; berth's helpers
 * (esbuild's service, mount, ip) stay in berth's group and end with it.
 */
function watchTree(root: number): { seen: Map<number, { start: number; cmd: string }>; stop: () => void } {
  const seen = new Map<number, { start: number; cmd: string }>();
  const own = procStat(root)!.pgid;
  const scan = () => {
    const queue = childrenOf(root);
    while (queue.length) {
      const pid = queue.shift()!;
      queue.push(...childrenOf(pid));
      const st = procStat(pid);
      if (st?.pgid === own) continue;
      // The latest command line: a child seen between fork and exec still shows its parent's.
      const cmd = cmdline(pid);
      if (st && (seen.get(pid)?.start ?? st.start) === st.start) seen.set(pid, { start: st.start, cmd: cmd || seen.get(pid)?.cmd || '' });
    }
  };
  scan();
  const t = setInterval(scan, 20);
  return { seen, stop: () => clearInterval(t) };
}

/** Processes still alive that were berth's, or whose command line names the runtime directory. */
function leftovers(seen: Map<number, { start: number; cmd: string }>, dir: string): string[] {
  const alive = [...seen].filter(([pid, p]) => procStat(pid)?.start === p.start).map(([pid, p]) => `${pid} ${p.cmd}`);
  const named = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid && procStat(Number(p)) && cmdline(Number(p)).includes(dir))
    .map((p) => `${p} ${cmdline(Number(p))}`);
  return [...new Set([...alive, ...named])];
}

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM: berth exits 0 within drainTimeout + SLACK_MS, and nothing of its sandboxes lives on. */
async function assertShutdown(berth: BerthProcess, tree: ReturnType<typeof watchTree>, dir: string): Promise<void> {
  const t0 = Date.now();
  const code = await berth.stop('SIGTERM');
  const took = Date.now() - t0;
  tree.stop();
  assert.equal(code, 0, berth.logs().slice(-2000));
  assert.ok(took < DRAIN_MS + SLACK_MS, `SIGTERM took ${took} ms (drainTimeout ${DRAIN_MS} ms)`);
  assert.ok(tree.seen.size > 0, 'berth had sandbox processes to stop');
  assert.deepEqual(leftovers(tree.seen, dir), []);
}

const unavailable = async (d: typeof namespaceDriver, dir: string) => {
  const p = await d.probe(dir);
  if (!p.ok) console.log(`# SKIP ${d.name}: ${p.reason}`);
  return p.ok ? false : `${d.name} driver unavailable here: ${p.reason}`;
};

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('SIGTERM with SSE streams open', async () => {
  const probeDir = mkdtempSync(join(tmpdir(), 'berth-shutdown-probe-'));
  chmodSync(probeDir, 0o755);
  dirs.push(probeDir);
  const namespace = await unavailable(namespaceDriver, probeDir);
  for (const [driver, skip] of [
    ['process', false],
    ['namespace', namespace],
  ] as const) {
    test(`a GET stream and a call streaming progress do not hold the exit (${driver})`, { skip }, async () => {
      const { dir, command } = await serverDir();
      dirs.push(dir);
      const berth = await serve(dir, { command, isolation: driver, network: driver === 'process' ? 'host' : 'none', warmPool: 1 });
      const tree = watchTree(berth.proc.pid!);
      // A client holding the session's GET stream open (raw: the SDK opens it only when it can).
      const sid = await rawInit(berth.url);
      const get = await fetch(berth.url, {
        headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
      });
      assert.equal(get.status, 200);
      const getEnded = get.body!.pipeTo(new WritableStream()).then(
        () => 'ended',
        () => 'ended',
      );
      // Another in a call that streams progress for far longer than the drain.
      const { client } = await connect(berth.url);
      let progress = 0;
      const call = client
        .callTool({ name: 'progress', arguments: { steps: 100_000, delayMs: 100 } }, undefined, {
          onprogress: () => void progress++,
          timeout: 600_000,
        })
        .then(
          () => 'answered',
          () => 'ended',
        );
      await until('progress notifications', () => progress >= 2);
      await assertShutdown(berth, tree, dir);
      assert.equal(await getEnded, 'ended');
      assert.equal(await call, 'ended');
      await client.close();
    });
  }
});

describe('SIGTERM while a microVM boots', async () => {
  ensureMicrovmAssets();
  const probeDir = mkdtempSync(join(tmpdir(), 'berth-shutdown-probe-'));
  chmodSync(probeDir, 0o755);
  dirs.push(probeDir);
  const skip = await unavailable(microvmDriver, probeDir);
  test('ends within drainTimeout + 5 s and leaves no QEMU behind', { skip }, async () => {
    const { dir, command } = await serverDir();
    dirs.push(dir);
    // Under emulation a node server takes tens of seconds to answer; SIGTERM comes long before.
    const berth = await serve(dir, { command, isolation: 'microvm', network: 'none', warmPool: 1, limits: { startupTimeout: '300s' } });
    const tree = watchTree(berth.proc.pid!);
    await until('a QEMU process below berth', () => [...tree.seen.values()].some((p) => p.cmd.includes('qemu-system')));
    // A client waiting for a server meanwhile: its initialize is under way when the signal comes.
    const waiting = fetch(berth.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'waiting', version: '1' } },
      }),
    }).then(
      async (r) => `${r.status} ${await r.text()}`,
      () => 'connection closed',
    );
    const health = (await (await fetch(new URL('/healthz', berth.url))).json()) as { runtimes: Record<string, { warm: number }> };
    assert.equal(health.runtimes.default!.warm, 0, 'the VM is still booting when SIGTERM comes');
    await assertShutdown(berth, tree, dir);
    const answer = await waiting;
    // Refused as berth drains, or its start given up: either way told why (or cut off as berth closes).
    assert.match(answer, /^(connection closed|5\d\d .*shutting down)/);
  });
});
