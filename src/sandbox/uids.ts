// Each sandbox's own host uid (berth as root). The kernel counts some resources per user, across every process of
// a uid whatever its namespaces: inotify instances (fs.inotify.max_user_instances, 128 by default) and watches, user
// namespaces, processes under RLIMIT_NPROC, POSIX message queue bytes, fanotify groups, keys. With one uid for every
// sandbox, one session could take them all from every other: a server holding 128 inotify instances left none to
// the other sessions' servers (fs.watch failed with EMFILE) nor to the host's own uid-65534 processes. So each
// sandbox runs as a uid of its own, drawn from SANDBOX_UIDS, with the gid of the same number (its scratch directory's
// group: no other sandbox passes), and appears inside as 65534 (nobody), as before. Under gVisor these counts are
// gVisor's own.
import { randomInt } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, SANDBOX_UID } from './host.js';
import { ownerAlive, ownerTag } from './proc-stat.js';

/**
 * The host uids sandboxes run as (server.sandboxUids): by default 2^20 uids from 0x70000000, above the ranges Debian
 * and systemd hand out (regular users, subordinate ids for rootless containers from 100000, systemd-nspawn's
 * 0x80000–0x6FFFFFFF), though inside SSSD's default id mapping on a host joined to a directory (hence the setting,
 * and sandboxUidOverlaps at start). A uid is leased host-wide (UID_LEASE_DIR), so no two live sandboxes of the
 * berths of one host share one.
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

/**
 * Where the berths of one host lease uids (as root): a symlink per leased uid, named by the uid and pointing at the
 * holder's owner tag (PID-START). Making a symlink is atomic and fails if the name exists, so two berths never lease
 * one uid, whatever their state directories; /run is a tmpfs, so a reboot (which ends every sandbox) clears it.
 * Berths in other mount namespaces (containers with their own /run) do not see it.
 */
export const UID_LEASE_DIR = '/run/berth-uids';
/** How many uids one claim tries, from a random one on, before saying the range is (nearly) full. */
const MAX_PROBES = 4096;

/** Where leases live, looked at once: the directory, or why there is none (not root: no reason, nothing to say). */
let leaseState: { dir: string } | { dir?: undefined; trouble?: string } | undefined;
/** This berth as a lease's holder. */
let tag: string | undefined;

function leaseDirectory(): { dir: string } | { dir?: undefined; trouble?: string } {
  if (!isRoot()) return {};
  try {
    mkdirSync(UID_LEASE_DIR, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return { trouble: (e as Error).message };
  }
  const st = lstatSync(UID_LEASE_DIR);
  // Anyone else who could write here could free a live sandbox's uid or block the whole range.
  if (!st.isDirectory() || st.uid !== 0 || st.mode & 0o022) return { trouble: `${UID_LEASE_DIR} is not a directory only root may write` };
  return { dir: UID_LEASE_DIR };
}

/** The lease directory, made if missing; undefined when not root or unusable (uidLeaseTrouble says why). */
function leases(): string | undefined {
  return (leaseState ??= leaseDirectory()).dir;
}

/**
 * At start (as root): undefined when uids are leased host-wide, else why not — then uids are unique among this
 * berth's sandboxes only, and another berth on the host may draw one of them (1 in server.sandboxUids.count per pair).
 */
export function uidLeaseTrouble(): string | undefined {
  const state = (leaseState ??= leaseDirectory());
  return 'trouble' in state ? state.trouble : undefined;
}

/** Leases `uid` host-wide; false if another sandbox (of any berth here) holds it. */
function lease(uid: number): boolean {
  const dir = leases();
  if (!dir) return true;
  try {
    symlinkSync((tag ??= ownerTag()), join(dir, String(uid)));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`cannot lease a sandbox uid in ${dir}: ${(e as Error).message}`, { cause: e });
  }
}

function unlease(uid: number): void {
  const dir = leaseState?.dir;
  if (!dir) return;
  try {
    unlinkSync(join(dir, String(uid)));
  } catch {
    // gone already: a sweep found its owner dead (it never is while we run)
  }
}

/** A sandbox's uid and the one way to give it back; release() acts once, however often it is called. */
export interface UidLease {
  readonly uid: number;
  release(): void;
}

/** A uid no live sandbox of any berth on this host has, to release once every process of it is gone. */
export function claimSandboxUid(): UidLease {
  const { first, count } = SANDBOX_UIDS;
  const full = () =>
    new Error(`every one of the ${count} uids of server.sandboxUids is taken by a live sandbox of a berth on this host: widen the range`);
  if (inUse.size >= count) throw full();
  const from = randomInt(count);
  const probes = Math.min(count, MAX_PROBES);
  for (let i = 0; i < probes; i++) {
    const uid = first + ((from + i) % count);
    if (inUse.has(uid) || !lease(uid)) continue; // a free one comes within a few tries unless the range is nearly full
    inUse.add(uid);
    let held = true;
    // Once: a second release (an error path after the driver's cleanup gave it back) would free a uid another
    // sandbox has claimed since.
    return { uid, release: () => void (held && ((held = false), inUse.delete(uid), unlease(uid))) };
  }
  if (probes === count) throw full();
  throw new Error(`${probes} uids of server.sandboxUids in a row are taken by live sandboxes of berths on this host: widen the range`);
}

/** Every uid (real, effective, saved, filesystem) some live process of the host runs as. */
function liveUids(): Set<number> {
  const uids = new Set<number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const status = readFileSync(`/proc/${e}/status`, 'utf8');
      if (/^State:\s+[ZX]/m.test(status)) continue; // a zombie holds nothing the kernel counts per user
      /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m
        .exec(status)
        ?.slice(1)
        .forEach((u) => uids.add(Number(u)));
    } catch {
      // exited meanwhile
    }
  }
  return uids;
}

/**
 * Frees the leases of dead berths (after registry.ts swept their sandboxes): those whose holder is gone and whose
 * uid no live process has — a sandbox process the sweep could not kill keeps its uid leased. Returns how many.
 * Two berths starting together may both free one; only a claim of that very uid in between would be hurt.
 */
export function sweepDeadLeases(): number {
  const dir = leases();
  if (!dir) return 0;
  const dead = readdirSync(dir).filter((name) => {
    try {
      const [pid, start] = readlinkSync(join(dir, name)).split('-').map(Number);
      return !ownerAlive(pid!, start!);
    } catch {
      return false; // freed meanwhile
    }
  });
  if (!dead.length) return 0;
  const live = liveUids();
  let freed = 0;
  for (const name of dead.filter((n) => !live.has(Number(n)))) {
    try {
      unlinkSync(join(dir, name));
      freed++;
    } catch {
      // freed by another berth's sweep
    }
  }
  return freed;
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
