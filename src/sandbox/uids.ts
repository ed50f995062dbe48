// Each sandbox's own host uid (berth as root). The kernel counts some resources per user, across every process of
// a uid whatever its namespaces: inotify instances (fs.inotify.max_user_instances, 128 by default) and watches, user
// namespaces, processes under RLIMIT_NPROC, POSIX message queue bytes, fanotify groups, keys. With one uid for every
// sandbox, one session could take them all from every other: a server holding 128 inotify instances left none to
// the other sessions' servers (fs.watch failed with EMFILE) nor to the host's own uid-65534 processes. So each
// sandbox runs as a uid of its own, drawn from SANDBOX_UIDS, with the gid of the same number (its scratch directory's
// group: no other sandbox passes), and appears inside as 65534 (nobody), as before. Under gVisor these counts are
// gVisor's own.
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isRoot, SANDBOX_UID } from './host.js';

/**
 * The host uids sandboxes run as (server.sandboxUids): by default 2^20 uids from 0x70000000, above the ranges Debian
 * and systemd hand out (regular users, subordinate ids for rootless containers from 100000, systemd-nspawn's
 * 0x80000–0x6FFFFFFF), though inside SSSD's default id mapping on a host joined to a directory (hence the setting,
 * and sandboxUidOverlaps at start). A uid is unique among one berth's live sandboxes; two berths on one host draw
 * at random, so they share one only by a 1-in-count chance per pair of sandboxes (and then those two share the
 * per-user counts, as every sandbox did before).
 */
export let SANDBOX_UIDS: { readonly first: number; readonly count: number } = { first: 0x70000000, count: 2 ** 20 };

/** Takes the range of server.sandboxUids (once, at start, before any sandbox). */
export function useSandboxUids(range: { first: number; count: number }): void {
  SANDBOX_UIDS = { ...range };
}

/** A uid of server.sandboxUids (a sandbox's working directory the sweep may remove). */
export const isSandboxUid = (uid: number) => uid >= SANDBOX_UIDS.first && uid < SANDBOX_UIDS.first + SANDBOX_UIDS.count;

/** Host users (/etc/passwd) and subordinate-id ranges (/etc/subuid) inside the range: said at start, once. */
export function sandboxUidOverlaps(): string[] {
  const out: string[] = [];
  const { first, count } = SANDBOX_UIDS;
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8').split('\n');
    } catch {
      return []; // no such file here
    }
  };
  for (const line of read('/etc/passwd')) {
    const [name, , uid] = line.split(':');
    if (uid !== undefined && isSandboxUid(Number(uid))) out.push(`user ${name} (uid ${uid}, /etc/passwd)`);
  }
  for (const line of read('/etc/subuid')) {
    const [name, start, n] = line.split(':');
    if (Number(start) < first + count && Number(start) + Number(n) > first)
      out.push(`${name}'s subordinate uids ${start}+${n} (/etc/subuid)`);
  }
  return out;
}

const inUse = new Set<number>();

/** A sandbox's uid and the one way to give it back; release() acts once, however often it is called. */
export interface UidLease {
  readonly uid: number;
  release(): void;
}

/** A uid no live sandbox of this berth has, to release once every process of it is gone. */
export function claimSandboxUid(): UidLease {
  if (inUse.size >= SANDBOX_UIDS.count)
    throw new Error(`every one of the ${SANDBOX_UIDS.count} uids of server.sandboxUids is taken by a live sandbox: widen the range`);
  for (;;) {
    const uid = SANDBOX_UIDS.first + randomInt(SANDBOX_UIDS.count);
    if (inUse.has(uid)) continue; // a free one comes within a few draws unless the range is nearly full
    inUse.add(uid);
    let held = true;
    // Once: a second release (an error path after the driver's cleanup gave it back) would free a uid another
    // sandbox has claimed since.
    return { uid, release: () => void (held && ((held = false), inUse.delete(uid))) };
  }
}

/**
 * Starts a sandbox as a host uid of its own (as root; otherwise as berth's user, which `uid` then does not name:
 * SANDBOX_UID, for the root-only steps). `start` gets the uid and its release, to call once every process of the
 * sandbox is gone; a start that throws has it released here.
 */
export async function withSandboxUid<T>(start: (uid: number, release: () => void) => Promise<T>): Promise<T> {
  const lease = isRoot() ? claimSandboxUid() : undefined;
  const release = () => lease?.release();
  try {
    return await start(lease?.uid ?? SANDBOX_UID, release);
  } catch (e) {
    release();
    throw e;
  }
}
