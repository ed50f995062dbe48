// The layer rules of .dependency-cruiser.cjs hold for src/, and they bite: a copy of src/ with one upward import,
// or one import circle, is refused naming the rule and the files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from './helpers/berth.ts';

const run = promisify(execFile);
const DEPCRUISE = join(ROOT, 'node_modules', '.bin', 'depcruise');

async function cruise(dir: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(DEPCRUISE, ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'err'], { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout + x.stderr };
  }
}

describe('layers', () => {
  let copy: string;
  before(async () => {
    copy = await mkdtemp(join(tmpdir(), 'berth-layers-'));
    await cp(join(ROOT, 'src'), join(copy, 'src'), { recursive: true });
    for (const f of ['.dependency-cruiser.cjs', 'tsconfig.json', 'package.json']) await cp(join(ROOT, f), join(copy, f));
    await symlink(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
  });
  after(() => rm(copy, { recursive: true, force: true }));

  it('src/ has no import circle and no import from a lower layer to a higher one', async () => {
    const r = await cruise(ROOT);
    assert.equal(r.code, 0, r.out);
  });

  for (const [file, line, rule, target] of [
    [
      'session/pool.ts',
      "import type { Server2025Bridge } from '../bridge/server-2025.js';\nexport type X = Server2025Bridge;",
      'session-imports-upward',
      'src/bridge/server-2025.ts',
    ],
    [
      'runtime/calls.ts',
      "import type { ClusterNode } from '../cluster/node.js';\nexport type X = ClusterNode;",
      'runtime-not-cluster',
      'src/cluster/node.ts',
    ],
  ]) {
    it(`${rule}: an import from src/${file} to ${target} is refused, naming the rule and both files`, async () => {
      const path = join(copy, 'src', file!);
      const before = await readFile(path, 'utf8');
      await writeFile(path, `${before}\n${line}\n`);
      try {
        const r = await cruise(copy);
        assert.notEqual(r.code, 0, r.out);
        assert.match(r.out, new RegExp(rule!));
        assert.ok(r.out.includes(`src/${file} → ${target}`), r.out);
      } finally {
        await writeFile(path, before);
      }
    });
  }

  it('an import circle inside one layer is refused', async () => {
    const a = join(copy, 'src', 'wire', 'circle-a.ts');
    const b = join(copy, 'src', 'wire', 'circle-b.ts');
    await writeFile(a, "import { b } from './circle-b.js';\nexport const a = () => b;\n");
    await writeFile(b, "import { a } from './circle-a.js';\nexport const b = () => a;\n");
    try {
      const r = await cruise(copy);
      assert.notEqual(r.code, 0);
      assert.match(r.out, /no-circular/);
      assert.match(r.out, /circle-a\.ts/);
    } finally {
      await rm(a);
      await rm(b);
    }
  });
});
