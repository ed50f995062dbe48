// What a berth killed without a chance to clean up (SIGKILL, OOM killer, crash) leaves behind: sandbox
// processes, cgroups, overlay mounts, scratch and working directories. Each berth process keeps a state
// directory named by its pid and start time with one record per live sandbox; a starting berth sweeps the
// directories whose owner is dead, and only those, so concurrent berths never touch each other's sandboxes.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { cgroupRoots, removeCgroupDir } from './cgroups.js';
import { SANDBOX_UID } from './host.js';
import { ownerAlive, ownerTag, procStat } from './proc-stat.js';
import { stateRoot, usableRoot } from './state-root.js';
import { isSandboxUid, sweepDeadLeases, UID_LEASE_DIR } from './uids.js';

export { stateRoot, useStateRoot } from './state-root.js';

export interface SandboxRecord {
  driver: string;
  /** The top process, its start time (to tell it from a later process that reused the pid) and its group. */
  pid?: number;
  start?: number;
  pgid?: number;
  /** The session's cgroup relative to each hierarchy's root (runsc makes it in every hierarchy). */
  cgroup?: string;
  /** Host mount points to detach before the directories are removed. */
  mounts: string[];
  /** Scratch and working directories to remove. */
  dirs: string[];
  /** Network namespaces (names under /var/run/netns) to delete. */
  netns?: string[];
}

export interface Tracked {
  update(patch: Partial<SandboxRecord>): void;
  /** The sandbox is fully cleaned up: forget it. */
  drop(): void;
}

let instanceDir: string | undefined;
/** Liveness is read from /proc (pid and start time); without it every owner would look dead. */
const supported = existsSync('/proc/self/stat');

function ownDir(): string {
  if (instanceDir) return instanceDir;
  const dir = join(usableRoot(), `i-${ownerTag()}`);
  mkdirSync(dir, { recursive: true });
  // A clean exit leaves no records; the empty directory goes too (rmdir fails, harmlessly, if not empty).
  process.once('exit', () => {
    try {
      rmdirSync(dir);
    } catch {
      // records left: the next berth sweeps them
    }
  });
  return (instanceDir = dir);
}

/** Records a sandbox before it makes anything; a record that cannot be written never stops a session. */
export function track(name: string, initial: SandboxRecord): Tracked {
  if (!supported) return { update: () => undefined, drop: () => undefined };
  let file: string | undefined;
  const rec = { ...initial };
  const write = () => {
    try {
      file ??= join(ownDir(), `${name}.json`);
      writeFileSync(`${file}.tmp`, JSON.stringify(rec));
      renameSync(`${file}.tmp`, file); // never a half-written record
    } catch {
      // the state dir is unusable; sweepDeadInstances said so at start
    }
  };
  write();
  return {
    update(patch) {
      Object.assign(rec, patch);
      write();
    },
    drop() {
      if (!file) return;
      try {
        unlinkSync(file);
      } catch {
        // never written
      }
    },
  };
}

interface Proc {
  pid: number;
  ppid: number;
  pgid: number;
}

function scanProcs(): Proc[] {
  const all: Proc[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = procStat(Number(e));
    if (s) all.push({ pid: Number(e), ppid: s.ppid, pgid: s.pgid });
  }
  return all;
}

/** The recorded processes still alive: the top one (if its start time matches), its descendants and its group. */
function leftoverProcs(rec: SandboxRecord): number[] {
  const procs = scanProcs();
  const found = new Set<number>();
  if (rec.pid && procStat(rec.pid)?.start === rec.start) {
    const queue = [rec.pid];
    while (queue.length) {
      const p = queue.shift()!;
      found.add(p);
      for (const c of procs) if (c.ppid === p && !found.has(c.pid)) queue.push(c.pid);
    }
  }
  // A group id is not reused while the group has members; only a live leader with another start time means
  // the id now names someone else's group.
  const leader = rec.pgid ? procStat(rec.pgid) : undefined;
  if (rec.pgid && (!leader || leader.start === rec.start)) for (const c of procs) if (c.pgid === rec.pgid) found.add(c.pid);
  return [...found];
}

function mountPoints(): string[] {
  const unescape = (p: string) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescape(l.split(' ')[4]!));
}

/**
 * A real directory (not a symlink to one) owned by berth's user, or by a sandbox uid berth gives working directories
 * to: 65534 (gVisor) or one of server.sandboxUids (namespace, microVM).
 */
function ownDirectory(p: string): boolean {
  try {
    const st = lstatSync(p);
    return st.isDirectory() && (st.uid === (process.getuid?.() ?? st.uid) || st.uid === SANDBOX_UID || isSandboxUid(st.uid));
  } catch {
    return false;
  }
}

/** Guards against a damaged record naming / or a top-level directory. */
const deepEnough = (p: unknown): p is string =>
  typeof p === 'string' && p.startsWith('/') && !p.includes('/../') && p.split('/').filter(Boolean).length >= 2;

