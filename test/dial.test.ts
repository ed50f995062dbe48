// sandbox/dial.ts: berth's connections into a session's network namespace, made there by a helper and handed over.
// A namespace of the test's own (root only) holds a TCP server; the host's loopback holds another on the same port,
// so a connection made in the wrong namespace answers differently.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { DIAL_UID, namespaceDialer, type NamespaceDialer } from '../src/sandbox/dial.ts';
import { netnsAvailable } from './helpers/netns.ts';

const skip = netnsAvailable() ? false : 'needs root and network namespaces';
const NS = `bt-dial-${process.pid}`;
const ENTER = ['nsenter', `--net=/var/run/netns/${NS}`, '--'];

/** Sends a line and reads what comes back until the peer ends. */
function exchange(s: Socket, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    s.on('data', (d) => (got += d));
    s.once('end', () => resolve(got));
    s.once('error', reject);
    s.end(line);
  });
}

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !probe();) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('connections into a session network (dial.ts)', { skip, timeout: 60_000 }, () => {
  let inside: ChildProcess;
  let hostTwin: Server;
  let port: number;
  let d: NamespaceDialer;
  before(async () => {
    spawnSync('ip', ['netns', 'add', NS]);
    spawnSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // The host's loopback first, on a free port; then the namespace's server on the same one.
    hostTwin = createServer((s) => s.end('host\n'));
    await new Promise<void>((r) => hostTwin.listen(0, '127.0.0.1', r));
    port = (hostTwin.address() as { port: number }).port;
    const script = `require('net').createServer((s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => s.end('namespace heard ' + b)); }).listen(${port}, '127.0.0.1', () => console.log('up'))`;
    inside = spawn(ENTER[0]!, [...ENTER.slice(1), process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      inside.stdout!.once('data', () => resolve());
      inside.once('exit', (c) => reject(new Error(`the namespace's server exited: ${c}`)));
    });
    d = await namespaceDialer(ENTER, port);
  });
  after(async () => {
    d?.close();
    inside?.kill('SIGKILL');
    hostTwin?.close();
    spawnSync('ip', ['netns', 'del', NS]);
  });

  test("a dialed socket reaches the namespace's server, not the host's twin on the same port", async () => {
    const answers = await Promise.all([1, 2, 3].map(async (i) => exchange(await d.dial(), `call ${i}`)));
    assert.deepEqual(answers, ['namespace heard call 1', 'namespace heard call 2', 'namespace heard call 3']);
  });

  test("the helper gets none of berth's environment (NODE_OPTIONS=--inspect would open a debugger inside the session's network)", async () => {
    const saved = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = '--inspect=127.0.0.1:0';
    let e: NamespaceDialer | undefined;
    try {
      e = await namespaceDialer(ENTER, port);
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved;
    }
    try {
      assert.match(
        readFileSync(`/proc/${e.pid}/cmdline`, 'utf8'),
        /^[^\0]*node\0/,
        'the helper itself (nsenter and setpriv exec it in place)',
      );
      const environ = readFileSync(`/proc/${e.pid}/environ`, 'utf8').split('\0').filter(Boolean);
      assert.deepEqual(
        environ.filter((kv) => !kv.startsWith('NODE_CHANNEL_')),
        [],
        `nothing but the IPC channel's own variables: ${environ.join(' ')}`,
      );
      assert.equal(await exchange(await e.dial(), 'clean'), 'namespace heard clean');
    } finally {
      e.close();
    }
  });

  test('a port nothing listens on in the namespace is refused, named, and the dialer goes on', async () => {
    const other = await namespaceDialer(ENTER, port === 65535 ? port - 1 : port + 1);
    try {
      await assert.rejects(other.dial(), /connect to \$PORT \d+ in the session's network: ECONNREFUSED/);
      await assert.rejects(other.dial(), /ECONNREFUSED/);
    } finally {
      other.close();
    }
    assert.equal(await exchange(await d.dial(), 'again'), 'namespace heard again');
  });

  test('a dialer whose helper died fails the dials it had in flight, saying so, and starts a new helper for the next', async () => {
    const dead = await namespaceDialer(ENTER, port);
    assert.equal(await exchange(await dead.dial(), 'x'), 'namespace heard x');
    const first = dead.pid!;
    process.kill(first, 'SIGKILL');
    await until('the helper gone', () => !existsSync(`/proc/${first}`));
    // Until berth sees the exit a dial may still fail on the closed channel; after it, a new helper answers.
    let answer: string | undefined;
    let last: Error | undefined;
    for (const deadline = Date.now() + 10_000; answer === undefined && Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
      answer = await dead.dial().then(
        (s) => exchange(s, 'again'),
        (e: Error) => void (last = e),
      );
    }
    assert.equal(answer, 'namespace heard again', `no new helper answered: ${last?.message}`);
    assert.notEqual(dead.pid, first, 'a new helper');
    if (last) assert.match(last.message, /the connection helper for \$PORT exited \(SIGKILL\)|channel closed/);
    dead.close();
    const closed = await namespaceDialer(ENTER, port);
    closed.close();
    await assert.rejects(closed.dial(), /the session network is closed/);
    await until('the closed dialer helper gone', () => !existsSync(`/proc/${closed.pid}`));
    assert.equal(await exchange(await d.dial(), 'still'), 'namespace heard still', 'another dialer is untouched');
  });

  test('the helper holds no privilege: its own uid (neither root nor the sandbox uid), no groups, no capabilities, no_new_privs, not dumpable', async () => {
    const status = readFileSync(`/proc/${d.pid}/status`, 'utf8');
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim();
    assert.equal(field('Uid'), `${DIAL_UID}\t${DIAL_UID}\t${DIAL_UID}\t${DIAL_UID}`);
    assert.equal(field('Gid'), `${DIAL_UID}\t${DIAL_UID}\t${DIAL_UID}\t${DIAL_UID}`);
    assert.equal(field('Groups'), '');
    for (const caps of ['CapPrm', 'CapEff', 'CapAmb', 'CapInh']) assert.equal(field(caps), '0000000000000000', caps);
    // The bounding set keeps only CAP_SETGID and CAP_SETUID (bits 6, 7), what its own drop needed: with no_new_privs
    // and no capabilities left, no exec can give them back.
    assert.equal(field('CapBnd'), '00000000000000c0');
    assert.equal(field('NoNewPrivs'), '1');
    // It changed uid itself, so it is not dumpable: another process of the same uid (another session's helper)
    // cannot ptrace it, read its memory or list and take its descriptors.
    const peer = spawnSync(
      'setpriv',
      ['--reuid', String(DIAL_UID), '--regid', String(DIAL_UID), '--clear-groups', 'ls', `/proc/${d.pid}/fd`],
      {
        encoding: 'utf8',
      },
    );
    assert.notEqual(peer.status, 0, `a process of the same uid listed its descriptors: ${peer.stdout}`);
    assert.match(peer.stderr, /Permission denied/);
    assert.equal(await exchange(await d.dial(), 'unprivileged'), 'namespace heard unprivileged');
  });
});
