// A hostile package's bin may name any host path: npm keeps `"bin": "../../../../some/host/path"` verbatim (it only
// makes no .bin link for it), and berth joined it to the package's directory for `npx -y PACKAGE`, then read it on
// its main thread as root and showed its directory to every session. A FIFO there hung berth whole (no /healthz, no
// SIGTERM), /dev/zero read forever. Now a bin outside the package is refused, fast, naming it; berth keeps answering;
// and a bin that is no regular file (a FIFO put into a filled package directory) is refused without reading it.
// Real npm installing a tarball the test packs (no registry: npm is pointed at a closed loopback port), real berth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageDir, parsePackageCommand } from '../src/sandbox/package-cache.ts';
import { ACCEPT_BOTH, initBody, serveBerth } from './helpers/berth.ts';
import { tempDir } from './helpers/temp.ts';

const NAME = 'berth-fixture-evil-bin';
const top = tempDir('berth-package-bin-');
chmodSync(top, 0o755); // as root the sandbox user must traverse it to reach the package cache below
const cache = join(top, 'packages');
/** npm with a cache of the test's own and a registry on a closed loopback port: everything installs from tarballs. */
const env = { npm_config_cache: join(top, 'npm-cache'), npm_config_update_notifier: 'false', npm_config_registry: 'http://127.0.0.1:9/' };

/** A tarball of a package whose bin is `bin`; its cli.js is a node script that exits (no server is needed here). */
function pack(dir: string, bin: string): string {
  const src = join(top, dir);
  mkdirSync(src);
  writeFileSync(join(src, 'package.json'), JSON.stringify({ name: NAME, version: '1.0.0', bin, files: ['cli.js'] }));
  writeFileSync(join(src, 'cli.js'), '#!/usr/bin/env node\n');
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', src], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  return join(src, (JSON.parse(out) as Array<{ filename: string }>)[0]!.filename);
}

/** berth serve of `npx -y tgz`: a session's start is refused with `refused` (in the log and to the client), while
 * /healthz answers throughout. */
async function refusedWhileHealthy(tgz: string, refused: RegExp): Promise<void> {
  const b = await serveBerth({ command: ['npx', '-y', tgz], network: 'none', packageCache: { dir: cache } }, env);
  try {
    const healthz = () =>
      fetch(new URL('/healthz', b.url), { signal: AbortSignal.timeout(5_000) }).then(
        (r) => r.status,
        (e: Error) => `${e.message} (${String(e.cause ?? '')})`,
      );
    const started = Date.now();
    const init = fetch(b.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' },
      body: initBody(),
      signal: AbortSignal.timeout(60_000),
    });
    init.catch(() => undefined); // awaited below, unless berth is found stuck first (then killed, ending it)
    while (!refused.test(b.logs())) {
      assert.equal(await healthz(), 200, `/healthz while the session starts\n${b.logs()}`);
      assert.ok(Date.now() - started < 60_000, `no refusal in 60 s:\n${b.logs()}`);
      await new Promise((r) => setTimeout(r, 100)); // a poll's pace, not a wait for the outcome
    }
    const r = await init;
    assert.notEqual(r.status, 200, 'no session');
    assert.match(await r.text(), refused, 'the client is told which bin of which package');
    assert.equal(await healthz(), 200);
  } finally {
    // The old code is stuck in open(2) of the FIFO on its main thread: only SIGKILL ends it.
    await b.stop('SIGKILL');
  }
}

test('npx -y PACKAGE whose bin points outside the package (at a FIFO): the start fails fast naming the bin; /healthz answers', async () => {
  const fifo = join(top, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await refusedWhileHealthy(
    pack('outside', '../'.repeat(40) + fifo.slice(1)),
    new RegExp(`the bin \\S+ of the package ${NAME} is ${fifo}, outside the package: refused`),
  );
});

test('a bin inside the package that is no regular file (a FIFO) is refused without blocking berth', async () => {
  const tgz = pack('inside', 'cli.js');
  // A first berth fills the package directory (its server, which exits at once, is no matter).
  const b = await serveBerth({ command: ['npx', '-y', tgz], network: 'none', packageCache: { dir: cache } }, env);
  try {
    for (const started = Date.now(); !/package cache: installed/.test(b.logs()); await new Promise((r) => setTimeout(r, 100)))
      assert.ok(Date.now() - started < 60_000, `not installed in 60 s:\n${b.logs()}`);
  } finally {
    await b.stop();
  }
  const dir = packageDir(cache, 'default', parsePackageCommand(['npx', '-y', tgz])!);
  const cli = join(dir, 'node_modules', NAME, 'cli.js');
  rmSync(cli);
  execFileSync('mkfifo', [cli]);
  await refusedWhileHealthy(tgz, new RegExp(`the bin cli.js of the package ${NAME} \\(${cli}\\) is not a regular file: refused`));
});
