// Whether the sandbox uid can reach what a runtime shows it: the drivers that drop privileges (namespace and microvm
// as root, gvisor always) run the server — or QEMU, which reads the 9p shares — as uid 65534 with no groups. A
// directory it cannot read used to surface late and vaguely: a canary "is … readable?", a server dying with EACCES,
// a microVM pool that never warmed. Checked at start from the mode bits of each path and its ancestors.
import { statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { gvisorDriver } from './gvisor.js';
import { isRoot, SANDBOX_UID } from './host.js';
import { microvmDriver } from './microvm.js';
import { namespaceDriver } from './namespace.js';
import type { SandboxDriver } from './driver.js';

/** The uid a driver's sandboxes read the host's files as, or undefined when they read them as berth's own user. */
export function sandboxReader(driver: SandboxDriver): number | undefined {
  if (driver === gvisorDriver) return SANDBOX_UID; // the server runs as it inside gVisor, which keeps host owners and modes
  if (driver === namespaceDriver || driver === microvmDriver) return isRoot() ? SANDBOX_UID : undefined;
  return undefined;
}

/** The permission bits (rwx, as 0-7) that apply to uid (with gid = uid and no other groups) on a file. */
function bitsFor(st: Stats, uid: number): number {
  if (st.uid === uid) return (st.mode >> 6) & 7;
  if (st.gid === uid) return (st.mode >> 3) & 7;
  return st.mode & 7;
}

const owner = (st: Stats) => (st.uid === 0 ? 'root' : `uid ${st.uid}`);
const mode = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Why uid cannot use path as asked (read: list and enter a directory, read a file; run: read and run a file; pass:
 * go through a directory), naming the first directory on the way that stops it; undefined when it can, or when path does not exist (other checks say so).
 */
export function unreadableBy(uid: number, path: string, use: 'read' | 'run' | 'pass' = 'read'): string | undefined {
  const full = resolve(path);
  let st: Stats;
  try {
    st = statSync(full);
  } catch {
    return undefined;
  }
  // Every ancestor must let it pass (x); a symlink on the way is followed by stat, as the sandbox would.
  for (let d = dirname(full); ; d = dirname(d)) {
    const a = statSync(d, { throwIfNoEntry: false });
    if (a && !(bitsFor(a, uid) & 1)) return `${d} (mode ${mode(a)}, owner ${owner(a)}) does not let uid ${uid} pass through to ${full}`;
    if (d === dirname(d)) break;
  }
  const need = use === 'pass' ? 1 : st.isDirectory() || use === 'run' ? 5 : 4;
  if ((bitsFor(st, uid) & need) !== need) {
    const what = use === 'pass' ? 'pass through' : st.isDirectory() ? 'list and enter' : use === 'run' ? 'read and run' : 'read';
    return `${full} (mode ${mode(st)}, owner ${owner(st)}) is not one uid ${uid} may ${what}`;
  }
  return undefined;
}

/**
 * For a runtime about to start under driver: why its sandboxes could not read one of the paths they are shown, with
 * the fix; undefined when they can (or the driver reads as berth's own user).
 */
export function sandboxCannotRead(
  driver: SandboxDriver,
  paths: { dirs: readonly string[]; pass?: readonly string[]; program?: string; files?: readonly string[] },
): string | undefined {
  const uid = sandboxReader(driver);
  if (uid === undefined) return undefined;
  const why = [
    ...paths.dirs.map((d) => unreadableBy(uid, d)),
    // Only passed through (the session directories under it are the sandbox uid's own).
    ...(paths.pass ?? []).map((d) => unreadableBy(uid, d, 'pass')),
    paths.program && unreadableBy(uid, paths.program, 'run'),
    ...(paths.files ?? []).map((f) => unreadableBy(uid, f)),
  ].find(Boolean);
  if (!why) return undefined;
  return (
    `isolation "${driver.name}" runs the server as uid ${uid}, which cannot read what it needs: ${why}. ` +
    `Move the server to a directory every user may read (e.g. under /srv or /opt) and start berth there or pass --mount, ` +
    `or open the path to other users (chmod o+rx on each directory, o+r on files)`
  );
}
