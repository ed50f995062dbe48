// Hostile tenants, the disk: a server that writes without end (test/fixtures/hostile-server.ts `write`) gets ENOSPC
// at limits.disk, in its working directory and in /tmp, under each driver this machine runs; what it wrote lived
// in a tmpfs of that size, never on the host's disk, and berth's log says the cap was reached.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { processDriver } from '../src/sandbox/process.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, textOf } from './helpers/berth.ts';

const HOSTILE = await compiledFixture('hostile-server');
const CAP_MIB = 16;
const root = process.getuid?.() === 0;

for (const driver of [processDriver, namespaceDriver, gvisorDriver]) {
  const probe = await driver.probe(ROOT);
  // gVisor sizes its own tmpfs; the others need berth as root to mount one.
  const skip = !probe.ok
    ? `${driver.name} unavailable: ${probe.reason}`
    : !root && driver !== gvisorDriver
      ? 'limits.disk needs berth as root'
      : false;
  if (skip) console.log(`# SKIP ${driver.name} disk-cap test: ${skip}`);

  describe(`hostile tenants, disk (${driver.name})`, { skip }, () => {
    test(`a session writing past --disk ${CAP_MIB}MiB gets ENOSPC; the host's disk holds none of it`, async () => {
      const berth = await runBerth(['--isolation', driver.name, '--disk', `${CAP_MIB}MiB`, '--warm-pool', '1'], HOSTILE);
      const { client, transport } = await connect(berth.url);
      const call = async (name: string, args: Record<string, unknown>) =>
        JSON.parse(textOf(await client.callTool({ name, arguments: args })));
      try {
        const home = await call('write', { path: 'fill', mb: CAP_MIB * 4 });
        assert.equal(home.error, 'ENOSPC');
        assert.ok(home.writtenMiB <= CAP_MIB, `stopped at the cap (${home.writtenMiB} MiB)`);
        // The process driver isolates no filesystem: its server could write wherever berth's user can; only its
        // working directory is capped. The sandboxes' /tmp is their own.
        const isolated = driver !== processDriver;
        if (isolated) {
          const tmp = await call('write', { path: '/tmp/fill', mb: CAP_MIB * 4 });
          assert.equal(tmp.error, 'ENOSPC');
          assert.ok(tmp.writtenMiB <= CAP_MIB);
        }
        if (driver === namespaceDriver) {
          // bwrap's /dev and /dev/shm were tmpfs of half the host's memory, the server's to fill past the cap (a
          // review wrote 1.1 GB to /dev/shm under 1 GiB): /dev/shm is capped too, /dev read-only.
          const shm = await call('write', { path: '/dev/shm/fill', mb: CAP_MIB * 4 });
          assert.equal(shm.error, 'ENOSPC');
          assert.ok(shm.writtenMiB <= CAP_MIB, `/dev/shm stopped at the cap (${shm.writtenMiB} MiB)`);
          const dev = await call('write', { path: '/dev/fill', mb: 1 });
          assert.equal(dev.error, 'EROFS', JSON.stringify(dev));
        }
        const where = await call('sh', { cmd: `df -P .${isolated ? ' /tmp' : ''} | tail -n +2` });
        // Both are tmpfs of the cap's size (1K blocks), not the host's filesystem.
        for (const line of String(where.stdout).trim().split('\n')) assert.equal(Number(line.split(/\s+/)[1]), CAP_MIB * 1024, line);
        if (driver !== gvisorDriver) {
          // The host sees a tmpfs of that size where the session writes, and berth's log says it filled up.
          assert.ok(
            readFileSync('/proc/mounts', 'utf8')
              .split('\n')
              .some((m) => m.startsWith('tmpfs ') && m.includes(`size=${CAP_MIB * 1024}k`)),
          );
          for (const end = Date.now() + 15_000; !berth.logs().includes('writable space is full') && Date.now() < end;)
            await new Promise((r) => setTimeout(r, 100));
          assert.match(berth.logs(), /writable space is full \(limits\.disk = 16777216 bytes\)/);
        }
      } finally {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
        await berth.stop();
      }
    });
  });
}
