// The test images of test/fixtures/images/build.ts, which the image tests run: their configs read back through
// skopeo in each transport, the corrupted copy refused for its digest, and both servers answering from the image's
// own root filesystem in a bubblewrap sandbox (the http one in a network namespace of its own, on port 8000).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { ROOT } from './helpers/berth.js';
import { buildTestImages, ImageToolsMissing, type TestImages } from './fixtures/images/build.ts';

const run = promisify(execFile);
const rootless = process.getuid?.() === 0 ? [] : ['--rootless'];

let images: TestImages | undefined;
let skip: string | undefined;
try {
  const started = Date.now();
  images = await buildTestImages();
  process.stdout.write(`test images ready in ${Date.now() - started} ms: ${images.layout}\n`);
} catch (e) {
  if (!(e instanceof ImageToolsMissing)) throw e;
  skip = e.message;
  process.stdout.write(`image fixture tests skipped: ${skip}\n`);
}
const bwrapWorks = spawnSync('bwrap', ['--ro-bind', '/', '/', '--unshare-net', 'true'], { stdio: 'ignore' }).status === 0;
const sandboxSkip = skip ?? (bwrapWorks ? undefined : 'bwrap cannot make a sandbox here (not installed, or no user namespaces)');

interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, object>;
}

async function inspect(ref: string, config = false): Promise<any> {
  const { stdout } = await run('skopeo', ['inspect', ...(config ? ['--config'] : []), ref], { maxBuffer: 8 * 1024 * 1024 });
  return JSON.parse(stdout);
}

/** How a runtime starts the image's process, from its config alone. */
async function imageProcess(ref: string): Promise<{ argv: string[]; env: Record<string, string>; cwd: string }> {
  const c = ((await inspect(ref, true)) as { config: ImageConfig }).config;
  const env = Object.fromEntries((c.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { argv: [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])], env, cwd: c.WorkingDir || '/' };
}

