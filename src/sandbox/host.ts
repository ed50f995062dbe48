// Host facts the sandbox drivers share: the unprivileged uid, which /etc files a server may see, tool lookup.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { shellRun } from './host-shell.js';

export { procStat } from './proc-stat.js';

/**
 * A name for host-visible things of a session (cgroups, container ids): world-readable, so never the
 * session id itself, which is the client's key to the session.
 */
export function hostName(sessionId: string): string {
  return `berth-${createHash('sha256').update(sessionId).digest('hex').slice(0, 20)}`;
}

/**
 * Why a runtime directory cannot be shown to a sandbox: it would expose the host, or the session directories
 * (other sessions' private files) under it.
 */
export function unsafeRuntimeDir(baseDir: string, sessionRoot: string): string | undefined {
  const b = baseDir.endsWith('/') ? baseDir : `${baseDir}/`;
  if (baseDir === '/') return 'the runtime directory is / (the whole host)';
  for (const p of [sessionRoot, '/tmp'])
    if (`${p}/`.startsWith(b)) return `the runtime directory ${baseDir} contains ${p}, where session directories live`;
  for (const h of homes())
    if (`${h}/`.startsWith(b))
      return `the runtime directory ${baseDir} ${h === baseDir ? 'is' : 'contains'} the home directory ${h}, whose keys and tokens (~/.ssh, ~/.aws, ~/.npmrc) every session would see`;
  return undefined;
}

/**
 * People's home directories: berth's own ($HOME), root's, and those of /etc/passwd's login users (uid 1000 and up;
 * system accounts' "homes" are /bin, /var/www and the like). A home holds its user's keys and tokens (~/.ssh, ~/.aws,
 * ~/.npmrc), so it is never shown to a sandbox whole, even when a program lives in ~/bin or a stray ~/package.json
 * makes it look like a package's root.
 */
export function homes(): Set<string> {
  const out = new Set<string>([homedir()]);
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [, , uid, , , home] = line.split(':');
      const id = Number(uid);
      if (home && isAbsolute(home) && home !== '/' && (id === 0 || (id >= 1000 && id !== SANDBOX_UID))) out.add(home);
    }
  } catch {
    // no /etc/passwd: $HOME alone
  }
  out.delete('/');
  return out;
}

/**
 * Makes a sandbox's scratch directory (in the shared temp dir, under a name anyone may list) one that only berth and
 * that sandbox may enter: as root, root's with the sandbox's own group (`gid`, uids.ts) and mode 0710, so its
 * processes can pass through to what they are shown and no other host user, nor another sandbox, can reach the
 * session's /tmp, overlay or VM config; as another user, berth's own and 0700 (the sandbox runs as that user).
 */
export function privateScratch(dir: string, gid: number): void {
  if (isRoot()) {
    chownSync(dir, 0, gid);
    chmodSync(dir, 0o710);
  } else chmodSync(dir, 0o700);
}

/**
 * The uid and gid a server has inside its sandbox (nobody). As root each sandbox's host uid and gid are its own
 * (uids.ts); gVisor's servers (on gVisor's kernel) and the drivers' canaries run as 65534 itself.
 */
export const SANDBOX_UID = 65534;
export const ETC_FILES = [
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/passwd',
  '/etc/group',
  '/etc/localtime',
  '/etc/alternatives',
  '/etc/ld.so.cache',
  '/etc/mime.types',
];
export const isRoot = () => process.getuid?.() === 0;

export function which(cmd: string): string | undefined {
  // The sbin directories too: root's tools (ip, nft) live there, and berth's PATH may not name them.
  for (const dir of [...(process.env.PATH ?? '/usr/bin:/bin').split(':'), '/usr/sbin', '/sbin']) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** The command prefix that drops to `uid` (its gid the same number, no other groups); only needed, and only possible, as root. */
export function dropPrivileges(uid: number = SANDBOX_UID): string[] {
  return isRoot() ? [which('setpriv') ?? 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--'] : [];
}

/** Runs a tool to its end: its exit code and stderr; `input`, when given, is its stdin. Through the host shell
 * (host-shell.ts), so berth's event loop does not wait while the kernel copies berth for a fork. */
export function run(file: string, args: string[], input?: string): Promise<{ code: number | null; stderr: string }> {
  return shellRun(file, args, input);
}

/** Where a symlinked /etc/localtime points inside /usr (kept a symlink in sandboxes: bound as a file, time-zone
 * code scans all of zoneinfo), or undefined. */
export function localtimeTarget(): string | undefined {
  try {
    const t = readlinkSync('/etc/localtime');
    return t.includes('/usr/share/zoneinfo/') ? t : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a sandbox must mask of what it would otherwise see (berth's own config): each existing path, and whether
 * it is a directory (masked by an empty tmpfs) or a file (masked by /dev/null).
 */
export function masks(hide: readonly string[] = []): Array<{ path: string; dir: boolean }> {
  return hide.filter((h) => existsSync(h)).map((path) => ({ path, dir: statSync(path).isDirectory() }));
}
