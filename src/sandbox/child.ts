// What the process-based drivers share: spawn in a new process group, join the session's cgroup, report
// how the server ended (including OOM kills), and stop it: SIGTERM, then SIGKILL after the grace period.
// Every sandbox is recorded (registry.ts) from before its process starts until it is cleaned up, so what a
// berth killed outright leaves, the next berth sweeps.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { cgroupPath, SessionCgroup } from './cgroups.js';
import type { ExitInfo, Sandbox, SandboxSpec } from './driver.js';
import { hostName, isRoot, procStat, which } from './host.js';
import type { SessionNetwork } from './network.js';
import type { Dial } from './dial.js';
import { closeInheritedFds } from './inherited-fds.js';
import { track } from './registry.js';

export interface ChildOptions {
  driver: string;
  file: string;
  args: string[];
  /** Host directory the child starts in. */
  cwd: string;
  env: Record<string, string>;
  spec: SandboxSpec;
  /**
   * The program holds at fd 3 until berth writes to it (bwrap --block-fd 3), so every process of the sandbox
   * can be put in the session's cgroup before the server starts.
   */
  blockFd?: boolean;
  /**
   * What the program reads from fds 4, 5, … in order (bwrap's --args, --seccomp), each through a pipe written whole
   * and closed: kept off its command line, which every host user can read. Needs blockFd (fd 3).
   */
  inputs?: Buffer[];
  /** Runs after the server is gone (e.g. removing the driver's scratch directories). */
  cleanup?: () => Promise<void>;
  /** Host directories and mount points the driver made for this sandbox (what `cleanup` removes). */
  scratchDirs?: string[];
  scratchMounts?: string[];
  /** The session's own network: the program runs inside it, an http upstream's $PORT is forwarded out of it. */
  net?: SessionNetwork;
}

/**
 * The niceness a sandbox started ahead of demand (a pool growing above its min) runs at until its server answers. 10 gives it about
 * a tenth of the CPU share of a live one, so refills after a burst of new sessions cannot starve the calls of live
 * sessions, while an idle host still starts it at full speed. A start a client waits for is not lowered: on a host
 * saturated by other work it would crawl past startQueueTimeout. Only root may raise it back, so only as root.
 */
const STARTING_NICE = 10;

/**
 * Every sandboxed process's oom_score_adj (-1000..1000, inherited by what it starts): when the host itself runs
 * out of memory, the kernel's OOM killer takes a session's process before berth or the host's services. At least
 * berth's own (a berth in a Kubernetes pod may run at up to 1000): a sandbox never ranks below the berth that runs
 * it. Raising it needs no privilege; written by root it is also the floor the sandbox cannot go below (as another
 * user, a server may write its own back down to berth's).
 */
export const SANDBOX_OOM_SCORE_ADJ = 500;

let ownOomScoreAdj: number | undefined;
let saidOomScore = false;

/** The oom_score_adj a sandbox gets: SANDBOX_OOM_SCORE_ADJ, or berth's own when that is higher. */
export function sandboxOomScoreAdj(): number {
  if (ownOomScoreAdj === undefined) {
    try {
      ownOomScoreAdj = Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim()) || 0;
    } catch {
      ownOomScoreAdj = 0; // not Linux
    }
  }
  return Math.max(SANDBOX_OOM_SCORE_ADJ, ownOomScoreAdj);
}

/** Raises pid's oom_score_adj; a process already gone has nothing to raise, any other failure is said once. */
function raiseOomScore(pid: number, notice?: (what: string) => void): void {
  try {
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(sandboxOomScoreAdj()));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH' || saidOomScore) return; // gone already: its exit says why
    saidOomScore = true;
    notice?.(`cannot raise the sandbox's oom_score_adj (${(e as Error).message}): a host out of memory may end berth before a session`);
  }
}

/** Sets the CPU share of pid's autogroup; a host without autogroups (or a pid gone) has nothing to set. */
function setAutogroupNice(pid: number, nice: number): void {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch {
    // no sched_autogroup here, or the process is gone
  }
}

