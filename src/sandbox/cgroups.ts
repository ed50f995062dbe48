// Per-session resource limits through cgroups: v2 where the host delegates controllers, else v1 (memory, pids, cpu).
// Files are written from Node directly; berth needs to be root (or own a delegated subtree).
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MEMORY, DEFAULT_PIDS } from '../config/schema.js';
import type { SandboxLimits } from './driver.js';
import { hostName } from './host.js';

const ROOT = '/sys/fs/cgroup';
const GROUP = 'berth';

export interface CgroupSupport {
  version: 1 | 2 | null;
  /** Why limits cannot be enforced, when version is null. */
  reason?: string;
  /** Controllers that can be used. */
  controllers: Array<'memory' | 'pids' | 'cpu'>;
}

let cached: CgroupSupport | undefined;

function writable(path: string): boolean {
  try {
    const probe = join(path, `${GROUP}-probe-${process.pid}`);
    mkdirSync(probe, { recursive: true });
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

export function detectCgroups(): CgroupSupport {
  if (cached) return cached;
  const v2Controllers = (dir: string) =>
    existsSync(join(dir, 'cgroup.controllers')) ? readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/) : [];
  // Pure (unified) v2 hierarchy.
  const v2 = v2Controllers(ROOT).filter((c): c is 'memory' | 'pids' | 'cpu' => c === 'memory' || c === 'pids' || c === 'cpu');
  if (v2.length && writable(ROOT)) return (cached = { version: 2, controllers: v2 });
  // Legacy v1 hierarchies, one per controller.
  const v1 = (['memory', 'pids', 'cpu'] as const).filter((c) => existsSync(join(ROOT, c, 'cgroup.procs')) && writable(join(ROOT, c)));
  if (v1.length) return (cached = { version: 1, controllers: [...v1] });
  const reason =
    process.getuid?.() !== 0
      ? 'berth is not running as root and no cgroup subtree is delegated to it'
      : existsSync(join(ROOT, 'unified'))
        ? 'the cgroup v2 hierarchy has no usable controllers and no v1 hierarchy is writable'
        : 'no writable cgroup hierarchy was found under /sys/fs/cgroup';
  return (cached = { version: null, controllers: [], reason });
}

/** Why this host cannot hold a per-session limit of `controller` (no cgroups berth may write, no such controller), or undefined. */
function unavailable(controller: 'memory' | 'pids'): string | undefined {
  const cg = detectCgroups();
  if (!cg.version) return cg.reason;
  return cg.controllers.includes(controller) ? undefined : `no ${controller} cgroup controller`;
}

export const pidsUnavailable = () => unavailable('pids');
export const memoryUnavailable = () => unavailable('memory');

/**
 * A limit as configured (0: none), else its default where this host's cgroups can hold it. A default that cannot
 * be applied is no limit, never a refusal (berth says so once at start, warnUnenforceableLimits); a configured one
 * is passed on as it is.
 */
function withDefault(configured: number | undefined, controller: 'memory' | 'pids', dflt: number): number | undefined {
  if (configured !== undefined) return configured || undefined;
  return unavailable(controller) ? undefined : dflt;
}

/** The pids limit a session gets (resolved at launch, into the spec every driver reads). */
export const sessionPids = (configured: number | undefined) => withDefault(configured, 'pids', DEFAULT_PIDS);

/**
 * The memory limit a session's cgroup gets. Resolved at the cgroup rather than in the spec: a microVM sizes its
 * guest from the configured limit only (512 MiB unset), while its QEMU's cgroup takes the default like every other
 * sandbox.
 */
export const sessionMemory = (configured: number | undefined) => withDefault(configured, 'memory', DEFAULT_MEMORY);

/** The session's cgroup, relative to each hierarchy's root. */
export function cgroupPath(sessionId: string): string {
  return `/${GROUP}/${cgroupName(sessionId)}`;
}

function cgroupName(sessionId: string): string {
  return hostName(sessionId);
}

/**
 * The cgroup every session's cgroup of `controller` lives under (shared by every berth of the host), made if missing;
 * undefined where berth cannot use that controller.
 */
export function sessionsParent(controller: 'memory' | 'pids'): string | undefined {
  const support = detectCgroups();
  if (!support.version || !support.controllers.includes(controller)) return undefined;
  return parentOf(support, controller);
}

/** The sessions' parent cgroup of `controller`, made if missing: v1 one per controller; v2 one, delegating every controller to its children. */
function parentOf(support: CgroupSupport, controller: 'memory' | 'pids' | 'cpu'): string {
  const dir = support.version === 1 ? join(ROOT, controller, GROUP) : join(ROOT, GROUP);
  mkdirSync(dir, { recursive: true });
  if (support.version === 2) writeFileSync(join(dir, 'cgroup.subtree_control'), support.controllers.map((c) => `+${c}`).join(' '));
  return dir;
}

/** One session's cgroup(s). */
export class SessionCgroup {
  private readonly dirs: Partial<Record<'memory' | 'pids' | 'cpu', string>> = {};

  private constructor(
    private readonly support: CgroupSupport,
    private readonly limits: SandboxLimits,
  ) {}

  /** `limits.memory` unset takes the default (sessionMemory); pids come resolved (sessionPids, at launch). */
  static create(sessionId: string, configured: SandboxLimits): SessionCgroup | undefined {
    const limits = { ...configured, memory: sessionMemory(configured.memory) };
    const support = detectCgroups();
    // cpu always, with or without limits.cpus: a cgroup of its own makes the session one entity to the scheduler,
    // so it shares the CPU with other sessions (and berth) as one, however many processes or sessions (setsid) it
    // makes. Left in berth's cgroup, each of its processes (each setsid, under autogroup) competed on its own: a
    // server with 6 busy children took six times another session's CPU, and berth's.
    const wanted = (['memory', 'pids', 'cpu'] as const).filter(
      (c) => (c === 'memory' && limits.memory) || (c === 'pids' && limits.pids) || (c === 'cpu' && support.controllers.includes('cpu')),
    );
    if (!wanted.length || !support.version) return undefined;
    const cg = new SessionCgroup(support, limits);
    const name = cgroupName(sessionId);
    if (support.version === 2) {
      const dir = join(parentOf(support, wanted[0]!), name);
      mkdirSync(dir, { recursive: true });
      for (const c of wanted) if (support.controllers.includes(c)) cg.dirs[c] = dir;
    } else {
      for (const c of wanted) {
        if (!support.controllers.includes(c)) continue;
        const dir = join(parentOf(support, c), name);
        mkdirSync(dir, { recursive: true });
        cg.dirs[c] = dir;
      }
    }
    cg.applyLimits();
    return cg;
  }

  private applyLimits(): void {
    const { memory, pids, cpus } = this.limits;
    const v2 = this.support.version === 2;
    if (memory && this.dirs.memory) {
      if (v2) {
        writeFileSync(join(this.dirs.memory, 'memory.max'), String(memory));
        try {
          writeFileSync(join(this.dirs.memory, 'memory.swap.max'), '0');
        } catch {
          // no swap accounting on this host
        }
      } else {
        writeFileSync(join(this.dirs.memory, 'memory.limit_in_bytes'), String(memory));
        try {
          writeFileSync(join(this.dirs.memory, 'memory.memsw.limit_in_bytes'), String(memory));
        } catch {
          // swap accounting disabled on this host
        }
        // v1 charges no socket buffer to a cgroup unless its kmem.tcp limit is set (v2 counts them in memory.max):
        // a review's server queued 2.2 GB in TCP and 2.5 GB in UDP over its own loopback with 46 MB charged, past
        // the host's tcp_mem (one pool for every socket of the host: its connections were reset). Set, a session's
        // TCP and UDP buffers are bounded by its memory limit (a counter of their own on v1), as on v2.
        try {
          writeFileSync(join(this.dirs.memory, 'memory.kmem.tcp.limit_in_bytes'), String(memory));
        } catch {
          // a kernel that no longer has it (deprecated since 6.x)
        }
      }
    }
    if (pids && this.dirs.pids) writeFileSync(join(this.dirs.pids, 'pids.max'), String(pids));
    if (cpus && this.dirs.cpu) {
      const period = 100_000;
      const quota = Math.max(1000, Math.round(cpus * period));
      if (v2) writeFileSync(join(this.dirs.cpu, 'cpu.max'), `${quota} ${period}`);
      else {
        writeFileSync(join(this.dirs.cpu, 'cpu.cfs_period_us'), String(period));
        writeFileSync(join(this.dirs.cpu, 'cpu.cfs_quota_us'), String(quota));
      }
    }
  }

  /** Moves a process in; its later children inherit the cgroup. Async: on v1 a write can take 10+ ms. */
  async addPid(pid: number): Promise<void> {
    for (const dir of new Set(Object.values(this.dirs))) await writeFile(join(dir, 'cgroup.procs'), String(pid));
  }

  /** The memory limit this cgroup holds (the configured one or the default), if any. */
  get memoryLimit(): number | undefined {
    return this.dirs.memory ? this.limits.memory : undefined;
  }

  /** True when the kernel OOM-killed a process of this session. */
  oomKilled(): boolean {
    const dir = this.dirs.memory;
    if (!dir) return false;
    try {
      const file = this.support.version === 2 ? 'memory.events' : 'memory.oom_control';
      const m = /oom_kill (\d+)/.exec(readFileSync(join(dir, file), 'utf8'));
      return !!m && Number(m[1]) > 0;
    } catch {
      return false;
    }
  }

  /** How many times a fork or a new thread of this session was refused at its pids limit (pids.events' max). */
  pidsLimitHits(): number {
    const dir = this.dirs.pids;
    if (!dir) return 0;
    try {
      return Number(/^max (\d+)/m.exec(readFileSync(join(dir, 'pids.events'), 'utf8'))?.[1] ?? 0);
    } catch {
      return 0; // removed already, or a kernel without pids.events
    }
  }

  /** Kills whatever is still in the cgroup(s), then removes them. */
  async remove(): Promise<void> {
    for (const dir of new Set(Object.values(this.dirs))) await removeCgroupDir(dir);
  }
}

/** Kills every process in a cgroup directory (and its sub-groups), then removes it; absent is fine. */
export async function removeCgroupDir(dir: string): Promise<void> {
  let subs: string[];
  try {
    subs = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name));
  } catch {
    return; // already gone
  }
  for (const sub of subs) await removeCgroupDir(sub);
  for (let i = 0; i < 50; i++) {
    try {
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      await new Promise((r) => setTimeout(r, 20)); // EBUSY while the last process is reaped
    }
  }
}

/**
 * Every mounted hierarchy a session cgroup may live in: the unified root on pure v2, else each v1 controller
 * hierarchy and the v2 one beside them. runsc creates its cgroupsPath in all of them, not only berth's three.
 */
export function cgroupRoots(): string[] {
  if (existsSync(join(ROOT, 'cgroup.procs'))) return [ROOT];
  const roots = new Set<string>();
  try {
    for (const e of readdirSync(ROOT)) {
      const dir = join(ROOT, e);
      if (existsSync(join(dir, 'cgroup.procs'))) roots.add(realpathSync(dir)); // cpu -> cpu,cpuacct links
    }
  } catch {
    // no cgroup filesystem
  }
  return [...roots];
}
