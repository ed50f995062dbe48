// The namespace driver (Linux): bubblewrap gives each session server new PID, mount, IPC, UTS, user, cgroup and
// network namespaces (network.ts: berth's per-session network, or bwrap's empty one when not root), started as an
// unprivileged uid so nothing it creates is owned by host root. Inside it sees: /usr and a few /etc files
// read-only, its own /proc, /dev and /tmp, its private working directory, the runtime's directory (read-only, or a
// per-session overlay when berth is root) and any --mount paths read-only. Nothing else of the host. What it
// writes (working directory, /tmp, overlay) shares one tmpfs of limits.disk when berth is root (disk.ts).
// A server from an image sees the image's root as / instead (a per-session overlay of the shared unpacked root
// when berth is root, else read-only) and of the host only its working directory and the --mount paths; it runs
// as the image's user inside its user namespace, which is the unprivileged sandbox uid outside.
import { spawnSync } from 'node:child_process';
import { chownSync, chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { startChild } from './child.js';
import { mountOverlay } from './overlay.js';
import type { ImageRoot, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';
import { resolveArgv } from './process.js';
import { dropPrivileges, ETC_FILES, hostName, isRoot, run, SANDBOX_UID, which, localtimeTarget, masks, privateScratch } from './host.js';
import { mountCapped } from './disk.js';
import { closedOnError, networkUnavailable, openNetwork } from './network.js';
import { track } from './registry.js';
import { withSandboxUid } from './uids.js';
import { mountPtys } from './ptys.js';
import { seccompProgram } from './seccomp.js';
import { DEFAULT_PTYS } from '../config/schema.js';

/** The network bwrap runs in: one berth made (or the host's), shared; else a fresh, empty one of bwrap's own. */
interface NetView {
  shared: boolean;
  resolvConf?: string;
}

/** Where the session's home and /tmp come from when its writes are capped (disk.ts), else bwrap's own. */
interface Writable {
  home: string;
  tmp: string;
}

/** What berth adds to bwrap's own: the session's devpts instance (ptys.ts, root only), and the seccomp filter's fd (seccomp.ts). */
interface Hardening {
  pts?: string;
  seccompFd?: number;
}

/** Every namespace, no capabilities, no way back out; the session's network when berth made one. */
function isolationFlags(net: NetView, hard: Hardening): string[] {
  // No nested user namespaces: they would hand the server a full capability set against more kernel surface.
  const a = [
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--assert-userns-disabled',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--block-fd',
    '3',
  ];
  if (net.shared) a.push('--share-net');
  if (hard.seccompFd !== undefined) a.push('--seccomp', String(hard.seccompFd));
  return a;
}

/**
 * The sandbox's own /proc and /dev. bwrap's /dev is a tmpfs the server owns, as is its /dev/shm, each up to half the
 * host's memory whatever limits.disk says (a review wrote 1.1 GB to /dev/shm under a 1 GiB cap): /dev/shm is a
 * tmpfs of limits.disk of its own, and /dev itself read-only (its devices still read and write). Its ptys are the
 * session's own devpts instance when berth made one (ptys.ts): bwrap's has no cap.
 */
function procAndDev(spec: SandboxSpec, hard: Hardening): string[] {
  const shm = [...(spec.limits.disk ? ['--size', String(spec.limits.disk)] : []), '--tmpfs', '/dev/shm'];
  const pts = hard.pts ? ['--dev-bind', hard.pts, '/dev/pts'] : [];
  return ['--proc', '/proc', '--dev', '/dev', ...shm, ...pts, '--remount-ro', '/dev'];
}

function bwrapArgs(
  spec: SandboxSpec,
  base: { src: string; writable: boolean },
  argv: string[],
  net: NetView = { shared: false },
  writable?: Writable,
  hard: Hardening = {},
): string[] {
  const a = isolationFlags(net, hard);
  // Inside, the server is nobody, whichever host uid its sandbox runs as (uids.ts).
  if (isRoot()) a.push('--uid', String(SANDBOX_UID), '--gid', String(SANDBOX_UID));
  a.push('--ro-bind', '/usr', '/usr');
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) a.push('--symlink', `usr/${l}`, `/${l}`);
  for (const f of ETC_FILES) {
    // A symlinked /etc/localtime stays a symlink: bound as a plain file, time-zone code scans all of zoneinfo.
    const link = f === '/etc/localtime' ? localtimeTarget() : undefined;
    if (link) a.push('--symlink', link, f);
    else if (f === '/etc/resolv.conf' && net.resolvConf) a.push('--ro-bind', net.resolvConf, f);
    else a.push('--ro-bind-try', f, f);
  }
  a.push(...procAndDev(spec, hard));
  if (writable) a.push('--bind', writable.tmp, '/tmp');
  else a.push(...(spec.limits.disk ? ['--size', String(spec.limits.disk)] : []), '--tmpfs', '/tmp');
  a.push(base.writable ? '--bind' : '--ro-bind', base.src, spec.cwd);
  for (const m of spec.mounts) a.push('--ro-bind', m, m);
  // The program itself, when it lives outside what is already visible.
  const prog = argv[0]!;
  if (
    prog.startsWith('/') &&
    !prog.startsWith('/usr/') &&
    !prog.startsWith(spec.cwd + '/') &&
    !spec.mounts.some((m) => prog.startsWith(m + '/'))
  ) {
    a.push('--ro-bind', prog, prog); // the file alone: its directory may hold anything
  }
  // berth's own config (and whatever else it hides) is masked: an empty file, or an empty directory.
  for (const m of masks(spec.hide)) a.push(...(m.dir ? ['--tmpfs', m.path] : ['--ro-bind', '/dev/null', m.path]));
  a.push('--bind', writable?.home ?? spec.workDir, spec.workDir, '--chdir', spec.workDir);
  a.push('--', ...argv);
  return a;
}

/**
 * The environment of the host programs that start an image's sandbox (nsenter and setpriv as root, bwrap as the
 * sandbox uid before it has made any namespace): a fixed PATH and nothing of the image's. An image's Env may set what
 * the C library and its loader act on in every program that starts (LD_PRELOAD loads a library, LD_DEBUG_OUTPUT
 * writes a file, GCONV_PATH reads modules from a path, GLIBC_TUNABLES: CVE-2023-4911…); none of it may reach a host
 * program, and no list of such names can be known complete, so the whole of it reaches the server through bwrap's
 * --clearenv and --setenv instead. Those go to bwrap over a pipe (--args 4), not on its command line: every host user
 * may read a command line, and the runtime's env may hold its secrets.
 */
const ARGS_FD = 4;
/** bubblewrap's own limit on its arguments, command line and --args together (MAX_ARGS in bubblewrap.c). */
const BWRAP_MAX_ARGS = 9000;
/** What bwrap reads at --args ARGS_FD for an image's server: its whole environment, and nothing else of the host's. */
const imageEnvArgs = (env: Record<string, string>) => ['--clearenv', ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v])];
const HOST_PROGRAMS_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

