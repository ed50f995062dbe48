// A first run outside the checkout: berth started in one directory, its server in another, default isolation. The
// sandbox shows the command's own files without flags (src/sandbox/command-files.ts); a command that cannot be
// found is refused at start, naming it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { listeningUrl, ROOT, textOf } from './helpers/berth.ts';
import { isRoot, which } from '../src/sandbox/host.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';

/** A dependency-free MCP server over stdio: one tool, `where`, answering the file it runs from. */
const TINY_SERVER = `import { createInterface } from 'node:readline';
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id === undefined) return;
  const result = { initialize: { protocolVersion: m.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'tiny', version: '1.0.0' } },
    'tools/list': { tools: [{ name: 'where', inputSchema: { type: 'object' } }] },
    'tools/call': { content: [{ type: 'text', text: import.meta.url }] }, ping: {} }[m.method];
  send(result ? { jsonrpc: '2.0', id: m.id, result } : { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } });
});
`;

const SETPRIV = which('setpriv');
const asUser = (uid: number) => [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--'];
/** Whether uid 65534 can run this checkout's berth (a checkout under a 0700 directory it cannot). */
const nobodyCanRun = () =>
  isRoot() &&
  !!SETPRIV &&
  spawnSync(SETPRIV, [
    ...asUser(65534),
    process.execPath,
    '-e',
    `require('fs').accessSync(${JSON.stringify(join(ROOT, 'dist/demo/server.js'))})`,
  ]).status === 0;

/** Calls the demo's note_list through the official SDK client: the demo's first session works end to end. */
async function demoAnswers(url: string): Promise<string> {
  const client = new Client({ name: 'first-run', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  try {
    return textOf(await client.callTool({ name: 'note_list', arguments: {} }));
  } finally {
    await transport.terminateSession();
    await client.close();
  }
}

let top: string;
before(() => {
  top = mkdtempSync(join(tmpdir(), 'berth-first-run-'));
  chmodSync(top, 0o755); // the sandbox uid (65534) must reach the server; a 0700 directory is refused at start
  mkdirSync(join(top, 'start'));
  mkdirSync(join(top, 'srv', 'lib'), { recursive: true });
  writeFileSync(join(top, 'srv', 'package.json'), '{"name":"tiny","type":"module"}');
  writeFileSync(join(top, 'srv', 'lib', 'server.js'), TINY_SERVER);
});
after(() => rmSync(top, { recursive: true, force: true }));

function berth(args: string[], o: { cwd?: string; as?: number; env?: Record<string, string> } = {}) {
  // As another user: setpriv drops root for the whole berth (uid and gid 65534, no supplementary groups).
  const [file, ...prefix] = o.as === undefined ? [process.execPath] : [SETPRIV!, ...asUser(o.as), process.execPath];
  const proc = spawn(file!, [...prefix, join(ROOT, 'bin/berth.js'), ...args], {
    cwd: o.cwd ?? join(top, 'start'),
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', r));
  return { proc, err: () => err, exited };
}

test('berth run of a server in a third directory works with default isolation and no --mount', async () => {
  const b = berth(['run', '--port', '0', '--', 'node', join(top, 'srv', 'lib', 'server.js')]);
  try {
    const url = await listeningUrl(b.proc, { timeoutMs: 30_000, context: b.err });
    const client = new Client({ name: 'first-run', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport);
    assert.equal(textOf(await client.callTool({ name: 'where', arguments: {} })), `file://${join(top, 'srv', 'lib', 'server.js')}`);
    await transport.terminateSession();
    await client.close();
  } finally {
    b.proc.kill('SIGTERM');
    await b.exited;
  }
});

test('a command that cannot be found is refused at start, naming it', async () => {
  const missing = join(top, 'nowhere', 'server');
  const b = berth(['run', '--port', '0', '--', missing]);
  const code = await b.exited;
  assert.notEqual(code, 0);
  assert.ok(b.err().includes(`no such file: ${missing}`), b.err());
});

test('a server that cannot start makes berth run exit non-zero with its reason and its last stderr lines, never "listening"', async () => {
  writeFileSync(
    join(top, 'srv', 'broken.mjs'),
    "console.error('loading settings'); console.error('fatal: no settings file'); process.exit(3);\n",
  );
  const b = berth(['run', '--port', '0', '--', 'node', join(top, 'srv', 'broken.mjs')]);
  let out = '';
  b.proc.stdout!.on('data', (d) => (out += d));
  const code = await b.exited;
  assert.equal(code, 1);
  assert.doesNotMatch(out, /listening/);
  assert.match(b.err(), /its server could not start: the server exited during start-up \(code 3/);
  assert.match(b.err(), /its last stderr lines:\n {2}loading settings\n {2}fatal: no settings file/);
});

test('a --mount that does not exist is refused at start, naming it', async () => {
  const b = berth(['run', '--port', '0', '--mount', join(top, 'absent'), '--', 'node', join(top, 'srv', 'lib', 'server.js')]);
  assert.notEqual(await b.exited, 0);
  assert.ok(b.err().includes(`the mount ${join(top, 'absent')} does not exist`), b.err());
});

/** `berth run` with no command serves the bundled demo, and its first session answers. */
async function demoServes(o: { cwd: string; as?: number; args?: string[]; logs?: RegExp }): Promise<void> {
  const b = berth(['run', '--port', '0', ...(o.args ?? [])], o);
  try {
    const url = await listeningUrl(b.proc, { timeoutMs: 60_000, context: b.err });
    assert.match(await demoAnswers(url), /No notes yet/);
    if (o.logs) assert.match(b.err(), o.logs);
  } finally {
    b.proc.kill('SIGTERM');
    await b.exited;
  }
}

test('the bundled demo (berth run, no command) answers when started in a directory other users cannot enter', async () => {
  // mkdtemp makes it 0700: a sandboxed server (uid 65534) cannot enter it, so the demo runs from its own directory.
  const closed = mkdtempSync(join(tmpdir(), 'berth-first-run-0700-'));
  try {
    await demoServes({ cwd: closed });
  } finally {
    rmSync(closed, { recursive: true, force: true });
  }
});

test(
  'the bundled demo answers when berth runs as a user other than root, with no flags (its network: none)',
  { skip: !nobodyCanRun() && 'needs root (to become uid 65534) and a checkout uid 65534 can read' },
  () => demoServes({ cwd: '/', as: 65534 }),
);

test(
  'as another user without a sandbox that brings its own network (isolation process), the demo runs on the host network, saying so',
  { skip: !nobodyCanRun() && 'needs root (to become uid 65534) and a checkout uid 65534 can read' },
  () =>
    demoServes({
      cwd: '/',
      as: 65534,
      args: ['--isolation', 'process'],
      logs: /the bundled demo server runs on the host network: network \\"none\\" needs root or a sandbox with a network of its own/,
    }),
);

/** berth's exit code, or (stopping it) that it listened: servers it would have run unsandboxed. */
async function exitOrListen(b: ReturnType<typeof berth>): Promise<number | null | string> {
  const listening = listeningUrl(b.proc, { timeoutMs: 60_000 }).then(() => 'listening (servers unsandboxed)');
  listening.catch(() => undefined);
  const outcome = await Promise.race([b.exited, listening]);
  if (outcome === 'listening (servers unsandboxed)') {
    b.proc.kill('SIGTERM');
    await b.exited;
  }
  return outcome;
}

test(
  'isolation auto started in a home of mode 0700 (as root in /root) is refused, not run unsandboxed as root',
  { skip: !(isRoot() && which('bwrap')) && 'needs root and bubblewrap' },
  async () => {
    // Before, the namespace canary failed in such a directory (its uid cannot enter it), and auto took that failure
    // as "no sandbox here": the servers ran as root without one (a newcomer's run from /root).
    const home = join(top, 'home');
    mkdirSync(home, { mode: 0o700 });
    const b = berth(['run', '--port', '0', '--', 'node', join(top, 'srv', 'lib', 'server.js')], { cwd: home, env: { HOME: home } });
    assert.equal(await exitOrListen(b), 2, b.err());
    assert.match(b.err(), /isolation auto: namespace could sandbox each session, but the runtime directory \S+ is the home directory/);
  },
);

test(
  'isolation auto started in /tmp is refused when a sandbox could run, instead of running servers unsandboxed',
  { skip: !(await namespaceDriver.probe(ROOT)).ok && 'the namespace driver cannot run here' },
  async () => {
    const b = berth(['run', '--port', '0', '--', 'node', join(top, 'srv', 'lib', 'server.js')], { cwd: tmpdir() });
    assert.equal(await exitOrListen(b), 2, b.err());
    assert.match(
      b.err(),
      /isolation auto: \w+ could sandbox each session, but the runtime directory \S+ contains \S+, where session directories live;.*--isolation process/,
    );
  },
);
