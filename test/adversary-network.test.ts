// Hostile tenants, the network: a malicious server (test/fixtures/hostile-server.ts) tries to reach what it should
// not — another session's HTTP server, berth's port, a service on the host's loopback, private and link-local
// addresses (a metadata service) — under each sandbox driver this machine runs. berth runs inside a network
// namespace the test makes (helpers/world.ts), whose "outside" is another namespace of the test's: no packet of
// these tests reaches any address of the real network.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledFixture, ensureMicrovmAssets } from './fixtures/slow-boot.ts';
import { listeningUrl, ROOT, textOf } from './helpers/berth.ts';
import { descendants } from './helpers/procs.ts';
import { BERTH_OUTSIDE, INTERNET, makeWorld, PRIVATE_TARGETS, WORLD_PORT, worldUnavailable, type World } from './helpers/world.ts';

// Bundled: tsx compiling at every server start would make each sandbox start seconds long (gVisor: many more).
const HOSTILE = await compiledFixture('hostile-server');
const chosen = process.env.BERTH_TEST_DRIVERS?.split(',');

const worldMissing = worldUnavailable();
if (worldMissing) console.log(`# SKIP hostile-tenant network tests: ${worldMissing}`);

interface Berth {
  url: string;
  port: number;
  pid: number;
  logs: () => string;
  stop: () => Promise<void>;
}

