// Descriptors berth inherited open across exec (a supervisor's pipe, a file a shell redirected) never reach a
// sandboxed server, berth's helpers or any other process berth starts: berth closes them first thing (inherited-fds.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { connect, PROBE, ROOT, startBerth, textOf } from './helpers/berth.ts';
import { descendants, fdTargets } from './helpers/procs.ts';

const skip = !(await namespaceDriver.probe(ROOT)).ok && 'the namespace driver cannot run here';

test(
  'a descriptor berth inherited (fd 100, no close-on-exec) is not open in a namespace sandbox, nor in berth or any process it started',
  { skip },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-inherited-'));
    const secret = join(dir, 'inherited-secret.txt');
    writeFileSync(secret, "the supervisor's file\n");
    // bash leaves fd 100 open across exec, as a supervisor or a shell's redirection might. (Node itself marks the
    // low descriptors it inherits close-on-exec at start, but not those above them.)
    const berth = await startBerth(['run', '--port', '0', '--isolation', 'namespace', '--warm-pool', '0', '--', ...PROBE], {}, [
      'bash',
      '-c',
      'exec 100<"$0" && exec "$@"',
      secret,
    ]);
    t.after(async () => {
      await berth.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const c = await connect(berth.url);
    try {
      const fds = JSON.parse(textOf(await c.client.callTool({ name: 'fds', arguments: {} }))) as Record<string, string>;
      assert.ok(Object.keys(fds).length >= 3, `the probe lists its descriptors: ${JSON.stringify(fds)}`);
      assert.ok(
        !Object.values(fds).some((target) => target.includes('inherited-secret')),
        `the server holds the inherited file: ${JSON.stringify(fds)}`,
      );
      // Nor does berth, or any process it started (its host shell, the sandbox), so no later child gets it.
      const started = descendants(berth.proc.pid!);
      assert.ok(started.length >= 1, 'berth has children (its host shell, the sandbox)');
      const holders = [berth.proc.pid!, ...started].filter((pid) => fdTargets(pid).some((t) => t.includes('inherited-secret')));
      assert.deepEqual(
        holders.map((pid) => `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]}`),
        [],
        'processes holding the inherited file',
      );
    } finally {
      await c.client.close();
    }
  },
);

test("berth under node --perf-basic-prof keeps V8's own map file open: its lines never reach the host shell", { skip }, async (t) => {
  // V8 opens /tmp/perf-PID.map without close-on-exec. Closed as if inherited, its number went to the host shell's
  // stdin pipe, and every map line V8 wrote became a shell command: no namespace sandbox could start.
  const berth = await startBerth(['run', '--port', '0', '--isolation', 'namespace', '--warm-pool', '0', '--', ...PROBE], {}, [
    'env',
    'NODE_OPTIONS=--perf-basic-prof',
  ]);
  t.after(() => berth.stop());
  const c = await connect(berth.url);
  try {
    assert.equal(textOf(await c.client.callTool({ name: 'echo', arguments: { text: 'profiled' } })), 'profiled');
    assert.ok(
      fdTargets(berth.proc.pid!).some((target) => target.endsWith(`/perf-${berth.proc.pid}.map`)),
      'berth still holds its perf map',
    );
    // ...close-on-exec now, so no sandboxed server (nor any other process berth starts) holds that host file.
    const map = `/perf-${berth.proc.pid}.map`;
    const fds = JSON.parse(textOf(await c.client.callTool({ name: 'fds', arguments: {} }))) as Record<string, string>;
    assert.ok(Object.keys(fds).length >= 3, `the probe lists its descriptors: ${JSON.stringify(fds)}`);
    assert.ok(!Object.values(fds).some((target) => target.endsWith(map)), `the server holds berth's perf map: ${JSON.stringify(fds)}`);
    const holders = descendants(berth.proc.pid!).filter((pid) => fdTargets(pid).some((target) => target.endsWith(map)));
    assert.deepEqual(holders, [], "processes berth started that hold berth's perf map");
  } finally {
    await c.client.close();
    rmSync(`/tmp/perf-${berth.proc.pid}.map`, { force: true });
    // V8 also logs code events under --perf-basic-prof, to isolate-*-PID-v8.log in berth's working directory.
    for (const f of readdirSync(ROOT)) if (f.endsWith(`-${berth.proc.pid}-v8.log`)) rmSync(join(ROOT, f), { force: true });
  }
});
