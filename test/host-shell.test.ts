// berth's host commands (mount, umount, ip, nft) run through one long-lived shell, not a fork of berth each
// (issue 17: every fork stalled berth's event loop 6–25 ms, ten of them per namespace session). Real /bin/sh, real
// commands: what the command sees (arguments, stdin, its parent), what berth gets back (exit code, stderr), many
// at once, and a shell retired after its quota while its commands still report.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
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
  const r = await shellRun('/usr/bin/node', ['-e', 'process.stderr.write(JSON.stringify(process.argv.slice(1)))', ...odd]);
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

test('a NUL byte in an argument is refused, not truncated', async () => {
  const r = await shellRun('/bin/echo', ['a\0b']);
  assert.equal(r.code, null);
  assert.match(r.stderr, /NUL/);
});

test('a shell is retired after its quota; its slow commands still report, the next shell takes new ones', async () => {
  const runner = hostShells(3);
  // Which shell ran a command: each runs in a subshell of its shell, so the shell is its parent's parent.
  const SHELL = 'read -r _ _ _ shell _ < /proc/$PPID/stat; echo "$shell"';
  // The first shell's three commands: one slow, so it is still running when the shell is retired.
  const dir = mkdtempSync(join(tmpdir(), 'berth-shell-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const gate = join(dir, 'go');
  // Waits (bounded: 60 s) until the test lets it end, after its shell has been retired.
  const wait = `i=0; while [ ! -e '${gate}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`;
  // (Its shell is read first: a retired shell ends while its commands run on, and they are then init's.)
  const slow = runner('/bin/sh', ['-c', `s=$(${SHELL}); ${wait}; read line; echo "$s $line" >&2`], 'late');
  const quick = await Promise.all([runner('/bin/sh', ['-c', `${SHELL} >&2`]), runner('/bin/sh', ['-c', `${SHELL} >&2`])]);
  const later = await Promise.all(Array.from({ length: 4 }, () => runner('/bin/sh', ['-c', `${SHELL} >&2`])));
  const shells = new Set([...quick, ...later].map((r) => r.stderr.trim().split(' ')[0]));
  writeFileSync(gate, '');
  const first = (await slow).stderr.trim().split(' ');
  assert.equal(first[1], 'late');
  assert.equal(quick[0]!.stderr.trim(), first[0], 'the first three commands ran in one shell');
  // 3 + 3 + 1 commands: three shells.
  assert.equal(new Set([first[0], ...shells]).size, 3);
});

test("a shell whose berth is gone removes its own stderr directory once its commands end", async () => {
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
      if (basename(dirname(err)).startsWith('berth-host-')) return dirname(err);
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
