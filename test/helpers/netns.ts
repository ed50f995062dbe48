// Three (or more) network namespaces on one bridge, so each berth node has its own network stack and a partition
// is real: the host end of a node's veth set down blackholes it (no RST, packets vanish). Root only.
import { execFileSync, spawnSync } from 'node:child_process';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether `ip netns add` works here (root, iproute2, a kernel that allows it). */
export function netnsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = `bt-probe-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return false;
  spawnSync('ip', ['netns', 'del', probe]);
  return true;
}

export interface NetNode {
  ns: string;
  address: string;
  hostVeth: string;
}

export interface Net {
  /** The host's address on the bridge (Redis listens there). */
  hostAddress: string;
  nodes: NetNode[];
  /** The argv prefix that runs a command inside node i's namespace (ip netns exec execs in place: same pid). */
  exec(i: number): string[];
  partition(i: number): void;
  heal(i: number): void;
  cleanup(): void;
}

const made: Net[] = [];
process.on('exit', () => {
  for (const n of made) n.cleanup();
});

export function makeNet(count: number): Net {
  const tag = process.pid % 100000;
  const subnet = `10.231.${process.pid % 250}`;
  const bridge = `btbr${tag}`;
  const nodes: NetNode[] = Array.from({ length: count }, (_, i) => ({
    ns: `bt${tag}-${i}`,
    address: `${subnet}.${i + 2}`,
    hostVeth: `bt${tag}h${i}`,
  }));
  let cleaned = false;
  const net: Net = {
    hostAddress: `${subnet}.1`,
    nodes,
    exec: (i) => ['ip', 'netns', 'exec', nodes[i]!.ns],
    partition: (i) => ip('link', 'set', nodes[i]!.hostVeth, 'down'),
    heal: (i) => ip('link', 'set', nodes[i]!.hostVeth, 'up'),
    cleanup: () => {
      if (cleaned) return;
      cleaned = true;
      for (const n of nodes) {
        spawnSync('ip', ['netns', 'del', n.ns]);
        spawnSync('ip', ['link', 'del', n.hostVeth]);
      }
      spawnSync('ip', ['link', 'del', bridge]);
    },
  };
  made.push(net);
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `${net.hostAddress}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (const n of nodes) {
      const inner = `${n.hostVeth.slice(0, -2)}n${n.hostVeth.slice(-1)}`;
      ip('netns', 'add', n.ns);
      ip('link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', n.ns);
      ip('link', 'set', n.hostVeth, 'master', bridge);
      ip('link', 'set', n.hostVeth, 'up');
      ip('netns', 'exec', n.ns, 'ip', 'addr', 'add', `${n.address}/24`, 'dev', inner);
      ip('netns', 'exec', n.ns, 'ip', 'link', 'set', inner, 'up');
      ip('netns', 'exec', n.ns, 'ip', 'link', 'set', 'lo', 'up');
    }
  } catch (e) {
    net.cleanup();
    throw e;
  }
  return net;
}
