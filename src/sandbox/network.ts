// A network of its own for every session (root only): a named network namespace per sandbox that the drivers run
// their process in (nsenter), so no session shares a network stack with the host, berth or another session.
//   none    only the namespace's own loopback.
//   egress  plus a user-mode network stack (slirp4netns) for outbound connections, which are made from berth's
//           network namespace as if by berth; an nftables ruleset inside the session's namespace (where the
//           server, uid 65534 with no capabilities, cannot change it) rejects the host's loopback, every private,
//           shared and link-local range, and berth's own addresses, unless listed in allowNet.
//   host    no namespace: the host's network, as any process of berth's user has.
// An http upstream's server listens on $PORT inside the namespace; berth reaches it over connections a helper of
// its own opens there and hands over (dial.ts): no listener outside the namespace, so no other session and no host
// process can reach the server.
// Threat model: the server may run any code as uid 65534 inside its sandbox. What it may reach is the rule set
// below; everything it reaches goes through slirp4netns, which runs with seccomp, in its own mount namespace and
// pivoted root, with no capabilities left (--enable-sandbox).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { namespaceDialer, type Dial, type NamespaceDialer } from './dial.js';
import { isRoot, run, which } from './host.js';
import { track } from './registry.js';
import type { AllowRule, NetworkMode } from './driver.js';

export type { AllowRule, NetworkMode };

/**
 * Ranges a session never reaches in egress mode unless allowNet names them: the host's loopback, private, shared
 * (CGNAT, where Alibaba's metadata lives) and link-local ranges (169.254.169.254), multicast and reserved space, the
 * IETF's 192.0.0.0/24 and the benchmarking 198.18.0.0/15 (both used inside clouds and labs), and Azure's WireServer
 * (168.63.129.16, a platform endpoint on a public address). IPv6: loopback, unspecified, IPv4-mapped, unique-local
 * (AWS's IPv6 metadata, fd00:ec2::254), link-local, multicast, and the NAT64 and 6to4 prefixes, through which an
 * IPv6 address can name any IPv4 one, private ones included.
 */
export const BLOCKED_V4 = [
  '127.0.0.0/8',
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '168.63.129.16/32',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
export const BLOCKED_V6 = [
  '::1/128',
  '::/128',
  '::ffff:0:0/96',
  '64:ff9b::/96',
  '64:ff9b:1::/48',
  '2002::/16',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
];

/** slirp4netns's fixed addresses inside the namespace: the gateway (the host's loopback, when allowed) and DNS. */
const GATEWAY = '10.0.2.2';
const DNS = '10.0.2.3';

export interface SessionNetwork {
  /** The argv prefix that runs a command inside this network ([] for host). */
  readonly enter: string[];
  /** The namespace's name under /var/run/netns, or undefined for host. */
  readonly name: string | undefined;
  /** A resolv.conf to show the sandbox instead of the host's (egress: slirp4netns's DNS forwarder). */
  readonly resolvConf: string | undefined;
  /**
   * Its helpers' pids (slirp4netns), for the session's cgroup to take in: what a server makes slirp hold (its memory
   * per connection, ~165 KB; a review's 2,800 connections made it 462 MB) counts against the session's limits, not
   * berth's (slirp ran in berth's own cgroup).
   */
  readonly helperPids: readonly number[];
  /** Opens connections to 127.0.0.1:port inside the namespace, for berth alone (dial.ts). */
  dialer(port: number): Promise<Dial>;
  close(): Promise<void>;
}

/** Parses allowNet entries, resolving host names once; throws naming the entry that is not one. */
export async function parseAllow(entries: readonly string[]): Promise<AllowRule[]> {
  const out: AllowRule[] = [];
  for (const e of entries) {
    const cidr = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(e);
    if (cidr && isIP(cidr[1]!)) {
      out.push({ cidr: e, family: isIP(cidr[1]!) as 4 | 6 });
      continue;
    }
    if (isIP(e)) {
      out.push({ cidr: `${e}/${isIP(e) === 4 ? 32 : 128}`, family: isIP(e) as 4 | 6 });
      continue;
    }
    const hp = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(e);
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535)
      throw new Error(`allowNet entry "${e}" is neither a CIDR (10.1.0.0/16), an address, nor HOST:PORT (db.internal:5432)`);
    const addrs = isIP(hp[1]!)
      ? [{ address: hp[1]!, family: isIP(hp[1]!) }]
      : await lookup(hp[1]!, { all: true }).catch((err: Error) => {
          throw new Error(`allowNet entry "${e}": cannot resolve ${hp[1]}: ${err.message}`);
        });
    for (const a of addrs) out.push({ cidr: `${a.address}/${a.family === 4 ? 32 : 128}`, port: Number(hp[2]), family: a.family as 4 | 6 });
  }
  return out;
}

