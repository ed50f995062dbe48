// The sandboxing drivers (namespace = bubblewrap, gvisor = runsc, microvm = QEMU): real sandboxes, the official SDK client,
// the probe server's sandbox tools. A driver this host cannot run is skipped with its reason printed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { hostName } from '../src/sandbox/host.ts';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledProbe, ensureMicrovmAssets, warm } from './fixtures/slow-boot.ts';
import { connect, PROBE, ROOT, runBerth, textOf, type BerthProcess } from './helpers/berth.ts';

// BERTH_TEST_DRIVERS=gvisor,microvm runs only those drivers' suites (a microVM boot under TCG takes a while).
const chosen = process.env.BERTH_TEST_DRIVERS?.split(',');
const availability = async (d: typeof namespaceDriver) => {
  if (chosen && !chosen.includes(d.name)) return `${d.name} not in BERTH_TEST_DRIVERS`;
  const p = await d.probe(ROOT);
  if (!p.ok) console.log(`# SKIP ${d.name} tests: ${p.reason}`);
  return p.ok ? false : `${d.name} driver unavailable here: ${p.reason}`;
};

const call = async (c: Awaited<ReturnType<typeof connect>>, name: string, args: Record<string, unknown> = {}) =>
  textOf(await c.client.callTool({ name, arguments: args }));

ensureMicrovmAssets();

/** A berth with warm sandboxes, and a port listening on the host's loopback, for the tests of one describe. */
function sandboxed(flags: string[], command: string[]): { berth: BerthProcess; port: number } {
  const env = { berth: undefined as unknown as BerthProcess, port: 0 };
  let hostPort: Server;
  before(async () => {
    env.berth = await runBerth(flags, command);
    await warm(env.berth.url, 2);
    hostPort = createServer((s) => s.end()).listen(0, '127.0.0.1');
    await new Promise((r) => hostPort.once('listening', r));
    env.port = (hostPort.address() as { port: number }).port;
  });
  after(async () => {
    hostPort.close();
    await env.berth.stop();
  });
  return env;
}