async function sweepRecord(
  rec: SandboxRecord,
): Promise<{ killed: number; cgroups: string[]; mounts: string[]; dirs: string[]; netns: string[] }> {
  const pids = leftoverProcs(rec);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 100 && pids.some((p) => procStat(p)); i++) await new Promise((r) => setTimeout(r, 20));
  const cgroups: string[] = [];
  if (typeof rec.cgroup === 'string' && /^\/berth\/[\w.-]+$/.test(rec.cgroup)) {
    for (const r of cgroupRoots()) {
      const dir = join(r, rec.cgroup);
      if (!existsSync(dir)) continue;
      await removeCgroupDir(dir);
      cgroups.push(dir);
    }
  }
  const mounts = (rec.mounts ?? []).filter(deepEnough).filter((m) => mountPoints().includes(m));
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  const dirs: string[] = [];
  const still = mountPoints();
  for (const d of (rec.dirs ?? []).filter(deepEnough)) {
    // rm -r through a live mount would delete what it shows (an overlay's upper layer, a bind-mounted host dir).
    // Only a directory of berth's own user (gone: nothing to do): a scratch directory in the shared temp dir may have
    // gone (a tmpfiles age cleanup, a reboot under a persistent stateDir) and its name been taken by another user since.
    if (!ownDirectory(d) || still.some((m) => m === d || m.startsWith(`${d}/`))) continue;
    rmSync(d, { recursive: true, force: true });
    dirs.push(d);
  }
  const netns = (rec.netns ?? []).filter((n) => /^berth-[0-9a-f]{16}$/.test(n));
  for (const n of netns) spawnSync('ip', ['netns', 'del', n]);
  return { killed: pids.length, cgroups, mounts, dirs, netns };
}

/** Sweeps the records of one claimed instance directory; a record that cannot be swept stays for a later berth. */
async function sweepInstance(claimed: string, owner: string, log: Logger): Promise<number> {
  let swept = 0;
  let failed = false;
  for (const f of readdirSync(claimed).filter((x) => x.endsWith('.json'))) {
    let rec: SandboxRecord;
    try {
      rec = JSON.parse(readFileSync(join(claimed, f), 'utf8'));
    } catch {
      continue; // unreadable: nothing to act on
    }
    try {
      const done = await sweepRecord(rec);
      unlinkSync(join(claimed, f));
      // A session's network has a record of its own (network.ts), so one made before its sandbox is swept too; it is
      // part of that sandbox, not another one.
      if (rec.driver !== 'network') swept++;
      log.info({ owner, driver: rec.driver, ...done }, 'swept a sandbox left by a dead berth');
    } catch (e) {
      failed = true;
      log.warn({ owner, driver: rec.driver }, `could not fully sweep a sandbox left by a dead berth: ${(e as Error).message}`);
    }
  }
  if (!failed) rmSync(claimed, { recursive: true, force: true });
  return swept;
}

/**
 * Sweeps every instance directory whose owner (a berth, or a berth that was sweeping it) is dead: kills the
 * recorded processes, removes cgroups, detaches mounts, deletes directories. Returns how many sandboxes. Never
 * throws: a berth that cannot sweep still starts.
 */
export async function sweepDeadInstances(log: Logger): Promise<number> {
  if (!supported) return 0;
  let swept = 0;
  try {
    const dir = usableRoot();
    for (const entry of readdirSync(dir)) {
      // A host shell's scratch directory (host-shell.ts), left when it was killed with its berth: only its commands'
      // stderr files, nothing to act on.
      const shell = /^host-(\d+)-(\d+)-/.exec(entry);
      if (shell && !ownerAlive(Number(shell[1]), Number(shell[2]))) {
        try {
          rmSync(join(dir, entry), { recursive: true, force: true });
        } catch {
          // left for a later berth: it never stops the sandboxes' sweep below
        }
        continue;
      }
      const m = /^[is]-(\d+)-(\d+)(?:-|$)/.exec(entry);
      if (!m || ownerAlive(Number(m[1]), Number(m[2]))) continue;
      // Claimed by an atomic rename, so two berths starting together never sweep the same directory.
      const claimed = join(dir, `s-${ownerTag()}-${randomBytes(4).toString('hex')}`);
      try {
        renameSync(join(dir, entry), claimed);
      } catch {
        continue; // another berth claimed it first
      }
      swept += await sweepInstance(claimed, entry, log);
    }
    if (swept) log.info({ sandboxes: swept, stateDir: dir }, `swept ${swept} sandbox(es) left by dead berth instances`);
  } catch (e) {
    log.warn(
      { stateDir: stateRoot() },
      `cannot sweep sandboxes left by dead berths (and a killed berth's will not be): ${(e as Error).message}`,
    );
  }
  // After the sandboxes: a dead berth's uid leases are freed once no process runs as their uids.
  try {
    const freed = sweepDeadLeases();
    if (freed) log.info({ leases: freed, dir: UID_LEASE_DIR }, `freed ${freed} sandbox uid(s) leased by dead berth instances`);
  } catch (e) {
    log.warn({ dir: UID_LEASE_DIR }, `cannot free the sandbox uids of dead berths: ${(e as Error).message}`);
  }
  return swept;
}