/** berth's own addresses on every interface: a session must not reach berth (or the host) by its public address. */
function ownAddresses(): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(`${a.address}/32`);
      else v6.push(`${a.address.split('%')[0]}/128`);
    }
  }
  return { v4, v6 };
}

const hostLoopback = (r: AllowRule) => r.family === 4 && r.cidr.startsWith('127.');

/** The nftables ruleset for an egress namespace (output hook: everything the sandbox sends). */
export function egressRules(allow: readonly AllowRule[]): string {
  const own = ownAddresses();
  const accept = allow.map((r) => {
    // The host's loopback is reached at slirp4netns's gateway address, never as 127.x (that is the session's own).
    const dst = hostLoopback(r) ? `${GATEWAY}/32` : r.cidr;
    return `    ${r.family === 4 ? 'ip' : 'ip6'} daddr ${dst}${r.port ? ` tcp dport ${r.port}` : ''} accept`;
  });
  return [
    'table inet berth {',
    '  chain out {',
    '    type filter hook output priority 0; policy accept;',
    '    oif "lo" accept',
    `    ip daddr ${DNS} udp dport 53 accept`,
    `    ip daddr ${DNS} tcp dport 53 accept`,
    ...accept,
    `    ip daddr { ${[...BLOCKED_V4, ...own.v4].join(', ')} } reject with icmp type admin-prohibited`,
    `    ip6 daddr { ${[...BLOCKED_V6, ...own.v6].join(', ')} } reject with icmpv6 type admin-prohibited`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Why this host cannot give sessions the mode, or undefined when it can. */
export function networkUnavailable(mode: NetworkMode): string | undefined {
  if (mode === 'host') return undefined;
  if (!isRoot())
    return `network "${mode}" needs berth to run as root (it makes a network namespace per session); run as root, or choose ${mode === 'egress' ? "network: none (--network none: under the namespace driver, the session's own loopback only) or " : ''}network: host (--network host)`;
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['nsenter', 'util-linux'],
    ['setpriv', 'util-linux'],
    ...(mode === 'egress'
      ? [
          ['unshare', 'util-linux'],
          ['slirp4netns', 'slirp4netns'],
          ['nft', 'nftables'],
        ]
      : []),
  ] as const) {
    if (!which(tool)) return `network "${mode}" needs ${tool} (apt-get install ${pkg})`;
  }
  return undefined;
}

/** The namespace name for a session: not the session id (world-visible under /var/run/netns). */
export function netnsName(sessionId: string): string {
  return `berth-${createHash('sha256').update(`net:${sessionId}`).digest('hex').slice(0, 16)}`;
}

/** A tool's absolute path (networkUnavailable checked they exist), so berth's own PATH does not matter. */
const tool = (name: string) => which(name) ?? name;

/** A helper process that dies with berth (pdeathsig) and is killed on close. */
function helper(argv: string[], stdio: Array<'ignore' | 'pipe'>): ChildProcess {
  const p = spawn(tool('setpriv'), ['--pdeathsig', 'KILL', '--', ...argv], { stdio });
  p.on('error', () => undefined);
  return p;
}

async function must(file: string, args: string[], what: string, input?: string): Promise<void> {
  const r = await run(file, args, input);
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

/** Waits for slirp4netns's ready byte on its fd 3, or its exit. */
function slirpReady(p: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let err = '';
    (p.stderr as Readable).on('data', (d) => (err += d));
    const timer = setTimeout(() => reject(new Error(`slirp4netns was not ready within ${timeoutMs} ms: ${err.trim()}`)), timeoutMs);
    (p.stdio[3] as Readable).once('data', () => (clearTimeout(timer), resolve()));
    p.once('exit', (code) => (clearTimeout(timer), reject(new Error(`slirp4netns exited (${code}): ${err.trim()}`))));
  });
}