/** Children (and their children) of a process, waiting briefly for the first one to appear. */
async function descendants(pid: number, waitMs = 100): Promise<number[]> {
  const childrenOf = (p: number): number[] => {
    try {
      return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  for (let i = 0; i < waitMs / 2 && childrenOf(pid).length === 0; i++) await new Promise((r) => setTimeout(r, 2));
  const all: number[] = [];
  const queue = childrenOf(pid);
  while (queue.length) {
    const p = queue.shift()!;
    all.push(p);
    queue.push(...childrenOf(p));
  }
  return all;
}

export async function startChild(o: ChildOptions): Promise<Sandbox> {
  const record = track(hostName(o.spec.sessionId), {
    driver: o.driver,
    cgroup: cgroupPath(o.spec.sessionId),
    mounts: o.scratchMounts ?? [],
    dirs: [...(o.scratchDirs ?? []), o.spec.workDir],
    netns: o.net?.name ? [o.net.name] : [],
  });
  const cleanup = async () => {
    await o.cleanup?.();
    await o.net?.close();
  };
  let cgroup: SessionCgroup | undefined;
  try {
    cgroup = SessionCgroup.create(o.spec.sessionId, o.spec.limits);
  } catch (e) {
    await cleanup(); // a half-made cgroup stays recorded, for the sweep after this berth ends
    throw e;
  }
  // nsenter enters the network and execs the program in place: the pid berth holds is still the program's; so does
  // nice, which starts the whole sandbox at STARTING_NICE (its processes inherit it) until started().
  // (Absolute: spawn would look `nice` up in the sandbox's PATH, which an image sets.)
  const nice = o.spec.yieldWhileStarting && isRoot() ? which('nice') : undefined;
  const yieldWhileStarting = nice !== undefined;
  const [file, ...args] = [...(nice ? [nice, '-n', String(STARTING_NICE)] : []), ...(o.net?.enter ?? []), o.file, ...o.args] as [
    string,
    ...string[],
  ];
  closeInheritedFds(); // or bwrap would pass them on to the server
  const child = spawn(file, args, {
    cwd: o.cwd,
    env: o.env,
    stdio: Array<'pipe'>(3 + (o.blockFd ? 1 : 0) + (o.inputs?.length ?? 0)).fill('pipe'),
    detached: true,
  });
  for (const [i, data] of (o.inputs ?? []).entries()) {
    const input = child.stdio[4 + i] as Writable | null;
    input?.on('error', () => undefined); // a program that died first: its exit says why
    input?.end(data);
  }
  // Listened for at once: the awaits below would otherwise let 'spawn' fire unheard.
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${JSON.stringify(o.file)}: ${err.message}`)));
  });
  spawned.catch(() => undefined);
  // Listened for from here on, so every failure below ends in the same cleanup as a server's exit.
  let done = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      const info: ExitInfo = { code, signal };
      if (cgroup?.oomKilled()) Object.assign(info, { reason: 'oom', memoryLimit: cgroup.memoryLimit });
      // Each refusal was an EAGAIN inside the sandbox, which berth never sees: said once, at the end.
      const refused = cgroup?.pidsLimitHits() ?? 0;
      if (refused)
        o.spec.notice?.(
          `the session reached its limit of ${o.spec.limits.pids} processes and threads (limits.pids): ${refused} forks or new threads were refused with EAGAIN`,
        );
      resolve(info);
    });
    child.once('error', (err) => {
      done = true;
      resolve({ code: null, signal: null, reason: `failed to start: ${err.message}` });
    });
  });
  // Resolves once the server is gone AND its cgroup, scratch space and working directory are removed; only
  // then is the record dropped (a failure keeps it, for the sweep after this berth ends).
  const cleanedUp = exited.then(async (info) => {
    await cgroup?.remove();
    await cleanup();
    await rm(o.spec.workDir, { recursive: true, force: true });
    record.drop();
    return info;
  });
  if (child.pid) record.update({ pid: child.pid, start: procStat(child.pid)?.start, pgid: child.pid });
  // The sandbox is its own session (detached: setsid), so where the kernel groups CPU time by session
  // (sched_autogroup) its share is the autogroup's nice, not its processes'.
  if (yieldWhileStarting && child.pid) setAutogroupNice(child.pid, STARTING_NICE);
  // Before the cgroup's awaits, so what the program forks from now on inherits it. A program held at fd 3
  // (bwrap --block-fd) has started nothing of the server yet: its forks so far are raised below.
  if (child.pid) raiseOomScore(child.pid, o.spec.notice);
  if (cgroup && child.pid) {
    try {
      await cgroup.addPid(child.pid);
      // The session network's helpers (slirp4netns) too: what the server makes them hold is the session's to pay.
      for (const pid of o.net?.helperPids ?? []) await cgroup.addPid(pid);
      // Whatever it forked before we got here (bwrap's namespace init) joins too; later forks inherit.
      if (o.blockFd) for (const pid of await descendants(child.pid)) await cgroup.addPid(pid);
    } catch (e) {
      // Its network, scratch space, uid and record go too (before, only the cgroup did: the rest waited for the
      // next berth's sweep, and a review saw a cgroup left behind).
      child.kill('SIGKILL');
      await cleanedUp;
      throw new Error(`cannot apply resource limits: ${(e as Error).message}`, { cause: e });
    }
  }
  if (o.blockFd) {
    if (child.pid) for (const pid of await descendants(child.pid, 0)) raiseOomScore(pid, o.spec.notice);
    const release = child.stdio[3] as Writable;
    release.on('error', () => undefined); // the program closes its end once released
    release.end('go');
  }
  try {
    await spawned;
  } catch (e) {
    await cleanedUp; // a spawn that failed (ENFILE, say) emits 'error' and no 'exit': exited resolved on it
    throw e;
  }
  let dialHttp: Dial | undefined;
  if (o.net?.name && o.spec.port !== undefined) {
    try {
      dialHttp = await o.net.dialer(o.spec.port);
    } catch (e) {
      child.kill('SIGKILL');
      await cleanedUp;
      throw e;
    }
  }
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      try {
        child.kill(sig);
      } catch {
        // already gone
      }
    }
  };
  let starting = yieldWhileStarting;
  return {
    driver: o.driver,
    pid: child.pid,
    started() {
      if (!starting || done || !child.pid) return;
      starting = false;
      void descendants(child.pid, 0).then((pids) => {
        for (const pid of [child.pid!, ...pids]) {
          try {
            setPriority(pid, 0);
          } catch {
            // gone meanwhile
          }
        }
        setAutogroupNice(child.pid!, 0);
      });
    },
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    dialHttp,
    exited,
    async stop(graceMs: number) {
      if (!done) {
        child.stdin?.end(); // stdio servers exit on EOF: the gentlest stop
        if (o.blockFd) {
          // A wrapper (bwrap) would die on SIGTERM and orphan the server; signal the server itself so the
          // wrappers exit after it and reap it.
          for (const pid of (await descendants(child.pid!, 0)).reverse()) {
            try {
              process.kill(pid, 'SIGTERM');
            } catch {
              // already gone
            }
          }
        } else signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        timer.unref();
        await exited;
        clearTimeout(timer);
        signalGroup('SIGKILL'); // stragglers left in the group
      }
      return cleanedUp;
    },
  };
}