/**
 * bwrap's arguments for a server from an image: the image's root as `/` (the session's overlay of it as root, else
 * read-only), the image's user as the uid the server sees (mapped to the unprivileged sandbox uid outside), and of
 * the host nothing but the configured mounts and the session's own working directory.
 */
function bwrapImageArgs(
  spec: SandboxSpec,
  image: ImageRoot,
  root: { src: string; writable: boolean },
  net: NetView,
  writable: Writable | undefined,
  hard: Hardening,
): string[] {
  const a = [...isolationFlags(net, hard), '--uid', String(image.uid), '--gid', String(image.gid)];
  a.push('--args', String(ARGS_FD));
  a.push(root.writable ? '--bind' : '--ro-bind', root.src, '/');
  a.push(...procAndDev(spec, hard));
  if (writable) a.push('--bind', writable.tmp, '/tmp');
  else a.push(...(spec.limits.disk ? ['--size', String(spec.limits.disk)] : []), '--tmpfs', '/tmp');
  // The session's resolver (egress); an image without /etc keeps whatever it has.
  if (net.resolvConf && root.writable && existsSync(join(image.rootfs, 'etc'))) a.push('--ro-bind', net.resolvConf, '/etc/resolv.conf');
  for (const m of spec.mounts) a.push('--ro-bind', m, m);
  for (const m of masks(spec.hide)) a.push(...(m.dir ? ['--tmpfs', m.path] : ['--ro-bind', '/dev/null', m.path]));
  a.push('--bind', writable?.home ?? spec.workDir, spec.workDir, '--chdir', image.cwd);
  a.push('--', ...spec.argv);
  return a;
}

