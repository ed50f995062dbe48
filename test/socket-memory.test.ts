// A session's socket buffers count against its memory limit. The kernel keeps TCP's and UDP's buffers in one pool for
// the whole host (net.ipv4.tcp_mem, udp_mem), whichever network namespace a socket lives in; cgroup v2 charges them
// to the socket's memory cgroup, v1 only where the cgroup's kmem.tcp limit is set. A review's server, under v1 with a
// 2 GiB limit, queued 2,255 MiB in TCP connections over its own loopback (the host's TCP pool past tcp_mem's maximum:
// the host's own connections were reset, "TCP: out of memory") and 2.5 GB in UDP queues, with 46 MB charged to its
// cgroup. Now a session with --memory 256MiB holds about that much of each, and the host's pools grow by no more.
// Real berth, the hostile fixture's shell, Debian's python3 inside the sandbox. Skipped, with the reason, where the
// namespace driver cannot run or berth cannot set a memory limit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { memoryUnavailable } from '../src/sandbox/cgroups.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, shIn, type BerthProcess } from './helpers/berth.ts';

type Client = Awaited<ReturnType<typeof connect>>;
const LIMIT_MIB = 256;
const PAGE = 4096;

/** The host's pages in the TCP or UDP pool (/proc/net/sockstat's "mem", one count for every namespace). */
function poolPages(proto: 'TCP' | 'UDP'): number {
  const line = readFileSync('/proc/net/sockstat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${proto}:`));
  return Number(/ mem (\d+)/.exec(line ?? '')?.[1] ?? 0);
}

/**
 * Fills socket buffers on the sandbox's own loopback (TCP: connections whose receiver never reads; UDP: sockets no one
 * reads, sent datagrams), prints how many MiB were queued and "done", then holds them until ./stop exists (60 s at most).
 */
const FILL = `
import os, resource, socket, sys, time
proto = sys.argv[1]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = min(1000, (hard - 64) // 2)
held, queued, t0 = [], 0, time.time()
chunk = b'x' * 65000
if proto == 'TCP':
    ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1024)
    for i in range(n):
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        c.connect(ls.getsockname()); s, _ = ls.accept()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        c.setblocking(False)
        for _ in range(128):
            try: queued += c.send(chunk)
            except OSError: break
        held += [c, s]
        if time.time() - t0 > 40: break
else:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); tx.setblocking(False)
    for i in range(n):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        for _ in range(128):
            try: tx.sendto(chunk, r.getsockname())
            except OSError: break
        held.append(r)
        if time.time() - t0 > 40: break
    queued = sum(int(l.split()[4].split(':')[1], 16) for l in open('/proc/net/udp').readlines()[1:]) # rx_queue of each socket
print(len(held), 'sockets', queued >> 20, 'MiB', 'done', flush=True)
end = time.time() + 60
while time.time() < end and not os.path.exists('stop'): time.sleep(0.1)`;

const probe = await namespaceDriver.probe(ROOT);
const noMemory = memoryUnavailable();
const skip = !probe.ok
  ? `namespace driver unavailable here: ${probe.reason}`
  : noMemory
    ? `berth cannot set a memory limit here: ${noMemory}`
    : !existsSync('/usr/bin/python3')
      ? 'no /usr/bin/python3 to make the sockets inside the sandbox'
      : false;
if (skip) console.log(`# SKIP socket memory: ${skip}`);

describe('namespace: socket buffers count against the session’s memory limit', { skip, timeout: 300_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    const hostile = await compiledFixture('hostile-server');
    berth = await runBerth(['--isolation', 'namespace', '--network', 'none', '--warm-pool', '1', '--memory', `${LIMIT_MIB}MiB`], hostile);
  });
  after(() => berth?.stop());

  for (const proto of ['TCP', 'UDP'] as const) {
    test(`${proto}: a session queuing gigabytes on its own loopback holds about its ${LIMIT_MIB} MiB; the host's ${proto} pool grows by no more`, async () => {
      const a: Client = await connect(berth.url);
      const before = poolPages(proto);
      const wait = `n=0; while [ $n -lt 900 ] && ! grep -q done out; do sleep 0.1; n=$((n+1)); done; cat out`;
      const r = await shIn(
        a,
        `rm -f stop; cat > fill.py <<'EOF'\n${FILL}\nEOF\ntimeout 120 /usr/bin/python3 fill.py ${proto} > out 2>&1 &\n${wait}`,
      );
      const m = /(\d+) sockets (\d+) MiB done/.exec(r.stdout);
      assert.ok(m, `the filler's report: ${r.stdout}${r.stderr}`);
      const grown = ((poolPages(proto) - before) * PAGE) / 1048576;
      await shIn(a, 'touch stop');
      // Slack for what the kernel lets past a full counter (a charge it forces rather than drop a packet).
      assert.ok(Number(m[2]) < 2 * LIMIT_MIB, `queued ${m[2]} MiB in ${m[1]} sockets under a ${LIMIT_MIB} MiB limit`);
      assert.ok(grown < 2 * LIMIT_MIB, `the host's ${proto} pool grew by ${grown.toFixed(0)} MiB`);
      await a.transport.terminateSession();
      await a.client.close();
    });
  }
});