/** bwrap's argv around `argv`: the rootfs as /, private everything (network included), stopped with its parent. */
function sandbox(rootfs: string, cwd: string, argv: string[]): string[] {
  return ['--bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '--unshare-all', '--die-with-parent', '--chdir', cwd, ...argv];
}

let work: string | undefined;
let rootfs: string | undefined;
before(async () => {
  if (sandboxSkip) return;
  work = mkdtempSync(join(tmpdir(), 'berth-image-fixtures-'));
  // One unpack serves both servers: the two tags share their only layer (checked below).
  await run('umoci', ['unpack', ...rootless, '--image', `${images!.layout}:http`, join(work, 'bundle')]);
  rootfs = join(work, 'bundle', 'rootfs');
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('each transport shows the image config: MARK, WorkingDir /app, port 8000, node + the server script', { skip }, async () => {
  const i = images!;
  for (const [ref, script] of [
    [i.http, '/app/http-server.mjs'],
    [i.stdio, '/app/stdio-server.mjs'],
    [i.dockerArchive, '/app/http-server.mjs'],
    [i.ociArchive, '/app/http-server.mjs'],
  ] as const) {
    const c = ((await inspect(ref, true)) as { config: ImageConfig }).config;
    assert.ok(c.Env?.includes('MARK=from-image'), `${ref}: Env ${JSON.stringify(c.Env)}`);
    assert.ok(c.Env?.includes('PATH=/usr/local/bin:/usr/bin:/bin'), `${ref}: Env ${JSON.stringify(c.Env)}`);
    assert.equal(c.WorkingDir, '/app', ref);
    assert.deepEqual(Object.keys(c.ExposedPorts ?? {}), ['8000/tcp'], ref);
    assert.deepEqual([...(c.Entrypoint ?? []), ...(c.Cmd ?? [])], ['node', script], ref);
  }
  const [http, stdio] = await Promise.all([inspect(i.http), inspect(i.stdio)]);
  assert.equal(http.Layers.length, 1);
  assert.deepEqual(stdio.Layers, http.Layers, 'the two tags share their layer');
});

test('copying the corrupted image fails on its layer digest; the same copy of the good one succeeds', { skip }, async () => {
  const dest = mkdtempSync(join(tmpdir(), 'berth-image-copy-'));
  try {
    const copy = (ref: string, to: string) =>
      spawnSync('skopeo', ['--insecure-policy', 'copy', '--quiet', ref, `dir:${join(dest, to)}`], { encoding: 'utf8' });
    const good = copy(images!.http, 'good');
    assert.equal(good.status, 0, good.stderr);
    const bad = copy(images!.corrupted, 'bad');
    assert.notEqual(bad.status, 0, 'skopeo copied a layer whose digest does not match');
    assert.match(bad.stderr, /Digest did not match/);
  } finally {
    rmSync(dest, { recursive: true, force: true });
  }
});

test('the stdio image, run from its rootfs as its config says, serves every tool to the SDK client', { skip: sandboxSkip }, async () => {
  const proc = await imageProcess(images!.stdio);
  const client = new Client({ name: 'image-fixtures', version: '1.0.0' }, { capabilities: { elicitation: {} } });
  client.setRequestHandler(ElicitRequestSchema, async (r) => {
    assert.match(JSON.stringify(r.params), /"name"/);
    return { action: 'accept', content: { name: 'Ada' } };
  });
  // Only the image's environment: bwrap finds `node` on the image's PATH, inside the rootfs.
  await client.connect(
    new StdioClientTransport({ command: 'bwrap', args: sandbox(rootfs!, proc.cwd, proc.argv), env: proc.env, stderr: 'inherit' }),
  );
  try {
    const text = async (name: string, args: Record<string, string> = {}) =>
      ((await client.callTool({ name, arguments: args })).content as Array<{ text: string }>)[0]!.text;
    assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), ['elicit', 'read', 'whoami', 'write']);
    const who = JSON.parse(await text('whoami'));
    assert.equal(who.cwd, '/app');
    assert.equal(who.mark, 'from-image');
    assert.equal(who.path, '/usr/local/bin:/usr/bin:/bin');
    assert.equal(typeof who.uid, 'number');
    assert.equal(await text('read', { file: 'note.txt' }), 'missing');
    assert.equal(await text('write', { file: 'note.txt', text: 'hello' }), 'ok');
    assert.equal(await text('read', { file: 'note.txt' }), 'hello');
    assert.equal(await text('elicit'), 'Ada');
  } finally {
    await client.close();
  }
});

test(
  'the http image, in a network namespace of its own, listens on 0.0.0.0:8000 and keeps sessions apart',
  { skip: sandboxSkip },
  async () => {
    const proc = await imageProcess(images!.http);
    // The probe (SDK client) runs in the sandbox next to the server: the sandbox's loopback is the only network.
    const probe = join(rootfs!, 'probe.mjs');
    await run(join(ROOT, 'node_modules/.bin/esbuild'), [
      join(ROOT, 'test/fixtures/images/http-probe.ts'),
      '--bundle',
      '--platform=node',
      '--format=esm',
      `--outfile=${probe}`,
      '--log-level=warning',
    ]);
    try {
      const { stdout } = await run('bwrap', sandbox(rootfs!, '/', ['/usr/bin/node', '/probe.mjs', JSON.stringify(proc)]), {
        env: {},
        timeout: 120_000,
      });
      const seen = JSON.parse(stdout);
      assert.ok(seen.listening.includes('00000000:1F40'), `listening on ${seen.listening.join(', ')}, not 0.0.0.0:8000`);
      assert.equal(new Set(seen.sessions).size, 2, `two sessions, two ids: ${seen.sessions}`);
      assert.deepEqual(seen.tools, ['elicit', 'read', 'whoami', 'write']);
      assert.equal(seen.whoami.cwd, '/app');
      assert.equal(seen.whoami.mark, 'from-image');
      assert.equal(seen.whoami.port, undefined, 'PORT unset: the default 8000 served');
      assert.equal(seen.write, 'ok');
      assert.equal(seen.read, 'kept', 'both sessions share the one server process and its cwd');
      assert.equal(seen.readMissing, 'missing');
      assert.equal(seen.elicit, 'Ada');
      assert.equal(seen.unknownSession, 404);
      assert.equal(seen.otherPath, 404);
    } finally {
      rmSync(probe, { force: true });
    }
  },
);
