// berth's host commands (mount, umount, ip, nft) run through one long-lived shell, not a fork of berth each
// (issue 17: every fork stalled berth's event loop 6–25 ms, ten of them per namespace session). Real /bin/sh, real
// commands: what the command sees (arguments, stdin, its parent), what berth gets back (exit code, stderr), many
// at once, no zombies left, a shell killed under a running command, and a shell whose berth was killed.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { hostShells, shellRun } from '../src/sandbox/host-shell.ts';
import { run } from '../src/sandbox/host.ts';
import { descendants } from './helpers/procs.ts';

test("a host command is the shell's child, not a fork of berth", async () => {
  // The command reports its parent's pid on stderr: spawn() from berth would make that berth's own pid.
  const r = await run('/bin/sh', ['-c', 'echo "$PPID" >&2']);
  assert.equal(r.code, 0);
  const parent = Number(r.stderr.trim());
  assert.ok(parent > 0, `no parent pid in ${JSON.stringify(r.stderr)}`);
  assert.notEqual(parent, process.pid);
});

test('arguments reach the command exactly, never expanded by the shell', async () => {
  const odd = [`it's`, '$(touch /nonexistent/x)', '`id`', '$HOME', 'two\nlines', '*', '"', '\\', '', ' lead'];
  const r = await shellRun(process.execPath, ['-e', 'process.stderr.write(JSON.stringify(process.argv.slice(1)))', ...odd]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stderr), odd);
});

test('input reaches stdin whole, whatever it holds', async () => {
  const input = `table inet x {\n  'quoted' "double" $(not run) \`nor this\`\nBERTH_INPUT_\nEOF\n}`;
  const r = await shellRun('/bin/sh', ['-c', 'cat >&2']);
  assert.equal(r.code, 0);
  assert.equal(r.stderr, '');
  const echoed = await shellRun('/bin/sh', ['-c', 'cat >&2'], input);
  assert.equal(echoed.stderr, `${input}\n`, 'input without a final newline gets one (a here-document)');
  const big = 'x'.repeat(200_000) + '\n';
  const wc = await shellRun('/bin/sh', ['-c', 'wc -c >&2'], big);
  assert.equal(Number(wc.stderr.trim()), big.length);
});

test('exit codes and stderr come back per command, many at once', async () => {
  const n = 60;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => shellRun('/bin/sh', ['-c', `echo "command ${i}" >&2; exit ${i % 7}`])),
  );
  results.forEach((r, i) => {
    assert.equal(r.code, i % 7);
    assert.equal(r.stderr, `command ${i}\n`);
  });
  const missing = await shellRun('/nonexistent/tool', ['x']);
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /nonexistent\/tool/);
});

test('a NUL byte in an argument or the input is refused, not truncated', async () => {
  for (const r of [await shellRun('/bin/echo', ['a\0b']), await shellRun('/bin/cat', [], 'a\0b')]) {
    assert.equal(r.code, null);
    assert.match(r.stderr, /NUL/);
  }
});

test('finished commands leave no zombie behind in the shell', async () => {
  await Promise.all(Array.from({ length: 40 }, () => shellRun('/bin/true', [])));
  const last = await shellRun('/bin/sh', [
    '-c',
    'read -r _ _ _ job _ < /proc/$PPID/stat; read -r _ _ _ shell _ < /proc/$job/stat; echo "$shell" >&2',
  ]);
  const shell = Number(last.stderr.trim());
  assert.ok(shell > 1, `no shell pid in ${JSON.stringify(last.stderr)}`);
  // Each command reaps the jobs that ended before it: at most the last few may still be zombies.
  const zombies = descendants(shell).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
    } catch {
      return false;
    }
  });
  assert.ok(zombies.length <= 3, `${zombies.length} zombies under the shell`);
});

test('a shell that dies is replaced at the next command; a command it was running still reports', async () => {
  const runner = hostShells();
  const dir = mkdtempSync(join(tmpdir(), 'berth-shell-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const gate = join(dir, 'go');
  // Which shell ran a command: its stderr file lies in that shell's own directory.
  const SHELL = 'dirname "$(readlink /proc/self/fd/2)" >&2';
  // Waits (bounded: 60 s) until the test lets it end.
  const slow = runner('/bin/sh', ['-c', `${SHELL}; i=0; while [ ! -e '${gate}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`]);
  // The command's parent is `timeout`, whose parent is the job's subshell, whose parent is the shell.
  const first = await runner('/bin/sh', [
    '-c',
    `${SHELL}; read -r _ _ _ job _ < /proc/$PPID/stat; read -r _ _ _ shell _ < /proc/$job/stat; echo "$shell" >&2`,
  ]);
  const [firstDir, shellPid] = first.stderr.trim().split('\n');
  const shell = Number(shellPid);
  process.kill(shell, 'SIGKILL');
  await waitFor(
    () => (existsSync(`/proc/${shell}`) && !readFileSync(`/proc/${shell}/stat`, 'utf8').includes(') Z') ? undefined : true),
    'the shell lived on',
  );
  // The dead shell's job still holds its stdout open; a new command must not wait for it.
  const next = await runner('/bin/sh', ['-c', SHELL]);
  assert.equal(next.code, 0);
  assert.notEqual(next.stderr.trim(), firstDir, 'a new shell ran it');
  writeFileSync(gate, '');
  const done = await slow;
  assert.equal(done.code, 0);
  assert.equal(done.stderr.trim(), firstDir);
});

test('a shell whose berth is gone removes its own stderr directory once its commands end', async () => {
  // A child process stands in for a berth killed by SIGKILL: it starts a command and is killed while it runs.
  const dir = mkdtempSync(join(tmpdir(), 'berth-shell-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const gate = join(dir, 'go');
  const script = [
    `import { shellRun } from ${JSON.stringify(new URL('../src/sandbox/host-shell.ts', import.meta.url).href)};`,
    `void shellRun('/bin/sh', ['-c', 'i=0; while [ ! -e ${gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done']);`,
    `setInterval(() => undefined, 1000);`,
  ].join('\n');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
  const shellDir = await waitFor(() => ownShellDir(child.pid!), 'the child never made its shell');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(existsSync(shellDir), 'removed while its command still ran');
  writeFileSync(gate, '');
  await waitFor(() => (existsSync(shellDir) ? undefined : true), `${shellDir} was left behind`);
});

/** The stderr directory of a host shell below `pid`: where a running command's fd 2 points. */
function ownShellDir(pid: number): string | undefined {
  for (const p of descendants(pid)) {
    try {
      const err = readlinkSync(`/proc/${p}/fd/2`);
      if (basename(dirname(err)).startsWith('host-')) return dirname(err);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

async function waitFor<T>(probe: () => T | undefined, why: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(why);
    await new Promise((r) => setTimeout(r, 25));
  }
}
