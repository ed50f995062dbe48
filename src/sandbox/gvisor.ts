// The gVisor driver: each session server runs on its own user-space kernel (runsc), so a kernel exploit in the
// server meets gVisor's Sentry, not the host kernel. Rootless, ptrace platform by default (works without KVM);
// BERTH_GVISOR_PLATFORM=systrap|kvm picks a faster one where the host has it. The sandbox sees the same
// files as the namespace driver; every write (beside the code, in its working directory, anywhere) lands in
// the sandbox's own in-memory overlay (--overlay), so nothing it writes reaches the host. The runtime directory
// is bound writable under that overlay and its top handed to the sandbox uid inside gVisor (see entryArgv), so
// a server can write beside its code; its files keep their owners and modes, so a 0600 secret stays unreadable.
// A server from an image has the image's root as its root instead (writeImageBundle), under the same overlay.
import { chownSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupPath, sessionMemory } from './cgroups.js';
import { sandboxOomScoreAdj, startChild } from './child.js';
import type { ImageRoot, SandboxDriver, SandboxSpec } from './driver.js';
import { ETC_FILES, hostName, isRoot, run, SANDBOX_UID, which, localtimeTarget, masks } from './host.js';
import { closedOnError, openNetwork } from './network.js';
import { mountOverlay } from './overlay.js';
import { track } from './registry.js';
import { resolveArgv } from './process.js';

const platform = () => process.env.BERTH_GVISOR_PLATFORM ?? 'ptrace';

/**
 * gVisor's own netstack with no interface (--network=none) when the session needs no network at all; else the
 * network of the namespace runsc runs in (--network=host): the session's own (network.ts), or with network: host
 * the host's.
 */
function runscFlags(stateDir: string, network: 'host' | 'none'): string[] {
  return ['--rootless', `--platform=${platform()}`, `--network=${network}`, '--overlay', '--root', stateDir];
}

/**
 * limits.pids counts the server's processes and threads, as under the other drivers. The host cgroup cannot say
 * that here: runsc's own Sentry, gofer and (ptrace) stub threads live in it too — some 130 for an idle node server,
 * and about 9 more per process the server starts (624 host tasks for node and 54 children, measured) — so a pids
 * limit there stops gVisor itself. gVisor's kernel enforces RLIMIT_NPROC (threads included) on the sandbox's
 * processes instead; the host cgroup keeps a backstop wide enough for runsc's threads.
 */
function hostPids(pids: number): number {
  return 256 + 16 * pids;
}

function ociRlimits(spec: SandboxSpec): Array<{ type: string; hard: number; soft: number }> {
  const { pids } = spec.limits;
  return pids ? [{ type: 'RLIMIT_NPROC', hard: pids, soft: pids }] : [];
}

function ociResources(spec: SandboxSpec): Record<string, unknown> {
  const { cpus, pids } = spec.limits;
  const memory = sessionMemory(spec.limits.memory); // the same value berth's own cgroup setup wrote there
  const r: Record<string, unknown> = {};
  if (memory) r.memory = { limit: memory, swap: memory };
  if (pids) r.pids = { limit: hostPids(pids) };
  if (cpus) r.cpu = { quota: Math.round(cpus * 100_000), period: 100_000 };
  return r;
}

// Only for the entry step below, never the server's: chown the runtime dir's top, enter the 0700 working directory.
const ENTRY_CAPS = ['CAP_CHOWN', 'CAP_DAC_READ_SEARCH', 'CAP_SETUID', 'CAP_SETGID', 'CAP_SETPCAP'];

/**
 * The sandbox starts as root inside gVisor (never the host's root: that is the Sentry's own user table) to give the
 * runtime dir's top to the sandbox uid in the in-memory overlay, then setpriv drops to that uid with every
 * capability cleared and execs the server. Without setpriv the server starts as the sandbox uid and the runtime
 * dir stays read-only to it.
 */
