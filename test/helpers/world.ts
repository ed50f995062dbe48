// A small world of network namespaces for the hostile-tenant tests, made by the test itself (root only):
//   host   where berth runs: its own loopback (berth's port, a host-loopback listener), a veth to the world
//          (198.51.100.2, default route) and a veth to the test process (10.232.X.2).
//   world  stands in for everything outside: 198.51.100.1 ("the internet") and, on the same interface, addresses
//          of private, shared and link-local ranges (10.99.0.1, 192.168.77.1, 100.64.0.1, 169.254.169.254: a
//          metadata service) — all served by one listener that answers "world". No packet leaves these namespaces.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export const INTERNET = '198.51.100.1';
export const BERTH_OUTSIDE = '198.51.100.2';
/**
 * Private, shared and link-local addresses the world answers on (as a cloud's metadata service or a LAN would), and
 * platform addresses outside those ranges (Azure's WireServer, 168.63.129.16; the benchmarking 198.18.0.0/15).
 */
export const PRIVATE_TARGETS = ['10.99.0.1', '192.168.77.1', '100.64.0.1', '169.254.169.254', '168.63.129.16', '198.18.0.1'];
export const WORLD_PORT = 80;

export interface World {
  /** Runs a command inside the host namespace (argv prefix; ip netns exec execs in place). */
  inHost: string[];
  /** The host namespace's address the test process reaches berth at. */
  berthAddress: string;
  /** Starts a TCP listener answering `reply` on the host namespace's 127.0.0.1 (a host service); resolves its port. */
  hostListener(reply: string): Promise<number>;
  cleanup(): void;
}

/** Why this machine cannot make the world (not root, no `ip netns`), or undefined. */
export function worldUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  const probe = `bw-probe-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return '`ip netns add` does not work here';
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

const LISTENER = (reply: string, port: number, host: string) =>
  `const s=require('net').createServer(c=>{c.on('error',()=>{});c.end(${JSON.stringify(reply)})});s.listen(${port},${JSON.stringify(host)},()=>console.log('port',s.address().port))`;

function listen(prefix: string[], reply: string, port: number, host: string, procs: ChildProcess[]): Promise<number> {
  const p = spawn(prefix[0]!, [...prefix.slice(1), process.execPath, '-e', LISTENER(reply, port, host)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (d) => {
      out += d;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    p.once('exit', (code) => reject(new Error(`listener exited (${code})`)));
  });
}

export async function makeWorld(): Promise<World> {
  const tag = `${process.pid % 100000}`;
  const host = `bwh${tag}`;
  const world = `bww${tag}`;
  const sub = `10.232.${process.pid % 250}`;
  const procs: ChildProcess[] = [];
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    for (const p of procs) p.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', host]);
    spawnSync('ip', ['netns', 'del', world]);
    spawnSync('ip', ['link', 'del', `bwt${tag}`]);
  };
  process.once('exit', cleanup);
  try {
    ip('netns', 'add', host);
    ip('netns', 'add', world);
    ip('link', 'add', `bwo${tag}`, 'type', 'veth', 'peer', 'name', `bwi${tag}`);
    ip('link', 'set', `bwo${tag}`, 'netns', world);
    ip('link', 'set', `bwi${tag}`, 'netns', host);
    ip('-n', world, 'addr', 'add', `${INTERNET}/24`, 'dev', `bwo${tag}`);
    for (const a of PRIVATE_TARGETS) ip('-n', world, 'addr', 'add', `${a}/32`, 'dev', `bwo${tag}`);
    ip('-n', host, 'addr', 'add', `${BERTH_OUTSIDE}/24`, 'dev', `bwi${tag}`);
    // The test process reaches berth over a veth of its own.
    ip('link', 'add', `bwt${tag}`, 'type', 'veth', 'peer', 'name', `bwb${tag}`);
    ip('link', 'set', `bwb${tag}`, 'netns', host);
    ip('addr', 'add', `${sub}.1/30`, 'dev', `bwt${tag}`);
    ip('-n', host, 'addr', 'add', `${sub}.2/30`, 'dev', `bwb${tag}`);
    for (const [ns, dev] of [
      [world, `bwo${tag}`],
      [host, `bwi${tag}`],
      [host, `bwb${tag}`],
      [world, 'lo'],
      [host, 'lo'],
    ] as const)
      ip('-n', ns, 'link', 'set', dev, 'up');
    ip('link', 'set', `bwt${tag}`, 'up');
    ip('-n', host, 'route', 'add', 'default', 'via', INTERNET);
    await listen(['ip', 'netns', 'exec', world], 'world', WORLD_PORT, '0.0.0.0', procs);
  } catch (e) {
    cleanup();
    throw e;
  }
  // nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup tree berth (and runsc) need.
  const inHost = ['nsenter', `--net=/var/run/netns/${host}`, '--'];
  return {
    inHost,
    berthAddress: `${sub}.2`,
    hostListener: (reply) => listen(inHost, reply, 0, '127.0.0.1', procs),
    cleanup,
  };
}
