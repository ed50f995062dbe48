// A first run outside the checkout: berth started in one directory, its server in another, default isolation. The
// sandbox shows the command's own files without flags (src/sandbox/command-files.ts); a command that cannot be
// found is refused at start, naming it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { listeningUrl, ROOT, textOf } from './helpers/berth.ts';

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

function berth(args: string[]) {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/berth.js'), ...args], {
    cwd: join(top, 'start'),
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
