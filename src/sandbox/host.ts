// Host facts the sandbox drivers share: the unprivileged uid, which /etc files a server may see, tool lookup.
import { createHash } from 'node:crypto';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
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
  return undefined;
}

/** The uid/gid sessions run as on the host (nobody). */
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

/** The command prefix that drops to the sandbox uid (only needed, and only possible, as root). */
export function dropPrivileges(): string[] {
  return isRoot() ? [which('setpriv') ?? 'setpriv', `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_UID}`, '--clear-groups', '--'] : [];
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
