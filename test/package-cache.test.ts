// `berth run -- npx -y PACKAGE` with no internet: the test publishes a small MCP server package to an npm registry
// it serves on loopback. berth installs the package once, outside the sandboxes, into its package cache; sessions
// (default isolation, network none) run it from there read-only and never download: the registry sees the tarball
// fetched once however many sessions start, and not at all when a restarted berth reuses the cache.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, runBerth, serveBerth, startBerth, textOf } from './helpers/berth.ts';

const NAME = 'berth-fixture-npx-server';
const FIXTURE = fileURLToPath(new URL('./fixtures/npx-package', import.meta.url));

let top: string;
let cache: string;
let registry: Server;
let registryUrl: string;
const fetched = { packument: 0, tarball: 0 };

before(async () => {
  top = mkdtempSync(join(tmpdir(), 'berth-package-cache-'));
  chmodSync(top, 0o755); // as root the sandbox user (65534) must traverse it to reach the cache below
  cache = join(top, 'packages');
  const src = join(top, 'src');
  cpSync(FIXTURE, src, { recursive: true });
  // A tarball no earlier run has seen, so no npm cache anywhere could hold it.
  writeFileSync(join(src, 'nonce.txt'), `${process.pid} ${Date.now()} ${Math.random()}\n`);
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', top], {
    cwd: src,
    encoding: 'utf8',
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
  const tgz = readFileSync(join(top, (JSON.parse(out) as Array<{ filename: string }>)[0]!.filename));
  const manifest = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as Record<string, unknown>;

  registry = createServer((req, res) => {
    const base = `http://${req.headers.host}`;
    if (req.url === `/${NAME}`) {
      fetched.packument++;
      const dist = {
        tarball: `${base}/${NAME}/-/${NAME}-1.0.0.tgz`,
        integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
        shasum: createHash('sha1').update(tgz).digest('hex'),
      };
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ name: NAME, 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { ...manifest, dist } } }));
    } else if (req.url === `/${NAME}/-/${NAME}-1.0.0.tgz`) {
      fetched.tarball++;
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tgz);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}');
    }
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  registryUrl = `http://127.0.0.1:${(registry.address() as { port: number }).port}/`;
});

after(() => {
  registry.closeAllConnections();
  registry.close();
  rmSync(top, { recursive: true, force: true });
});

/** npm pointed at the loopback registry through its environment, with an npm cache of the test's own. */
function npmEnv(): Record<string, string> {
  return {
    npm_config_registry: registryUrl,
    npm_config_cache: join(top, 'npm-cache'),
    npm_config_update_notifier: 'false',
    BERTH_PACKAGE_CACHE: cache,
  };
}

async function whereAndWrite(url: string): Promise<{ file: string; session: string; write: string }> {
  const { client, transport } = await connect(url);
  try {
    const where = JSON.parse(textOf(await client.callTool({ name: 'where', arguments: {} }))) as { file: string; session: string };
    const write = textOf(await client.callTool({ name: 'write_beside', arguments: {} }));
    await transport.terminateSession();
    return { ...where, write };
  } finally {
    await client.close();
  }
}

test('npx -y PACKAGE: installed once, outside the sandboxes; two sessions with network none run it read-only', async () => {
  const b = await runBerth(['--network', 'none'], ['npx', '-y', NAME], npmEnv());
  try {
    const driver = /"isolation":"(\w+)"/.exec(b.logs())?.[1];
    assert.ok(driver && driver !== 'process', `a real sandbox runs the sessions (auto chose ${driver})`);
    const [one, two] = await Promise.all([whereAndWrite(b.url), whereAndWrite(b.url)]);
    assert.notEqual(one.session, two.session);
    for (const s of [one, two]) {
      assert.ok(s.file.startsWith(`${cache}/default-`), `the server runs from the package cache, not an npx download: ${s.file}`);
      assert.ok(s.file.endsWith(`/node_modules/${NAME}/server.js`), s.file);
      assert.match(s.write, /^(EROFS|EACCES)$/, 'a session cannot write into the shared package directory');
    }
    assert.equal(
      fetched.tarball,
      1,
      'the tarball was downloaded once, by the installer, for every server started (warm pool and sessions)',
    );
    assert.equal(
      readdirSync(cache).filter((e) => e.startsWith('default-')).length,
      1,
      'one package directory, no leftover partial installs',
    );
    assert.ok(!existsSync(join(one.file, '..', 'written-by-a-session')));
  } finally {
    await b.stop();
  }
});

test('a restarted berth reuses the filled package directory: no install, the registry not even asked', async () => {
  const before = { ...fetched };
  const b = await runBerth(['--network', 'none'], ['npx', '--yes', NAME], npmEnv());
  try {
    const s = await whereAndWrite(b.url);
    assert.ok(s.file.startsWith(`${cache}/default-`), s.file);
    assert.deepEqual(fetched, before);
    assert.match(b.logs(), /package cache: reusing/);
  } finally {
    await b.stop();
  }
});

test('packageCache.refresh installs anew at start, asking the registry again', async () => {
  const asked = fetched.packument;
  const b = await serveBerth(
    { command: ['npm', 'exec', '--yes', '--', NAME], network: 'none', packageCache: { dir: cache, refresh: true } },
    npmEnv(),
  );
  try {
    const s = await whereAndWrite(b.url);
    assert.ok(s.file.startsWith(`${cache}/default-`), s.file);
    assert.equal(fetched.packument, asked + 1, 'npm asked the registry what the spec means now');
    assert.match(b.logs(), /package cache: installed/);
    assert.match(s.write, /^(EROFS|EACCES)$/);
  } finally {
    await b.stop();
  }
});

test("a package the registry does not have: berth run refuses to start, with the reason and npm's last stderr lines", async () => {
  await assert.rejects(runBerth(['--network', 'none'], ['npx', '-y', 'berth-fixture-no-such-package'], npmEnv()), (e: Error) => {
    assert.match(e.message, /berth exited with 1/);
    assert.match(e.message, /could not install berth-fixture-no-such-package into the package cache: npm install exited with code 1/);
    assert.match(e.message, /its last stderr lines:\n(.|\n)*404/);
    return true;
  });
});

test('uvx and npx forms berth cannot serve are refused at start, saying why', async () => {
  for (const [command, why] of [
    [['uvx', 'mcp-server-fetch'], /uvx commands are not supported yet.*uv is (not installed on this host|installed but not used)/],
    [['npx', '-c', 'echo hi'], /-c runs a shell command/],
    [['npx', '--registry', registryUrl, NAME], /the npx option --registry is not supported.*npm_config_registry/],
  ] as const) {
    const b = startBerth(['run', '--port', '0', '--', ...command], npmEnv());
    await assert.rejects(b, (e: Error) => {
      assert.match(e.message, /berth exited with 2/);
      assert.match(e.message, why);
      return true;
    });
  }
});
