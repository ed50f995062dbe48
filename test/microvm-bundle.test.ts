// When the microvm driver bundles a node server (and when it must not): real esbuild, real files, no VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFor } from '../src/sandbox/microvm-bundle.ts';

function runtimeDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bundle-test-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

test('an ESM server with dependencies is bundled, and the bundle beside it runs as the server did', async () => {
  const dir = runtimeDir({
    'server.mjs':
      "import { greet } from './lib/greet.mjs'; import { z } from 'zod'; console.log(greet(z.string().parse('vm')), new URL('./data.txt', import.meta.url).pathname);",
    'lib/greet.mjs': 'export const greet = (s) => `hello ${s}`;',
  });
  try {
    // zod from berth's own node_modules, as a server's dependency
    mkdirSync(join(dir, 'node_modules'));
    execFileSync('ln', ['-s', join(process.cwd(), 'node_modules/zod'), join(dir, 'node_modules/zod')]);
    const b = await bundleFor([process.execPath, join(dir, 'server.mjs')], dir);
    assert.ok(b, 'bundled');
    writeFileSync(join(dir, 'bundle.mjs'), b.code);
    rmSync(join(dir, 'node_modules'), { recursive: true }); // the bundle needs none
    assert.equal(
      execFileSync(process.execPath, [join(dir, 'bundle.mjs')], { encoding: 'utf8' }).trim(),
      `hello vm ${join(dir, 'data.txt')}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not bundled: modules that look up their own location elsewhere, node flags, scripts outside the runtime dir, the off switch', async () => {
  const dir = runtimeDir({
    'cjs.js': "console.log(require('fs').readdirSync(__dirname));",
    'sub.mjs': "import './deep/where.mjs';",
    'deep/where.mjs': 'console.log(import.meta.url);',
    'plain.mjs': 'console.log(1);',
  });
  try {
    const at = (f: string) => bundleFor([process.execPath, join(dir, f)], dir);
    assert.equal(await at('cjs.js'), undefined, 'a free __dirname');
    assert.equal(await at('sub.mjs'), undefined, 'import.meta.url in another directory');
    assert.equal(await bundleFor([process.execPath, '--import', 'tsx', join(dir, 'plain.mjs')], dir), undefined);
    assert.equal(await bundleFor([process.execPath, join(dir, 'plain.mjs')], join(dir, 'deep')), undefined);
    process.env.BERTH_MICROVM_BUNDLE = '0';
    assert.equal(await at('plain.mjs'), undefined);
    delete process.env.BERTH_MICROVM_BUNDLE;
    assert.ok(await at('plain.mjs'));
  } finally {
    delete process.env.BERTH_MICROVM_BUNDLE;
    rmSync(dir, { recursive: true, force: true });
  }
});
