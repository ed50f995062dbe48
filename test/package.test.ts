// The npm package as a stranger gets it: `npm pack` of this checkout (its prepack script included, as on a publish),
// installed into an empty directory, then run from directories that have nothing to do with the checkout:
// `berth --version`, `berth run` of a small stdio server kept in a third directory (answering the official SDK
// client), and the library imported by its name. Also what the tarball promises: built from an empty dist/ (no
// leftover of a removed source), no source maps named, and README's links reaching files it ships or the repository.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ROOT, listeningUrl } from './helpers/berth.js';

const run = promisify(execFile);
interface Manifest {
  name: string;
  version: string;
  bin: Record<string, string>;
  files: string[];
  scripts?: Record<string, string>;
  repository?: { type?: string; url?: string };
  homepage?: string;
  bugs?: { url?: string };
}
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest;
/** A previous build's output from sources since removed, left in the copy's dist/ before packing. */
const STALE = ['dist/stale-leftover.js', 'dist/stale-leftover.d.ts', 'dist/removed-dir/gone.js'];

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
let packDir: string; // the copy of the checkout that is packed
let tarball: string;
let files: string[];

before(
  async () => {
    top = realpathSync(mkdtempSync(join(tmpdir(), 'berth-package-')));
    chmodSync(top, 0o755); // the sandbox uid (65534) must reach the server; a 0700 directory is refused at start
    prefix = join(top, 'install');
    elsewhere = join(top, 'elsewhere');
    serverDir = join(top, 'server');
    packDir = join(top, 'checkout');
    for (const d of [prefix, elsewhere, serverDir]) mkdirSync(d);
    // Packed from a copy, so prepack empties and rebuilds that copy's dist/, not the one other tests are running:
    // what the manifest's "files" names, the sources and compiler settings prepack builds from, and (shared) the
    // checkout's node_modules for the compiler. The copy's dist/ starts with a previous build's leftovers.
    const tops = new Set(['package.json', 'tsconfig.json', 'src', ...PKG.files.map((f) => f.split('/')[0]!)]);
    for (const name of tops)
      if (name !== 'dist' && existsSync(join(ROOT, name))) cpSync(join(ROOT, name), join(packDir, name), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(packDir, 'node_modules'));
    for (const f of STALE) {
      mkdirSync(dirname(join(packDir, f)), { recursive: true });
      writeFileSync(join(packDir, f), '// built from a source that no longer exists\n');
    }
    const packed = await run('npm', ['pack', '--json', '--pack-destination', top], {
      cwd: packDir,
      env: cleanEnv(),
      timeout: 120_000,
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
  { timeout: 300_000 },
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

test('the tarball holds the built code, the launcher, the dashboard files, examples, the Kubernetes manifests, README, ARCHITECTURE and LICENSE, and no sources or tests', () => {
  assert.equal(PKG.name, 'berth-mcp');
  assert.equal(PKG.bin.berth, './bin/berth.js');
  for (const f of [
    'package.json',
    'README.md',
    'ARCHITECTURE.md',
    'LICENSE',
    'bin/berth.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/cli/main.js',
    'dist/demo/server.js',
    'dist/dashboard/assets.js',
    'src/dashboard/static/index.html',
    'examples/berth.yaml',
    // README links their README; they are YAML, small, and what a cluster deployment starts from.
    'deploy/kubernetes/README.md',
    'deploy/kubernetes/berth.yaml',
  ]) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  const stray = files.filter(
    (f) =>
      /^(test|bench|scripts|node_modules)\//.test(f) ||
      (/^deploy\//.test(f) && !f.startsWith('deploy/kubernetes/')) ||
      (/^src\//.test(f) && !f.startsWith('src/dashboard/static/')) ||
      f.endsWith('.map'),
  );
  assert.deepEqual(stray, []);
  // Installing ran no compiler: the installed package has no TypeScript and no build script to run.
  const installed = JSON.parse(readFileSync(join(prefix, 'node_modules', PKG.name, 'package.json'), 'utf8')) as Manifest;
  assert.equal(installed.scripts?.prepare, undefined);
  assert.equal(installed.scripts?.install ?? installed.scripts?.postinstall, undefined);
});

test('the tarball is built from an empty dist/: no leftover of a removed source, every script has its source', () => {
  assert.deepEqual(
    STALE.filter((f) => files.includes(f)),
    [],
    "prepack must empty dist/ before building (a previous build's leftovers were shipped)",
  );
  const orphans = files.filter(
    (f) => /^dist\/.*\.js$/.test(f) && !existsSync(join(packDir, f.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))),
  );
  assert.deepEqual(orphans, [], 'shipped scripts without a source');
});

/** Every file under `dir`, recursively. */
const walk = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));

test('no source maps: none is shipped and no shipped script names one (the comment would point at a missing file)', () => {
  assert.deepEqual(
    files.filter((f) => f.endsWith('.map')),
    [],
  );
  const installed = join(prefix, 'node_modules', PKG.name);
  const scripts = walk(join(installed, 'dist'))
    .filter((f) => f.endsWith('.js'))
    .map((f) => relative(installed, f));
  assert.ok(scripts.length > 50, `found ${scripts.length} installed scripts`);
  assert.deepEqual(
    scripts.filter((f) => readFileSync(join(installed, f), 'utf8').includes('sourceMappingURL')),
    [],
  );
});

test("repository, homepage and bugs are set; README's links reach a file the tarball holds, or the repository", () => {
  const installed = JSON.parse(readFileSync(join(prefix, 'node_modules', PKG.name, 'package.json'), 'utf8')) as Manifest;
  assert.match(installed.repository?.url ?? '', /^git\+https:\/\/\S+\.git$/, 'repository.url');
  // Until the public repository is decided, package.json names a placeholder (its "//" says so); all must agree.
  const repo = installed.repository!.url!.replace(/^git\+/, '').replace(/\.git$/, '');
  assert.equal(installed.homepage, `${repo}#readme`);
  assert.equal(installed.bugs?.url, `${repo}/issues`);
  // What npmjs.com shows: README as shipped. Code blocks and code spans hold no links.
  const readme = readFileSync(join(prefix, 'node_modules', PKG.name, 'README.md'), 'utf8')
    .replace(/^```[\s\S]*?^```/gm, '')
    .replace(/`[^`\n]*`/g, '');
  const targets = [...readme.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)|^\[[^\]]+\]:\s*(\S+)/gm)].map((m) => (m[1] ?? m[2])!);
  assert.ok(targets.length > 10, `found ${targets.length} links`);
  const broken = targets.filter((t) => {
    if (t.startsWith('#')) return false;
    // A link into the repository uses package.json's URL; one left naming the placeholder after it was replaced is broken.
    if (/^[a-z][a-z+.-]*:/i.test(t))
      return (t.includes(new URL(repo).host) || t.includes('placeholder.invalid')) && !t.startsWith(`${repo}/`);
    const path = posix.normalize(decodeURIComponent(t.replace(/[?#].*$/, ''))).replace(/\/$/, '');
    return !files.includes(path) && !files.some((f) => f.startsWith(`${path}/`));
  });
  assert.deepEqual(broken, [], 'README links to files the tarball lacks (ship them, or link them in the repository)');
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
