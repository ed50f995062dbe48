// Whether the sandbox uid can reach what a runtime shows it: the drivers that drop privileges run the server — or
// QEMU, which reads the 9p shares — as a uid with no groups: namespace and microvm as root as a host uid and gid of
// their own (uids.ts), so only a path's bits for other users count; gvisor always as uid 65534. A
// directory it cannot read used to surface late and vaguely: a canary "is … readable?", a server dying with EACCES,
// a microVM pool that never warmed. Checked at start from the mode bits of each path and its ancestors.
import { statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { gvisorDriver } from './gvisor.js';
import { isRoot, SANDBOX_UID } from './host.js';
import { microvmDriver } from './microvm.js';
import { namespaceDriver } from './namespace.js';
import type { SandboxDriver } from './driver.js';

/** Who reads the host's files for a sandbox: a uid (its gid the same number, no other groups), or, with `uid` unset, one no file belongs to. */
export interface Reader {
  uid?: number;
  /** As messages name it. */
  who: string;
}

/** Who a driver's sandboxes read the host's files as, or undefined when they read them as berth's own user. */
export function sandboxReader(driver: SandboxDriver): Reader | undefined {
  // The server runs as 65534 inside gVisor, which keeps host owners and modes.
  if (driver === gvisorDriver) return { uid: SANDBOX_UID, who: `uid ${SANDBOX_UID}` };
  // A uid and gid of its own, drawn per sandbox: no host file is theirs (a file owned by 65534 is not).
  if ((driver === namespaceDriver || driver === microvmDriver) && isRoot()) return { who: 'a uid of its own (server.sandboxUids)' };
  return undefined;
}

/** The permission bits (rwx, as 0-7) that apply to the reader on a file. */
function bitsFor(st: Stats, reader: Reader): number {
  if (st.uid === reader.uid) return (st.mode >> 6) & 7;
  if (st.gid === reader.uid) return (st.mode >> 3) & 7;
  return st.mode & 7;
}

const owner = (st: Stats) => (st.uid === 0 ? 'root' : `uid ${st.uid}`);
const mode = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Why uid cannot use path as asked (read: list and enter a directory, read a file; run: read and run a file; pass:
 * go through a directory), naming the first directory on the way that stops it; undefined when it can, or when path does not exist (other checks say so).
 */
export function unreadableBy(reader: Reader, path: string, use: 'read' | 'run' | 'pass' = 'read'): string | undefined {
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
    if (a && !(bitsFor(a, reader) & 1))
      return `${d} (mode ${mode(a)}, owner ${owner(a)}) does not let ${reader.who} pass through to ${full}`;
    if (d === dirname(d)) break;
  }
  const need = use === 'pass' ? 1 : st.isDirectory() || use === 'run' ? 5 : 4;
  if ((bitsFor(st, reader) & need) !== need) {
    const what = use === 'pass' ? 'pass through' : st.isDirectory() ? 'list and enter' : use === 'run' ? 'read and run' : 'read';
    return `${full} (mode ${mode(st)}, owner ${owner(st)}) is not one ${reader.who} may ${what}`;
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
  const reader = sandboxReader(driver);
  if (reader === undefined) return undefined;
  const why = [
    ...paths.dirs.map((d) => unreadableBy(reader, d)),
    // Only passed through (the session directories under it are the sandbox uid's own).
    ...(paths.pass ?? []).map((d) => unreadableBy(reader, d, 'pass')),
    paths.program && unreadableBy(reader, paths.program, 'run'),
    ...(paths.files ?? []).map((f) => unreadableBy(reader, f)),
  ].find(Boolean);
  if (!why) return undefined;
  return (
    `isolation "${driver.name}" runs the server as ${reader.who}, which cannot read what it needs: ${why}. ` +
    `Move the server to a directory every user may read (e.g. under /srv or /opt) and start berth there or pass --mount, ` +
    `or open the path to other users (chmod o+rx on each directory, o+r on files)`
  );
}