const DRIVERS = { namespace: namespaceDriver, gvisor: gvisorDriver, microvm: microvmDriver };
for (const driver of ['namespace', 'gvisor', 'microvm'] as const) {
  const skip = await availability(DRIVERS[driver]);
  // Under emulation a microVM's node server takes a while to come up.
  // A microVM boots under emulation here (tens of seconds on a loaded machine): a session's start may wait behind
  // two others' boots for longer than the 10 s default start queue (seen in CI: 503 after 10 s).
  const net = driver === 'microvm' ? ['--startup-timeout', '180s', '--start-queue-timeout', '180s'] : [];
  // In a microVM, "host network" is QEMU's user-mode NAT: the host's loopback is 10.0.2.2.
  const hostLoopback = driver === 'microvm' ? '10.0.2.2' : '127.0.0.1';
  const command = driver === 'microvm' && !skip ? await compiledProbe() : PROBE;

  describe(`${driver} isolation`, { skip }, () => {
    const env = sandboxed(['--isolation', driver, ...net, '--warm-pool', '2'], command);

    test('files a session writes, beside its code or in its own directory, are invisible to other sessions and never reach the host', async () => {
      const a = await connect(env.berth.url);
      const b = await connect(env.berth.url);
      const beside = `${ROOT}/written-by-sandbox-${Date.now()}.txt`;
      // Beside the code: lands in the session's own layer over the runtime directory (a host overlay for
      // namespace, gVisor's in-memory overlay, a tmpfs overlay in the guest for microvm).
      assert.equal(await call(a, 'fs', { op: 'write', path: beside, content: 'A' }), 'written');
      assert.equal(await call(a, 'fs', { op: 'read', path: beside }), 'A');
      assert.equal(await call(b, 'fs', { op: 'exists', path: beside }), 'false');
      assert.equal(existsSync(beside), false, 'no write reaches the host');
      if (driver === 'microvm') {
        // The driver bundled the server and the guest put the bundle beside it: in the VM's overlay only.
        const bundle = `${ROOT}/test/.build/.berth-bundle-probe-server.mjs`;
        assert.equal(await call(a, 'fs', { op: 'exists', path: bundle }), 'true');
        assert.equal(existsSync(bundle), false);
      }
      // The code itself is still there, and a file only its (host root) owner may read stays unreadable.
      assert.equal(await call(a, 'fs', { op: 'exists', path: `${ROOT}/package.json` }), 'true');
      const secret = `${ROOT}/.secret-${Date.now()}`;
      writeFileSync(secret, 'host secret', { mode: 0o600 });
      try {
        assert.match(await call(a, 'fs', { op: 'read', path: secret }), /^error: (EACCES|EPERM)$/);
      } finally {
        rmSync(secret);
      }
      // In its working directory: private, and owned by the sandbox uid, never host root.
      const wa = JSON.parse(await call(a, 'whoami'));
      await call(a, 'fs', { op: 'write', path: 'own.txt', content: 'mine' });
      assert.equal(await call(b, 'fs', { op: 'exists', path: `${wa.cwd}/own.txt` }), 'false');
      // namespace without a disk cap: on the host, owned by the sandbox uid; with one (limits.disk, as root): in the
      // session's own tmpfs; gvisor: only in the sandbox's memory.
      if (existsSync(`${wa.cwd}/own.txt`))
        assert.notEqual(statSync(`${wa.cwd}/own.txt`).uid, 0, 'created files are not owned by host root');
      else assert.ok(driver === 'gvisor' || process.getuid?.() === 0);
      await a.transport.terminateSession();
      await b.transport.terminateSession();
      await Promise.all([a.client.close(), b.client.close()]);
    });

    test('host /tmp, the host home and other host paths are not visible; /usr is read-only', async () => {
      const c = await connect(env.berth.url);
      const own = JSON.parse(await call(c, 'whoami'))
        .cwd.split('/')
        .pop();
      // Its own working directory is mounted there, and the runtime directory (this checkout) at its own path when it
      // lives under /tmp or /root; nothing else of the host's is.
      const runtimeDirIn = (dir: string) => (f: string) => `${ROOT}/`.startsWith(`${dir}/${f}/`);
      const tmp = JSON.parse(await call(c, 'fs', { op: 'list', path: '/tmp' })).filter(
        (f: string) => f !== own && !runtimeDirIn('/tmp')(f),
      );
      const hostTmp = readdirSync('/tmp');
      assert.ok(hostTmp.length > 0);
      assert.ok(!tmp.some((f: string) => hostTmp.includes(f)), `sandbox /tmp shows host files: ${tmp}`);
      // The host home is not there (a guest kernel makes an empty /root of its own).
      const hostHome = readdirSync('/root');
      const home = await call(c, 'fs', { op: 'list', path: '/root' });
      assert.ok(
        home.startsWith('error:') || !JSON.parse(home).some((f: string) => hostHome.includes(f) && !runtimeDirIn('/root')(f)),
        `sandbox /root: ${home}`,
      );
      assert.equal(await call(c, 'fs', { op: 'exists', path: '/work/.library' }), 'false');
      assert.match(await call(c, 'fs', { op: 'write', path: '/usr/berth-test', content: 'x' }), /error: (EROFS|EACCES)/);
      // The chosen /etc files are there (TLS certificates for servers that call APIs).
      for (const f of ['/etc/ssl/certs/ca-certificates.crt', '/etc/passwd'])
        if (existsSync(f)) assert.equal(await call(c, 'fs', { op: 'exists', path: f }), 'true', f);
      await c.transport.terminateSession();
      await c.client.close();
    });

    test('a session sees only its own processes', async () => {
      const c = await connect(env.berth.url);
      const pids = JSON.parse(await call(c, 'pids'));
      if (driver === 'microvm') {
        // Its own kernel: the guest's kernel threads, its init and the server; nothing of the host.
        assert.ok(!pids.includes(String(env.berth.proc.pid)) || JSON.parse(await call(c, 'whoami')).pid < 1000, `guest pids ${pids}`);
        assert.equal(
          (await call(c, 'fs', { op: 'exists', path: `/proc/${env.berth.proc.pid}/cmdline` })) === 'true' && pids.length > 500,
          false,
        );
      } else {
        assert.ok(pids.length <= 4, `sandbox sees pids ${pids}`);
        assert.equal(JSON.parse(await call(c, 'whoami')).pid <= 3, true);
      }
      await c.transport.terminateSession();
      await c.client.close();
    });

    test('with the default network (egress) a session cannot reach the host loopback', async () => {
      const c = await connect(env.berth.url);
      assert.match(
        await call(c, 'connect', { port: env.port, host: hostLoopback }),
        /^error: (ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|timeout)/,
      );
      await c.transport.terminateSession();
      await c.client.close();
    });

    test('after DELETE nothing of the session is left on the host', async () => {
      const c = await connect(env.berth.url);
      const w = JSON.parse(await call(c, 'whoami'));
      // The session's host processes: bwrap binds its working directory, runsc names the container after it.
      const marks = [`--chdir\0${w.cwd}\0`, hostName(w.session), `path=${w.cwd},`];
      const hostPids = readdirSync('/proc').filter(
        (p) =>
          /^\d+$/.test(p) &&
          (() => {
            try {
              const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
              return marks.some((m) => cmd.includes(m));
            } catch {
              return false;
            }
          })(),
      );
      assert.ok(hostPids.length > 0, 'found the session processes on the host');
      const overlay = /--bind\0(\/[^\0]*\/merged)\0/.exec(readFileSync(`/proc/${hostPids[0]}/cmdline`, 'utf8'))?.[1];
      const cgroups = () =>
        ['memory', 'pids', 'cpu'].flatMap((ctl) =>
          existsSync(`/sys/fs/cgroup/${ctl}/berth`) ? readdirSync(`/sys/fs/cgroup/${ctl}/berth`) : [],
        );
      await c.transport.terminateSession();
      await c.client.close();
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(existsSync(w.cwd), false, 'working directory removed');
      const alive = (p: string) => {
        try {
          return !/^\d+ \([^)]*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8')); // a zombie holds nothing
        } catch {
          return false;
        }
      };
      for (const p of hostPids) assert.equal(alive(p), false, `process ${p} is gone`);
      if (overlay) {
        assert.ok(!readFileSync('/proc/mounts', 'utf8').includes(overlay), 'overlay unmounted');
        assert.equal(existsSync(overlay), false, 'overlay scratch removed');
      }
      assert.ok(!cgroups().includes(hostName(w.session)), 'cgroup removed');
      assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(w.session), 'the session id is not in host-visible names');
    });
  });

  describe(`${driver}: network none and memory limits`, { skip }, () => {
    const env = sandboxed(['--isolation', driver, ...net, '--network', 'none', '--memory', '256m', '--warm-pool', '2'], command);

    test('with --network none a session cannot reach a port on the host loopback', async () => {
      const c = await connect(env.berth.url);
      assert.match(await call(c, 'connect', { port: env.port }), /^error: (ECONNREFUSED|ENETUNREACH|timeout)/);
      await c.transport.terminateSession();
      await c.client.close();
    });

    test('a session over its memory limit dies alone with an out-of-memory error; others go on', async () => {
      const victim = await connect(env.berth.url);
      const other = await connect(env.berth.url);
      const err = await victim.client.callTool({ name: 'alloc', arguments: { mb: 1024 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, 'the allocating call failed');
      assert.match(String(err), /out of memory/);
      const r = await fetch(env.berth.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': victim.transport.sessionId!,
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      assert.equal(r.status, 404);
      assert.equal(await call(other, 'echo', { text: 'alive' }), 'alive');
      // berth's log reaches this process through a pipe, a moment after the answers: wait for the line.
      for (const end = Date.now() + 5000; !/"reason":"oom"/.test(env.berth.logs()) && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 50));
      assert.match(env.berth.logs(), /"reason":"oom"/);
      await other.transport.terminateSession();
      await Promise.all([victim.client.close(), other.client.close()]);
    });
  });
}
