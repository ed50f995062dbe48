// What a command's files show a sandbox (src/sandbox/command-files.ts): never a person's home whole. A program in
// ~/bin or ~/.local/bin, a script beside a stray ~/package.json, or berth started in ~ itself used to show the home
// (~/.ssh, ~/.aws, ~/.npmrc) read-only to every session.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { commandRoots } from '../src/sandbox/command-files.ts';
import { homes, unsafeRuntimeDir } from '../src/sandbox/host.ts';
import { tempDir } from './helpers/temp.ts';

let top: string;
let home: string;
const savedHome = process.env.HOME;
before(() => {
  top = tempDir('berth-command-files-');
  home = join(top, 'home', 'alice');
  for (const d of ['bin', '.ssh', '.local/bin', '.local/lib', '.local/share/keyrings', 'proj', 'start'])
    mkdirSync(join(home, d), { recursive: true });
  writeFileSync(join(home, '.ssh', 'id_ed25519'), 'secret');
  for (const p of ['bin/server', '.local/bin/tool']) {
    writeFileSync(join(home, p), '#!/bin/sh\n');
    chmodSync(join(home, p), 0o755);
  }
  writeFileSync(join(home, 'package.json'), '{}'); // a stray one, from an `npm i` run in the home directory
  writeFileSync(join(home, 'proj', 'server.js'), '');
  process.env.HOME = home; // os.homedir() reads it: the home berth runs with
});
after(() => {
  if (savedHome === undefined) delete process.env.HOME;
  else process.env.HOME = savedHome;
});

const rootsOf = (argv: string[]) => commandRoots(argv, join(home, 'start'), [], tmpdir());

test("berth's own home ($HOME) is a home", () => {
  assert.ok(homes().has(home));
});

test('a program in ~/bin shows ~/bin, not the home above it', () => {
  const roots = rootsOf([join(home, 'bin', 'server')]);
  assert.ok(!roots.includes(home), `the home is shown: ${roots.join(', ')}`);
  assert.deepEqual(roots, [join(home, 'bin')]);
});

test("a program in ~/.local/bin shows its bin/ and lib/, not ~/.local (whose share/ holds the user's keyrings)", () => {
  const roots = rootsOf([join(home, '.local', 'bin', 'tool')]);
  assert.deepEqual(roots.sort(), [join(home, '.local', 'bin'), join(home, '.local', 'lib')]);
});

test('a script beside a stray ~/package.json has its own directory as root, not the home', () => {
  const roots = rootsOf(['/bin/sh', join(home, 'proj', 'server.js')]);
  assert.ok(!roots.includes(home), `the home is shown: ${roots.join(', ')}`);
  assert.ok(roots.includes(join(home, 'proj')), roots.join(', '));
});

test('a runtime directory that is, or holds, a home is refused for a sandbox, naming it', () => {
  assert.match(unsafeRuntimeDir(home, tmpdir()) ?? '', /is the home directory .*alice, whose keys and tokens/);
  assert.match(unsafeRuntimeDir(join(top, 'home'), tmpdir()) ?? '', /contains the home directory .*alice/);
  assert.equal(unsafeRuntimeDir(join(home, 'proj'), tmpdir()), undefined, 'a project inside a home is fine');
});