/** Stops a helper and waits until it is gone. */
async function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
}

const HOST_NETWORK: SessionNetwork = {
  enter: [],
  name: undefined,
  resolvConf: undefined,
  helperPids: [],
  dialer: () => Promise.reject(new Error('network host: no namespace to dial into')),
  close: async () => undefined,
};

export interface NetworkOptions {
  mode: NetworkMode;
  allow: readonly AllowRule[];
  sessionId: string;
}

/** Makes the session's network; close() removes every part of it. */
export async function openNetwork(o: NetworkOptions): Promise<SessionNetwork> {
  if (o.mode === 'host') return HOST_NETWORK;
  const why = networkUnavailable(o.mode);
  if (why) throw new Error(why);
  const name = netnsName(o.sessionId);
  const path = `/var/run/netns/${name}`;
  const helpers: ChildProcess[] = [];
  const dialers: NamespaceDialer[] = [];
  // resolv.conf must be readable by the sandbox uid (0711 dir, 0644 file).
  const scratch = await mkdtemp(join(tmpdir(), 'berth-net-'));
  chmodSync(scratch, 0o711);
  // Recorded before the namespace is made, on its own: a berth killed at any point after this (SIGKILL, OOM) leaves
  // the namespace and the directory to the next berth's sweep (its helpers die with it: pdeathsig).
  const record = track(`net-${name}`, { driver: 'network', mounts: [], dirs: [scratch], netns: [name] });
  const close = async () => {
    for (const d of dialers) d.close();
    await Promise.all(helpers.map(kill));
    await run(tool('ip'), ['netns', 'del', name]);
    await rm(scratch, { recursive: true, force: true });
    record.drop();
  };
  try {
    await must(tool('ip'), ['netns', 'add', name], `making network namespace ${name}`);
    await must(tool('ip'), ['-n', name, 'link', 'set', 'lo', 'up'], 'bringing up its loopback');
    let resolvConf: string | undefined;
    if (o.mode === 'egress') {
      // Rules first: nothing may leave before they hold.
      await must(tool('nsenter'), [`--net=${path}`, '--', tool('nft'), '-f', '-'], 'loading the egress rules', egressRules(o.allow));
      const loopbackAllowed = o.allow.some(hostLoopback);
      const slirp = helper(
        [
          // A mount namespace of its own first, a slave of the host's: slirp4netns's sandbox (below) unmounts what
          // it does not need, and from a namespace that shares the host's mounts those unmounts would reach the
          // host's, /run/netns among them (every session's network would vanish from under nsenter).
          tool('unshare'),
          '--mount',
          '--propagation',
          'slave',
          tool('slirp4netns'),
          '--configure',
          '--mtu=65520',
          '--ready-fd=3',
          '--enable-seccomp',
          // Its own mount namespace, pivoted into an empty root, with every capability dropped: libslirp parses
          // the packets a hostile server crafts, and would otherwise do so as root with all of root's capabilities.
          '--enable-sandbox',
          ...(loopbackAllowed ? [] : ['--disable-host-loopback']),
          '--netns-type=path',
          path,
          'tap0',
        ],
        ['ignore', 'ignore', 'pipe', 'pipe'],
      );
      helpers.push(slirp);
      await slirpReady(slirp, 10_000);
      resolvConf = join(scratch, 'resolv.conf');
      writeFileSync(resolvConf, `nameserver ${DNS}\n`, { mode: 0o644 });
    }
    return {
      enter: [tool('nsenter'), `--net=${path}`, '--'],
      name,
      resolvConf,
      helperPids: helpers.flatMap((h) => (h.pid ? [h.pid] : [])),
      async dialer(port) {
        const d = await namespaceDialer([tool('nsenter'), `--net=${path}`, '--'], port, [tool('setpriv'), '--pdeathsig', 'KILL', '--']);
        dialers.push(d);
        return d.dial;
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Runs what a driver does between making the session's network and handing it to startChild (which owns it from
 * then on, closing it on its own failures): a step that throws removes the network at once, rather than leaving the
 * namespace to the next berth's sweep while this one runs.
 */
export async function closedOnError<T>(net: SessionNetwork | undefined, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    await net?.close();
    throw e;
  }
}