/**
 * `path` inside the session's root as a directory, made where missing; undefined when a component is a symlink, a
 * file or `..`. berth works here as root outside the sandbox, where an image's symlink (/app -> /etc) would resolve
 * against the host's root: nothing is followed.
 */
function dirWithin(merged: string, path: string): string | undefined {
  let at = merged;
  for (const part of path.split('/').filter((p) => p && p !== '.')) {
    if (part === '..') return undefined;
    at = join(at, part);
    const st = lstatSync(at, { throwIfNoEntry: false });
    if (!st) mkdirSync(at, { mode: 0o755 });
    else if (!st.isDirectory()) return undefined;
  }
  return at;
}

/** A directory of the image, in the session's own layer, owned by the sandbox's uid: the server writes there. */
function giveDir(merged: string, path: string, uid: number, notice?: (what: string) => void): void {
  const dir = dirWithin(merged, path);
  if (dir) chownSync(dir, uid, uid);
  else notice?.(`the image's ${path} passes through a symlink or a file: left read-only to the server`);
}

/** Empty files or directories (as the host path is) where host paths are bound into the session's image root. */
function makeMountPoints(merged: string, paths: string[]): void {
  for (const p of paths) {
    const file = p === '/etc/resolv.conf' || !statSync(p).isDirectory();
    const dir = dirWithin(merged, file ? dirname(p) : p);
    if (!dir) throw new Error(`cannot show ${p} to the image's server: a symlink or a file of the image is in the way`);
    if (!file) continue;
    const at = join(dir, basename(p));
    // 'wx': never through an existing name (a symlink of the image's included); whatever is there stays.
    if (!lstatSync(at, { throwIfNoEntry: false })) writeFileSync(at, '', { flag: 'wx' });
  }
}

/** The image's HOME when it lies inside the image (not the session's working directory, which is bound in). */
function imageHome(spec: SandboxSpec): string | undefined {
  const home = spec.env.HOME;
  return home?.startsWith('/') && home !== spec.workDir && !home.startsWith('/proc') && !home.startsWith('/dev') ? home : undefined;
}

/** What a failed canary most likely means, from bwrap's complaint: an old bwrap, a host forbidding user namespaces, or the directory. */
export function canaryHint(bwrap: string, stderr: string, baseDir: string): string {
  if (/unknown option|unrecognized option/i.test(stderr)) {
    const v = spawnSync(bwrap, ['--version'], { encoding: 'utf8', timeout: 5000 }).stdout?.trim() || 'an older version';
    return `berth needs bubblewrap 0.8 or later (--disable-userns); this host has ${v}`;
  }
  if (/permission denied|operation not permitted|no permissions to create/i.test(stderr)) {
    let restricted = false;
    try {
      restricted = readFileSync('/proc/sys/kernel/apparmor_restrict_unprivileged_userns', 'utf8').trim() === '1';
    } catch {
      // not an AppArmor host that restricts user namespaces
    }
    if (restricted)
      return 'this host restricts user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, as Ubuntu 24.04 does): run berth as root, or give bwrap an AppArmor profile that allows userns';
  }
  return isRoot()
    ? `is ${baseDir} readable by every user (sandboxes run as uids of their own)?`
    : `is ${baseDir} readable by berth's user?`;
}

