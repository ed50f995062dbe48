import type { Logger } from 'pino';
import { readFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { DEFAULT_MEMORY, DEFAULT_PIDS, DEFAULT_PTYS, ISOLATION_KINDS } from '../config/schema.js';
import { detectCgroups, memoryUnavailable, pidsUnavailable, sessionMemory } from './cgroups.js';
import { unsafeRuntimeDir, which } from './host.js';
import type { SandboxDriver, SandboxLimits } from './driver.js';
import { gvisorDriver } from './gvisor.js';
import { microvmDriver } from './microvm.js';
import { namespaceDriver } from './namespace.js';
import { networkUnavailable, type NetworkMode } from './network.js';
import { processDriver } from './process.js';
import { sandboxCannotRead } from './readable.js';
import { seccompUnavailable } from './seccomp.js';

export type { Sandbox, SandboxDriver, SandboxSpec, ExitInfo, SandboxLimits, ImageRoot } from './driver.js';

/** Every driver, strongest first. */
const drivers: SandboxDriver[] = [microvmDriver, gvisorDriver, namespaceDriver, processDriver];
/**
 * What `auto` tries, in order. gVisor is opt-in: on hosts without KVM its ptrace platform makes syscall-heavy
 * work ~10x slower, a cost an operator should choose, not get by default.
 */
const autoOrder: SandboxDriver[] = [microvmDriver, namespaceDriver, processDriver];

/** Refuses unknown or not-yet-built kinds with a clear error (at config time, before anything starts). */
export function checkIsolationKind(kind: string): void {
  if (kind === 'auto' || drivers.some((d) => d.name === kind)) return;
  if ((ISOLATION_KINDS as readonly string[]).includes(kind)) {
    throw new Error(
      `isolation "${kind}" is not available in this build of berth yet; available: auto, ${drivers.map((d) => d.name).join(', ')}`,
    );
  }
  throw new Error(`unknown isolation "${kind}"; expected one of: ${ISOLATION_KINDS.join(', ')}`);
}

/**
 * The driver for an isolation kind on this host. `auto` takes the strongest that passes its probe and logs
 * why each stronger one was refused; an explicit kind that cannot run here is an error.
 */
export async function chooseDriver(kind: string, baseDir: string, log: Logger, sessionRoot = tmpdir()): Promise<SandboxDriver> {
  checkIsolationKind(kind);
  const unsafe = unsafeRuntimeDir(baseDir, sessionRoot);
  if (unsafe && kind !== 'process' && kind !== 'auto') {
    throw new Error(`isolation "${kind}" cannot run here: ${unsafe}; start berth in the server's own directory or set runtimes.NAME.cwd`);
  }
  if (kind !== 'auto') {
    const d = drivers.find((x) => x.name === kind)!;
    // Before the probe: the namespace canary would fail on it too, with a vaguer reason.
    const cannotRead = sandboxCannotRead(d, { dirs: [baseDir] });
    if (cannotRead) throw new Error(cannotRead);
    const p = await d.probe(baseDir);
    if (!p.ok) throw new Error(`isolation "${kind}" cannot run on this host: ${p.reason}`);
    return d;
  }
  const refused: Record<string, string> = {};
  for (const d of autoOrder) {
    const p = await d.probe(baseDir);
    // A sandbox that could run here, refused only because of where berth started, is not silently traded for no
    // sandbox at all: the operator chooses (another directory, or --isolation process on purpose).
    if (unsafe && d !== processDriver) {
      // The namespace canary itself fails in such a directory (a home of mode 0700: its uid cannot enter it), so its
      // failure with bwrap installed counts as "could sandbox" too; before, auto then ran servers unsandboxed, as root.
      if ((p.ok && !(d === microvmDriver && p.reason)) || (!p.ok && d === namespaceDriver && which('bwrap')))
        throw new Error(
          `isolation auto: ${d.name} could sandbox each session, but ${unsafe}; start berth in the server's own directory, set runtimes.NAME.cwd, or pass --isolation process to run servers without a sandbox`,
        );
      refused[d.name] = unsafe;
      continue;
    }
    // A microVM is only the default when hardware virtualisation makes it fast (its probe then gives no caveat).
    if (p.ok && d === microvmDriver && p.reason) {
      refused[d.name] = p.reason;
      continue;
    }
    // A sandbox that could run here but not read the server's directory is refused, not traded for a weaker one
    // (the namespace canary fails on that directory itself, so its failure with bwrap installed counts too).
    const cannotRead = sandboxCannotRead(d, { dirs: [baseDir] });
    if (cannotRead && (p.ok || (d === namespaceDriver && which('bwrap')))) throw new Error(`isolation auto: ${cannotRead}`);
    if (p.ok) {
      // No sandbox at all is worth a warning: an operator who installed berth as root expects isolation.
      if (d === processDriver)
        log.warn(
          { isolation: d.name, refused },
          "isolation auto: using process: servers run without a sandbox, as berth's own user (see refused for why)",
        );
      else log.info({ isolation: d.name, refused }, `isolation auto: using ${d.name}`);
      return d;
    }
    refused[d.name] = p.reason ?? 'unavailable';
  }
  return processDriver;
}

/**
 * What is already said about this host (a default it cannot enforce, a hardening it lacks, fs.file-max): each once,
 * whichever runtime met it first.
 */
const saidOnce = new Set<string>();

/**
 * Says clearly, once, when configured limits (or the default pids and memory limits) cannot be enforced on this host,
 * and when a namespace sandbox lacks berth's seccomp filter or pty cap.
 */
export function warnUnenforceableLimits(limits: SandboxLimits, runtime: string, log: Logger, driver?: SandboxDriver): void {
  if (limits.disk && process.getuid?.() !== 0)
    log.warn({ runtime }, 'limits.disk is enforced only when berth runs as root (and always under gVisor)');
  if (driver === namespaceDriver) warnWeakerNamespace(limits, runtime, log);
  if (driver === namespaceDriver || driver === processDriver) warnFileMax(limits, runtime, log);
  // Unset pids and memory are defaults where cgroups can hold them (sessionPids, sessionMemory); where they cannot,
  // no limit: each said once, with its own reason.
  const lost = [
    { key: 'limits.pids', what: `${DEFAULT_PIDS} processes and threads, --pids`, unset: limits.pids === undefined, why: pidsUnavailable() },
    {
      key: 'limits.memory',
      what: `${DEFAULT_MEMORY / 1024 ** 3} GiB, --memory`,
      unset: limits.memory === undefined,
      why: memoryUnavailable(),
    },
  ].filter((d) => d.unset && d.why && !saidOnce.has(d.key));
  if (lost.length) {
    for (const d of lost) saidOnce.add(d.key);
    const why = [...new Set(lost.map((d) => d.why))].join('; ');
    log.warn(
      { runtime, reason: why },
      `the default per-session limits ${lost.map((d) => `${d.key} (${d.what})`).join(' and ')} are not applied (${why}): one session may start processes or take memory until the host's own limits stop it, for every session and berth alike; run berth as root to apply them, or set them to 0 to say no limit is wanted`,
    );
  }
  if (!limits.memory && !limits.cpus && !limits.pids) return;
  const cg = detectCgroups();
  if (!cg.version) log.warn({ runtime }, `resource limits cannot be enforced on this host: ${cg.reason}`);
  else {
    const missing = (['memory', 'cpus', 'pids'] as const).filter((k) => limits[k] && !cg.controllers.includes(k === 'cpus' ? 'cpu' : k));
    if (missing.length) log.warn({ runtime, missing }, `these limits cannot be enforced (no cgroup controller): ${missing.join(', ')}`);
    else log.info({ runtime, cgroup: `v${cg.version}` }, 'resource limits enforced with cgroups');
  }
}

/**
 * Bytes of kernel memory one open file costs, charged to the session's memory cgroup (a review's 2,465,681 files
 * were charged 561 MB: ~230 bytes, rounded up).
 */
export const BYTES_PER_OPEN_FILE = 256;

/**
 * fs.file-max is one count for the whole host, and no cgroup counts files: a session can open as many as its memory
 * limit pays for (RLIMIT_NOFILE does not stop it: a mapped file needs no descriptor). A review's session took all
 * 2,465,681 of this host's; other sessions' servers then failed with ENFILE, as did the host's own users (root is
 * exempt). berth cannot divide that pool; it says when one session's memory can empty it.
 */
function warnFileMax(limits: SandboxLimits, runtime: string, log: Logger): void {
  if (saidOnce.has('file-max')) return;
  let fileMax: number;
  try {
    fileMax = Number(readFileSync('/proc/sys/fs/file-max', 'utf8').trim());
  } catch {
    return; // not Linux
  }
  // The session's memory limit as its cgroup gets it; none: the host's.
  const memory = sessionMemory(limits.memory) ?? totalmem();
  const files = Math.floor(memory / BYTES_PER_OPEN_FILE);
  if (!(fileMax < files)) return;
  saidOnce.add('file-max');
  log.warn(
    { runtime, fileMax, filesOneSessionCanOpen: files },
    `fs.file-max is ${fileMax}, and one session may open about ${files} files within its memory limit (${Math.round(memory / 1024 ** 2)} MiB at about ${BYTES_PER_OPEN_FILE} bytes each; no cgroup counts files): a session can leave the other sessions and the host's users none (ENFILE). Raise it, e.g. sysctl -w fs.file-max=9223372036854775807 (the kernel's largest), or lower limits.memory`,
  );
}

/** The namespace driver's own hardening this host cannot give: each said once per process. */
function warnWeakerNamespace(limits: SandboxLimits, runtime: string, log: Logger): void {
  const noFilter = seccompUnavailable();
  if (noFilter && !saidOnce.has('seccomp')) {
    saidOnce.add('seccomp');
    log.warn(
      { runtime, reason: noFilter },
      `namespace sandboxes run without berth's seccomp filter (${noFilter}): a session may take the host's whole AIO quota (fs.aio-max-nr) and reach io_uring, userfaultfd, perf_event_open, bpf, the kernel keyrings and every socket family (AF_VSOCK reaches host and hypervisor services whatever the network namespace)`,
    );
  }
  if (process.getuid?.() !== 0 && !saidOnce.has('limits.ptys')) {
    saidOnce.add('limits.ptys');
    log.warn(
      { runtime },
      `limits.ptys (${limits.ptys ?? DEFAULT_PTYS}) is enforced only when berth runs as root: bubblewrap's devpts has no cap, so one session may open every pty the host's other sessions and containers share (kernel.pty.max)`,
    );
  }
}

/**
 * Why sessions of this driver cannot have this network here (checked at start, not at each session's start), or
 * undefined. A server with no network that berth need not reach needs no namespace of berth's: the namespace
 * driver's own, gVisor's netstack or a VM without a NIC isolate it; everything else needs berth's (root).
 */
export function networkProblem(driver: SandboxDriver, mode: NetworkMode, http: boolean): string | undefined {
  if (mode === 'host') return undefined;
  const selfContained = mode === 'none' && !http && driver !== processDriver;
  if (selfContained) return undefined;
  const why = networkUnavailable(mode);
  // As another user, "none" is had from a sandbox that brings its own empty network: say which one, and why not here.
  if (why && mode === 'none' && !http && driver === processDriver)
    return `${why}; isolation process gives a server no network of its own, isolation namespace does (it needs bubblewrap, with unprivileged user namespaces allowed)`;
  return why;
}

/** Why this driver cannot run a server from an image, or undefined. */
export function imageProblem(driver: SandboxDriver): string | undefined {
  if (driver === processDriver)
    return "isolation process runs servers in the host's own filesystem, and an image needs a root filesystem of its own: use isolation namespace, gvisor or microvm";
  return undefined;
}