function entryArgv(spec: SandboxSpec, argv: string[]): { uid: number; caps: string[]; args: string[] } | undefined {
  const setpriv = '/usr/bin/setpriv';
  if (!existsSync(setpriv) || !existsSync('/usr/bin/sh') || !existsSync('/usr/bin/chown')) return undefined;
  const drop = [
    setpriv,
    `--reuid=${SANDBOX_UID}`,
    `--regid=${SANDBOX_UID}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--',
  ];
  const script = `/usr/bin/chown ${SANDBOX_UID}:${SANDBOX_UID} "$0" && exec ${drop.join(' ')} "$@"`;
  return { uid: 0, caps: ENTRY_CAPS, args: ['/usr/bin/sh', '-c', script, spec.cwd, ...argv] };
}

/** tmpfs options for a writable mount under limits.disk (gVisor's tmpfs honours size=). */
const quota = (spec: SandboxSpec, mode: string) => {
  const owner = spec.image ?? { uid: SANDBOX_UID, gid: SANDBOX_UID };
  return [...(spec.limits.disk ? [`size=${spec.limits.disk}`] : []), `mode=${mode}`, `uid=${owner.uid}`, `gid=${owner.gid}`];
};

const bind = (p: string, rw = false) => ({ destination: p, type: 'bind', source: p, options: ['rbind', rw ? 'rw' : 'ro'] });

/** What every sandbox's mounts end with: what berth hides, masked, and the session's own working directory. */
function maskedAndOwn(spec: SandboxSpec): unknown[] {
  return [
    // berth's own config (and whatever else it hides) is masked: an empty file, or an empty directory.
    ...masks(spec.hide).map((m) =>
      m.dir
        ? { destination: m.path, type: 'tmpfs', source: 'tmpfs' }
        : { destination: m.path, type: 'bind', source: '/dev/null', options: ['rbind', 'ro'] },
    ),
    // With a disk cap the working directory is a sized tmpfs of gVisor's own (ENOSPC at the cap), not the host's;
    // an image's server always gets one, owned by the image's user there, so no host uid ever owns its files.
    spec.limits.disk || spec.image
      ? { destination: spec.workDir, type: 'tmpfs', source: 'tmpfs', options: quota(spec, '0700') }
      : bind(spec.workDir, true),
  ];
}

/** An OCI bundle: an empty read-only root with /usr, chosen /etc files, the runtime dir and the mounts bound in. */
function writeBundle(dir: string, spec: SandboxSpec, argv: string[], netstack: 'host' | 'none', resolvConf?: string): void {
  const entry = entryArgv(spec, argv);
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) symlinkSync(`usr/${l}`, join(rootfs, l));
  // A symlinked /etc/localtime stays a symlink: bound as a plain file, time-zone code scans all of zoneinfo
  // (some 1400 opens, slow on ptrace).
  const zone = localtimeTarget();
  if (zone) {
    mkdirSync(join(rootfs, 'etc'));
    symlinkSync(zone, join(rootfs, 'etc/localtime'));
  }
  const mounts = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: quota(spec, '1777') },
    bind('/usr'),
    ...ETC_FILES.filter((f) => existsSync(f) && !(zone && f === '/etc/localtime')).map((f) =>
      f === '/etc/resolv.conf' && resolvConf ? { ...bind(f), source: resolvConf } : bind(f),
    ),
    bind(spec.cwd, entry !== undefined), // writable only into the overlay, and only with the entry step
    ...spec.mounts.map((m) => bind(m)),
    ...maskedAndOwn(spec),
  ];
  const user = { uid: entry?.uid ?? SANDBOX_UID, gid: entry?.uid ?? SANDBOX_UID };
  const proc = { user, args: entry?.args ?? argv, cwd: spec.workDir, caps: entry?.caps ?? [] };
  writeConfig(dir, spec, proc, { path: 'rootfs', readonly: true }, mounts, netstack);
}

/**
 * A server from an image: the image's unpacked root as the container's root (every write lands in the sandbox's
 * in-memory overlay, --overlay, never in the shared root), run as the image's user (gVisor's, never the host's)
 * with no capabilities, in the image's working directory. Of the host it sees the session's working directory,
 * the configured mounts and, with egress, the session's resolver.
 */
function writeImageBundle(
  dir: string,
  spec: SandboxSpec,
  image: ImageRoot,
  netstack: 'host' | 'none',
  resolvConf: string | undefined,
  shared: boolean,
): void {
  const mounts = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: quota(spec, '1777') },
    ...(resolvConf ? [{ ...bind('/etc/resolv.conf'), source: resolvConf }] : []),
    ...spec.mounts.map((m) => bind(m)),
    ...maskedAndOwn(spec),
  ];
  const proc = { user: { uid: image.uid, gid: image.gid }, args: spec.argv, cwd: image.cwd, caps: [] };
  // The shared root itself (berth not root: no overlay) only read-only, so runsc can change nothing in it.
  writeConfig(dir, spec, proc, { path: image.rootfs, readonly: shared }, mounts, netstack);
}

interface OciProcess {
  user: { uid: number; gid: number };
  args: string[];
  cwd: string;
  caps: string[];
}

function writeConfig(
  dir: string,
  spec: SandboxSpec,
  p: OciProcess,
  root: { path: string; readonly: boolean },
  mounts: unknown[],
  netstack: 'host' | 'none',
): void {
  const config = {
    ociVersion: '1.0.0',
    process: {
      terminal: false,
      user: p.user,
      args: p.args,
      env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      cwd: p.cwd,
      capabilities: { bounding: p.caps, effective: p.caps, inheritable: [], permitted: p.caps, ambient: [] },
      noNewPrivileges: true,
      rlimits: ociRlimits(spec),
      oomScoreAdj: sandboxOomScoreAdj(),
    },
    root,
    hostname: 'berth',
    mounts,
    // runsc would otherwise move its sandbox to a cgroup of its own: cgroupsPath keeps it in the session's cgroup,
    // where berth reads OOM kills, and runsc writes the spec's limits there. No network namespace in the spec is
    // what lets --network=host reach the host's network.
    linux: {
      cgroupsPath: cgroupPath(spec.sessionId),
      resources: ociResources(spec),
      namespaces: ['pid', 'mount', 'ipc', 'uts', ...(netstack === 'none' ? ['network'] : [])].map((type) => ({ type })),
    },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

/** Canary sandboxes started by this process: each needs its own container id (probes may run at once). */
let probes = 0;

export const gvisorDriver: SandboxDriver = {
  name: 'gvisor',

  async probe(baseDir: string) {
    if (process.platform !== 'linux') return { ok: false, reason: 'gVisor needs Linux' };
    const runsc = which('runsc');
    if (!runsc) return { ok: false, reason: 'runsc is not installed (apt-get install runsc)' };
    // A canary sandbox: the same bundle shape a session gets, running /usr/bin/true.
    const scratch = await mkdtemp(join(tmpdir(), 'berth-gv-probe-'));
    try {
      const spec: SandboxSpec = {
        sessionId: 'probe',
        argv: ['/usr/bin/true'],
        cwd: baseDir,
        workDir: scratch,
        env: { PATH: '/usr/bin' },
        limits: {},
        network: 'none',
        mounts: [],
      };
      const bundle = join(scratch, 'bundle');
      mkdirSync(bundle);
      writeBundle(bundle, spec, ['/usr/bin/true'], 'none');
      const r = await run(runsc, [
        ...runscFlags(join(scratch, 'state'), 'none'),
        'run',
        '--bundle',
        bundle,
        `berth-probe-${process.pid}-${++probes}`,
      ]);
      if (r.code !== 0)
        return { ok: false, reason: `a canary gVisor sandbox failed: ${r.stderr.trim().split('\n').pop() || `exit ${r.code}`}` };
      return { ok: true };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  },

  async start(spec) {
    const runsc = which('runsc');
    if (!runsc) throw new Error('runsc is not installed');
    // The server runs as the sandbox uid and must own its working directory (an image's server has a tmpfs of
    // gVisor's there instead: its user may be a real user's uid on the host).
    if (isRoot() && !spec.image) chownSync(spec.workDir, SANDBOX_UID, SANDBOX_UID);
    const scratch = await mkdtemp(join(tmpdir(), 'berth-gv-'));
    const id = hostName(spec.sessionId);
    const bundle = join(scratch, 'bundle');
    const state = join(scratch, 'state');
    mkdirSync(bundle);
    // No namespace is needed only when the session has no network and berth need not reach in ($PORT).
    const isolated = spec.network === 'none' && spec.port === undefined;
    const netstack = isolated ? 'none' : 'host';
    const net = isolated ? undefined : await openNetwork({ mode: spec.network, allow: spec.allowNet ?? [], sessionId: spec.sessionId });
    // runsc makes the mount points a bundle needs inside its root: for an image, in the session's own overlay of the
    // shared root, never in the root every session shares.
    if (spec.image) track(id, { driver: 'gvisor', mounts: [join(scratch, 'merged')], dirs: [scratch, spec.workDir] });
    const merged = await closedOnError(net, async () => {
      const merged = spec.image ? await mountOverlay(spec.image.rootfs, scratch) : undefined;
      if (spec.image)
        writeImageBundle(bundle, spec, { ...spec.image, rootfs: merged ?? spec.image.rootfs }, netstack, net?.resolvConf, !merged);
      else writeBundle(bundle, spec, resolveArgv(spec.argv, spec.cwd), netstack, net?.resolvConf);
      return merged;
    });
    return startChild({
      driver: 'gvisor',
      file: runsc,
      args: [...runscFlags(state, netstack), 'run', '--bundle', bundle, id],
      net,
      cwd: scratch,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      // The session cgroup holds runsc as well as the server: its pids bound is runsc's (see hostPids).
      spec: spec.limits.pids ? { ...spec, limits: { ...spec.limits, pids: hostPids(spec.limits.pids) } } : spec,
      scratchDirs: [scratch],
      scratchMounts: merged ? [merged] : [],
      cleanup: async () => {
        await run(runsc, ['--rootless', '--root', state, 'delete', '--force', id]);
        if (merged) await run('umount', ['-l', merged]);
        await rm(scratch, { recursive: true, force: true });
      },
    });
  },
};