export const namespaceDriver: SandboxDriver = {
  name: 'namespace',

  async probe(baseDir: string) {
    if (process.platform !== 'linux') return { ok: false, reason: 'namespaces need Linux' };
    const bwrap = which('bwrap');
    if (!bwrap) return { ok: false, reason: 'bubblewrap is not installed (apt-get install bubblewrap)' };
    if (isRoot() && !which('setpriv')) return { ok: false, reason: 'setpriv (util-linux) is needed to drop root' };
    // The canary is a real session's sandbox (same flags), running `test -r` on the runtime directory.
    const spec: SandboxSpec = {
      sessionId: 'probe',
      argv: [],
      cwd: baseDir,
      workDir: '/tmp',
      env: {},
      limits: {},
      network: 'none',
      mounts: [],
    };
    const args = bwrapArgs(spec, { src: baseDir, writable: false }, ['/usr/bin/test', '-r', baseDir]).filter(
      (x, i, all) => x !== '--block-fd' && all[i - 1] !== '--block-fd',
    );
    // As a sandbox uid of its own, as sessions run: a directory only 65534 (or its group) may read fails here too.
    const r = await withSandboxUid(async (uid, release) => {
      const full = [...dropPrivileges(uid), bwrap, ...args];
      return run(full[0]!, full.slice(1)).finally(release);
    });
    if (r.code !== 0)
      return {
        ok: false,
        reason: `a canary sandbox failed (${r.stderr.trim() || `exit ${r.code}`}); ${canaryHint(bwrap, r.stderr, baseDir)}`,
      };
    return { ok: true };
  },

  async start(spec) {
    // A NUL would end an argument early in bwrap's --args stream, and what follows would be read as bwrap's options.
    const withNul = Object.entries(spec.env).find(([k, v]) => k.includes('\0') || v.includes('\0'));
    if (spec.image && withNul)
      throw new Error(`the environment variable ${JSON.stringify(withNul[0])} holds a NUL byte, which no environment can`);
    const badName = Object.keys(spec.env).find((k) => k === '' || k.includes('='));
    if (spec.image && badName !== undefined)
      throw new Error(`the environment variable name ${JSON.stringify(badName)} is empty or holds "="`);
    const bwrap = which('bwrap');
    if (!bwrap) throw new Error('bubblewrap is not installed');
    // An image's command is looked up inside it (execvp with the image's PATH), never on the host.
    const argv = spec.image ? spec.argv : resolveArgv(spec.argv, spec.cwd);
    // As root the sandbox runs as a host uid of its own (uids.ts), given back once its last process is gone.
    return withSandboxUid((uid, release) => startAs(spec, argv, bwrap, uid, release));
  },
};

