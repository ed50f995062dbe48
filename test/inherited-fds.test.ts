// Descriptors berth inherited open across exec (a supervisor's pipe, a file a shell redirected) never reach a
// sandboxed server or berth's dial helper: berth closes them before its first sandbox (inherited-fds.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { connect, PROBE, ROOT, startBerth, textOf } from './helpers/berth.ts';

const skip = !(await namespaceDriver.probe(ROOT)).ok && 'the namespace driver cannot run here';

test('a descriptor berth inherited (fd 100, no close-on-exec) is not open in a namespace sandbox, nor in berth', { skip }, async (t) => {
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
    const own = readdirSync(`/proc/${berth.proc.pid}/fd`).map((n) => {
      try {
        return readlinkSync(`/proc/${berth.proc.pid}/fd/${n}`);
      } catch {
        return '';
      }
    });
    assert.ok(!own.some((target) => target.includes('inherited-secret')), 'berth closed it too, so no later child gets it');
  } finally {
    await c.client.close();
  }
});
