// The container image (Containerfile, built by scripts/build-image.sh): a container started from it serves a tool
// call. Building the image takes minutes (docs/image.md), so this test uses the image already built for this
// version, localhost/berth:VERSION, and is skipped, saying why, when there is none or no podman to start it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ROOT, listeningUrl } from './helpers/berth.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = process.env.BERTH_IMAGE ?? `localhost/berth:${VERSION}`;
const has = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

/** Why the test cannot run here, or undefined. */
function skipReason(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs Linux and root (a privileged container)';
  if (!has('podman', '--version'))
    return 'podman is not installed (apt-get install podman runc), so no container can be started from the image';
  if (!has('podman', 'image', 'exists', IMAGE))
    return `no image ${IMAGE}: build it with scripts/build-image.sh (about 9 minutes the first time; docs/image.md)`;
  return undefined;
}
const skip = skipReason();
if (skip) process.stdout.write(`# image test skipped: ${skip}\n`);

/** Starts `berth run --port 0 ARGS` in a privileged container of `image` and makes one tool call through it. */
async function serveOneCall(image: string, args: string[], expectLog: RegExp): Promise<void> {
  // runc where installed: crun refuses hosts whose cgroups are in hybrid mode. Low rlimits: podman's defaults may be
  // above what a nested host allows. --network host: berth listens on the host's loopback, as the test expects.
  const runtime = has('runc', '--version') ? ['--runtime', 'runc'] : [];
  const limits = ['--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=4096:4096'];
  assert.equal(
    execFileSync('podman', [...runtime, 'run', '--rm', ...limits, image, '--version'], { encoding: 'utf8' }).trim(),
    VERSION,
    'the image holds this version of berth',
  );
  const name = `berth-image-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const proc = spawn(
    'podman',
    [...runtime, 'run', '--rm', '--name', name, '--privileged', '--network', 'host', ...limits, image, 'run', '--port', '0', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    const url = await listeningUrl(proc, { timeoutMs: 150_000, what: 'berth in the container', context: () => err });
    assert.match(err, expectLog);
    const client = new Client({ name: 'image-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url)), { timeout: 120_000 });
    const r = await client.callTool({ name: 'session_info', arguments: {} });
    const text = (r.content as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('');
    assert.match(text, /^Session \S+, pid \d+, cwd \//);
    await client.close();
  } finally {
    spawnSync('podman', ['stop', '--time', '10', name], { stdio: 'ignore' });
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  }
}

test(`a container from ${IMAGE} serves a tool call (namespace sandbox inside)`, { skip, timeout: 180_000 }, async () => {
  await serveOneCall(IMAGE, [], /"isolation":"namespace"/);
});

const VM_IMAGE = `${IMAGE}-microvm`;
const vmSkip =
  skip ??
  (has('podman', 'image', 'exists', VM_IMAGE) ? undefined : `no image ${VM_IMAGE}: build it with scripts/build-image.sh --target microvm`);
if (vmSkip && !skip) process.stdout.write(`# microvm image test skipped: ${vmSkip}\n`);

test(
  `a container from ${VM_IMAGE} serves a tool call through a microVM (its guest kernel built into the image)`,
  { skip: vmSkip, timeout: 300_000 },
  async () => {
    await serveOneCall(VM_IMAGE, ['--isolation', 'microvm', '--warm-pool', '1'], /berth:port-open/);
  },
);