/** `berth run` inside the world's host namespace, listening on every address there (loopback included). */
async function berthIn(world: World, flags: string[], command = HOSTILE): Promise<Berth> {
  const argv = [
    ...world.inHost,
    process.execPath,
    'bin/berth.js',
    'run',
    '--host',
    '0.0.0.0',
    '--port',
    '0',
    '--dangerously-allow-unauthenticated',
    ...flags,
    '--',
    ...command,
  ];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  // berth prints its URL once its first server has started: a microVM boots under emulation here, two at once with
  // a warm pool, so it gets what its --startup-timeout allows (60 s was too short on a loaded CI machine).
  const printed = await listeningUrl(proc, { timeoutMs: flags.includes('microvm') ? 300_000 : 60_000, context: () => err });
  const port = Number(new URL(printed).port);
  const exited = new Promise((r) => proc.once('exit', r));
  return {
    url: `http://${world.berthAddress}:${port}/mcp`,
    port,
    pid: proc.pid!,
    logs: () => err,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

async function session(url: string) {
  const client = new Client({ name: 'adversary-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport, { timeout: 120_000 });
  const call = async (name: string, args: Record<string, unknown> = {}) =>
    textOf(await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 }));
  return { client, call, close: async () => (await transport.terminateSession().catch(() => undefined), await client.close()) };
}

/** A process's name, or '' once it is gone. */
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

const refused = /^error: (ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EACCES|EPERM|timeout)/;

ensureMicrovmAssets();

for (const driver of [namespaceDriver, gvisorDriver, microvmDriver]) {
  // A microVM boots under emulation here (seconds): it gets the two tests that matter most, and time to boot.
  const vm = driver === microvmDriver;
  const flags = ['--isolation', driver.name, ...(vm ? ['--startup-timeout', '180s'] : [])];
  const probe = worldMissing ? undefined : await driver.probe(ROOT);
  const skip =
    worldMissing ??
    (chosen && !chosen.includes(driver.name)
      ? `${driver.name} not in BERTH_TEST_DRIVERS`
      : probe && !probe.ok
        ? `${driver.name} unavailable: ${probe.reason}`
        : false);
  if (skip && !worldMissing) console.log(`# SKIP ${driver.name} hostile-tenant network tests: ${skip}`);

  describe(`hostile tenants, network (${driver.name})`, { skip }, () => {
    let world: World;
    let hostService: number;
    before(async () => {
      world = await makeWorld();
      hostService = await world.hostListener('host-only service');
    });
    after(() => world?.cleanup());

    test('egress (the default): the internet answers; berth, the host loopback, private and link-local addresses do not', async () => {
      const berth = await berthIn(world, flags);
      const s = await session(berth.url);
      try {
        assert.equal(
          await s.call('connect', { host: INTERNET, port: WORLD_PORT, send: 'hi' }),
          'connected: world',
          'the stand-in internet is reachable',
        );
        for (const host of PRIVATE_TARGETS)
          assert.match(await s.call('connect', { host, port: WORLD_PORT }), refused, `${host} is unreachable`);
        for (const [host, port] of [
          ['127.0.0.1', berth.port],
          ['127.0.0.1', hostService],
          ['10.0.2.2', berth.port],
          ['10.0.2.2', hostService],
          [BERTH_OUTSIDE, berth.port],
          [world.berthAddress, berth.port],
        ] as const) {
          assert.match(await s.call('connect', { host, port }), refused, `${host}:${port} is unreachable`);
        }
        const listeners = JSON.parse(await s.call('listeners')) as number[];
        assert.ok(
          !listeners.includes(berth.port) && !listeners.includes(hostService),
          `the sandbox's /proc/net/tcp shows no host listener: ${listeners}`,
        );
        // What parses the server's packets, slirp4netns, holds no capability but binding low ports, in a mount
        // namespace of its own (--enable-sandbox): it used to run as root with every capability, in the host's.
        const slirps = vm ? [] : descendants(berth.pid).filter((p) => comm(p) === 'slirp4netns');
        if (!vm) assert.ok(slirps.length > 0, 'a slirp4netns serves the session');
        for (const p of slirps) {
          const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))![1]}`);
          assert.equal(capEff & ~0x400n, 0n, `slirp4netns ${p} keeps capabilities ${capEff.toString(16)}`);
          assert.notEqual(
            readlinkSync(`/proc/${p}/ns/mnt`),
            readlinkSync(`/proc/${berth.pid}/ns/mnt`),
            'slirp4netns has its own mount namespace',
          );
        }
      } finally {
        await s.close();
        await berth.stop();
      }
    });

    test(
      '--allow-net opens exactly what it names',
      { skip: vm && 'microVM: QEMU adds a NAT of its own in front (its 10.0.2.2 is the namespace, not the host)' },
      async () => {
        const berth = await berthIn(world, [
          ...flags,
          '--allow-net',
          `${PRIVATE_TARGETS[0]}:${WORLD_PORT}`,
          '--allow-net',
          `127.0.0.1:${hostService}`,
        ]);
        const s = await session(berth.url);
        try {
          assert.equal(await s.call('connect', { host: PRIVATE_TARGETS[0]!, port: WORLD_PORT, send: 'hi' }), 'connected: world');
          assert.equal(
            await s.call('connect', { host: '10.0.2.2', port: hostService, send: 'hi' }),
            'connected: host-only service',
            "the host's loopback port, at slirp's gateway",
          );
          assert.match(
            await s.call('connect', { host: '10.0.2.2', port: berth.port }),
            refused,
            "another port of the host's loopback stays shut",
          );
          assert.match(await s.call('connect', { host: PRIVATE_TARGETS[3]!, port: WORLD_PORT }), refused);
        } finally {
          await s.close();
          await berth.stop();
        }
      },
    );

    test(
      'none: not even the internet',
      { skip: vm && 'microVM: no NIC at all with network none (covered by isolation.test.ts)' },
      async () => {
        const berth = await berthIn(world, [...flags, '--network', 'none']);
        const s = await session(berth.url);
        try {
          assert.match(await s.call('connect', { host: INTERNET, port: WORLD_PORT }), refused);
          assert.match(await s.call('connect', { host: '127.0.0.1', port: hostService }), refused);
        } finally {
          await s.close();
          await berth.stop();
        }
      },
    );

    test("http upstream: a session cannot find or reach another session's server; nor can the host's loopback", async () => {
      const berth = await berthIn(world, [...flags, '--upstream', 'http', '--warm-pool', '2'], [...HOSTILE, '--http']);
      const a = await session(berth.url);
      const b = await session(berth.url);
      try {
        const aPort = Number(JSON.parse(await a.call('whoami')).port);
        const bPort = Number(JSON.parse(await b.call('whoami')).port);
        assert.deepEqual(JSON.parse(await b.call('listeners')), [bPort], 'B sees only its own listener');
        assert.match(await b.call('connect', { host: '127.0.0.1', port: aPort }), refused, "B cannot connect to A's server");
        assert.match(await b.call('connect', { host: '127.0.0.1', port: berth.port }), refused, "B cannot connect to berth's port");
        // A connect scan of the well-known ports and of those around A's finds B's own server only.
        const around = { from: Math.max(1025, aPort - 1000), to: Math.min(65535, aPort + 1000) };
        const found = [
          ...JSON.parse(await b.call('scan', { host: '127.0.0.1', from: 1, to: 1024 })),
          ...JSON.parse(await b.call('scan', { host: '127.0.0.1', ...around })),
        ];
        assert.deepEqual(found, bPort >= around.from && bPort <= around.to ? [bPort] : []);
        // A host process (here: one in berth's own network namespace) finds no server port either.
        const probe = spawnSync(world.inHost[0]!, [
          ...world.inHost.slice(1),
          process.execPath,
          '-e',
          `require('net').connect(${aPort},'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(3))`,
        ]);
        assert.equal(probe.status, 3, "A's port is not open on the host's loopback");
        assert.equal(JSON.parse(await a.call('whoami')).port, String(aPort), 'A still works');
      } finally {
        await Promise.all([a.close(), b.close()]);
        await berth.stop();
      }
    });
  });
}