async function startAs(spec: SandboxSpec, argv: string[], bwrap: string, owner: number, releaseUid: () => void): Promise<Sandbox> {
  if (isRoot()) {
    chownSync(spec.workDir, owner, owner);
    chmodSync(spec.workDir, 0o700);
  }
  const scratch = await mkdtemp(join(tmpdir(), 'berth-ns-'));
  const mounts = [join(scratch, 'merged'), join(scratch, 'pts'), scratch];
  // Recorded before anything is mounted, so a berth killed meanwhile leaves nothing unswept; startChild's
  // record for this sandbox (same name) replaces this one.
  track(hostName(spec.sessionId), { driver: 'namespace', mounts, dirs: [scratch, spec.workDir] });
  // With a disk cap (root), everything the session may write lives in one sized tmpfs: its home (shown at its
  // working directory), its /tmp and the overlay's upper layer; it gets ENOSPC at the cap, the host disk nothing.
  const capped = spec.limits.disk ? await mountCapped(scratch, spec.limits.disk, 0, 0o711, spec.notice) : undefined;
  privateScratch(scratch, owner); // the sandbox uid must traverse it to reach the overlay; no other host user may
  const ptys = await mountPtys(scratch, spec.limits.ptys ?? DEFAULT_PTYS);
  const writable = capped ? { home: join(scratch, 'home'), tmp: join(scratch, 'tmp') } : undefined;
  if (writable) {
    mkdirSync(writable.home, { mode: 0o700 });
    chownSync(writable.home, owner, owner);
    mkdirSync(writable.tmp);
    chmodSync(writable.tmp, 0o1777);
  }
  const merged = await mountOverlay(spec.image?.rootfs ?? spec.cwd, scratch);
  // The top directory is copied up with the sandbox uid as owner, so a server can write beside its code.
  if (merged) chownSync(merged, owner, owner);
  // The image's working directory and home, in the session's own layer, are the server's to write.
  if (merged && spec.image) for (const d of new Set([spec.image.cwd, imageHome(spec)])) if (d) giveDir(merged, d, owner, spec.notice);
  // As root, berth makes the session's network (none: loopback only; egress: user-mode NAT behind rules) and bwrap
  // shares it; otherwise bwrap's own empty namespace is the only non-host network there is.
  const own = isRoot() || spec.network === 'host';
  if (!own && (spec.network === 'egress' || spec.port !== undefined)) throw new Error(networkUnavailable(spec.network)!);
  const net = own ? await openNetwork({ mode: spec.network, allow: spec.allowNet ?? [], sessionId: spec.sessionId }) : undefined;
  const drop = dropPrivileges(owner);
  const seccomp = seccompProgram();
  const { args, envArgs } = await closedOnError(net, () => {
    // bwrap (unprivileged) cannot make a mount point inside the image's root-owned directories: made here, as root.
    if (merged && spec.image) makeMountPoints(merged, [...(net?.resolvConf ? ['/etc/resolv.conf'] : []), ...spec.mounts]);
    const root = merged ? { src: merged, writable: true } : { src: spec.image?.rootfs ?? spec.cwd, writable: false };
    const view = { shared: own, resolvConf: net?.resolvConf };
    const envArgs = spec.image ? imageEnvArgs(spec.env) : undefined;
    // bwrap reads the image's environment at fd 4 (ARGS_FD), then the filter at the next.
    const hard = { pts: ptys?.dir, seccompFd: seccomp ? ARGS_FD + (envArgs ? 1 : 0) : undefined };
    const args = spec.image
      ? bwrapImageArgs(spec, spec.image, root, view, writable, hard)
      : bwrapArgs(spec, root, argv, view, writable, hard);
    if (envArgs && args.length + envArgs.length > BWRAP_MAX_ARGS)
      throw new Error(
        `the image's environment has ${Object.keys(spec.env).length} variables: under isolation namespace a server gets at most ${Math.floor((BWRAP_MAX_ARGS - args.length - 1) / 3)} (bubblewrap reads at most ${BWRAP_MAX_ARGS} arguments)`,
      );
    return { args, envArgs };
  });
  const full = [...drop, bwrap, ...args];
  return startChild({
    driver: 'namespace',
    file: full[0]!,
    args: full.slice(1),
    cwd: '/',
    // An image's environment goes to its server alone (bwrapImageArgs), never to the host programs before it.
    env: spec.image ? HOST_PROGRAMS_ENV : spec.env,
    inputs: [...(envArgs ? [Buffer.from(envArgs.map((a) => `${a}\0`).join(''))] : []), ...(seccomp ? [seccomp] : [])],
    spec,
    blockFd: true,
    net,
    scratchDirs: [scratch],
    scratchMounts: mounts,
    cleanup: async () => {
      try {
        if (merged) await run('umount', ['-l', merged]);
        await ptys?.release();
        await capped?.release();
        await rm(scratch, { recursive: true, force: true });
      } finally {
        releaseUid(); // its processes are gone: startChild removed its cgroup first
      }
    },
  });
}
