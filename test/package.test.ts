// The npm package as a stranger gets it: `npm pack` of this checkout, installed into an empty directory, then run
// from directories that have nothing to do with the checkout: `berth --version`, `berth run` of a small stdio
// server kept in a third directory (answering the official SDK client), and the library imported by its name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ROOT, listeningUrl } from './helpers/berth.js';

const run = promisify(execFile);
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string> };

/** The environment without what `npm test` sets for its children (npm_config_*, npm_package_*, …), so each npm here
 * behaves as one typed at a shell. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'INIT_CWD') env[k] = v;
  return { ...env, ...extra };
}

let top: string; // everything of this test, removed at the end
let prefix: string; // where the tarball is installed: an empty project outside the checkout
let elsewhere: string; // where berth is run from
let serverDir: string; // where the hosted server lives
let tarball: string;
let files: string[];

before(
  async () => {
    assert.ok(existsSync(join(ROOT, 'dist/cli/main.js')), 'dist/ is missing: run `npm run build` first (npm test does)');
    top = realpathSync(mkdtempSync(join(tmpdir(), 'berth-package-')));
    chmodSync(top, 0o755); // the sandbox uid (65534) must reach the server; a 0700 directory is refused at start
    prefix = join(top, 'install');
    elsewhere = join(top, 'elsewhere');
    serverDir = join(top, 'server');
    for (const d of [prefix, elsewhere, serverDir]) mkdirSync(d);
    // --ignore-scripts: `npm test` has just built dist/ (prepack would build it again, under other tests' feet).
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', top], {
      cwd: ROOT,
      env: cleanEnv(),
      timeout: 60_000,
      maxBuffer: 64 << 20,
    });
    const info = (JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>)[0]!;
    tarball = join(top, info.filename);
    files = info.files.map((f) => f.path);
    // A real install from the tarball: its dependencies come from the registry (or npm's cache), no compiler runs.
    await run('npm', ['install', '--prefix', prefix, tarball, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel', 'error'], {
      cwd: prefix,
      env: cleanEnv(),
      timeout: 180_000,
      maxBuffer: 64 << 20,
    });
  },
  { timeout: 240_000 },
);

after(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

const bin = () => join(prefix, 'node_modules/.bin/berth');

/** Runs the installed `berth` with `args` from `elsewhere` until it prints its URL, gives that to `use`, then stops it. */
async function withInstalledBerth(args: string[], use: (url: string) => Promise<void>): Promise<void> {
  const proc = spawn(bin(), args, { cwd: elsewhere, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    await use(await listeningUrl(proc, { timeoutMs: 60_000, context: () => err }));
  } finally {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  }
}

test('the tarball holds the built code, the launcher, the dashboard files, examples, README and LICENSE, and no sources or tests', () => {
  assert.equal(PKG.name, 'berth-mcp');
  assert.equal(PKG.bin.berth, './bin/berth.js');
  for (const f of [
    'package.json',
    'README.md',
    'LICENSE',
    'bin/berth.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/cli/main.js',
    'dist/demo/server.js',
    'dist/dashboard/assets.js',
    'src/dashboard/static/index.html',
    'examples/berth.yaml',
  ]) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  const stray = files.filter(
    (f) =>
      /^(test|bench|scripts|deploy|node_modules)\//.test(f) ||
      (/^src\//.test(f) && !f.startsWith('src/dashboard/static/')) ||
      f.endsWith('.map'),
  );
  assert.deepEqual(stray, []);
  // Installing ran no compiler: the installed package has no TypeScript and no build script to run.
  const installed = JSON.parse(readFileSync(join(prefix, 'node_modules', PKG.name, 'package.json'), 'utf8')) as {
    scripts?: Record<string, string>;
  };
  assert.equal(installed.scripts?.prepare, undefined);
  assert.equal(installed.scripts?.install ?? installed.scripts?.postinstall, undefined);
});

test('`berth --version` prints the package version, from a directory outside the checkout', async () => {
  const r = await run(bin(), ['--version'], { cwd: elsewhere, env: cleanEnv(), timeout: 30_000 });
  assert.equal(r.stdout.trim(), PKG.version);
});

test('the library is importable by the package name', async () => {
  const r = await run(
    process.execPath,
    ['-e', `import('${PKG.name}').then((m) => console.log(typeof m.createRuntime, typeof m.parseConfig))`],
    { cwd: prefix, env: cleanEnv(), timeout: 30_000 },
  );
  assert.equal(r.stdout.trim(), 'function function');
});

/** A stdio MCP server needing no dependency: newline-delimited JSON-RPC, one tool (echo). */
const SERVER = `import { createInterface } from 'node:readline';
const send = (m) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id === undefined || !m.method) return; // notifications and responses
  if (m.method === 'initialize') return send({ id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'third-dir', version: '1.0.0' } } });
  if (m.method === 'ping') return send({ id: m.id, result: {} });
  if (m.method === 'tools/list') return send({ id: m.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }] } });
  if (m.method === 'tools/call') return send({ id: m.id, result: { content: [{ type: 'text', text: 'echo: ' + m.params.arguments.text }] } });
  send({ id: m.id, error: { code: -32601, message: 'Method not found: ' + m.method } });
});
`;

test(
  '`berth run` (default isolation) hosts a server from a third directory; the official SDK client calls it',
  { timeout: 120_000 },
  async () => {
    const script = join(serverDir, 'server.mjs');
    writeFileSync(script, SERVER);
    // No --mount: berth shows the sandbox the command's own files (issue 14.3).
    await withInstalledBerth(['run', '--port', '0', '--', process.execPath, script], async (url) => {
      const client = new Client({ name: 'package-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(url)), { timeout: 60_000 });
      assert.equal(client.getServerVersion()?.name, 'third-dir');
      const r = await client.callTool({ name: 'echo', arguments: { text: 'from a stranger' } });
      assert.deepEqual(r.content, [{ type: 'text', text: 'echo: from a stranger' }]);
      await client.close();
    });
  },
);

test(
  '`berth serve --config` of the installed example, from a directory outside it: the demo answers the official SDK client',
  { timeout: 120_000 },
  async () => {
    // The example names its command relative to itself (cwd: ..), so it works wherever berth is started.
    const example = join(prefix, 'node_modules', PKG.name, 'examples', 'berth.yaml');
    await withInstalledBerth(['serve', '--config', example, '--port', '0'], async (url) => {
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/, 'the default runtime, on the port --port 0 chose');
      assert.notEqual(new URL(url).port, '8787');
      const client = new Client({ name: 'package-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(url)), { timeout: 60_000 });
      await client.callTool({ name: 'note_write', arguments: { name: 'hello', content: 'from a stranger' } });
      const r = (await client.callTool({ name: 'note_read', arguments: { name: 'hello' } })) as { content: Array<{ text: string }> };
      assert.equal(r.content[0]!.text, 'from a stranger');
      await client.close();
    });
  },
);
